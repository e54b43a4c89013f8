"""The REST front end: a raw ASGI application (no framework, orjson) served by uvicorn with httptools.

Routes: the Open Inference Protocol v2 (``/v2``, health, model metadata, ready, config, infer), the
simple ``POST /predict {"features": [...]}`` with ``/health`` and ``/ready``, and ``/metrics``. Every
response has an ``X-Model-Version`` header, and a response of one variant ``X-Model-Variant``. An
inference request goes to the variant its model's split assigns (by its sticky key: a header or
``parameters.NAME`` of the body; else by weight), or to the version its URL names. A body over
``--max-request-bytes`` gets 413 before it is read; a client that disconnects while its request
waits frees its place in the queue.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

import numpy as np
import orjson

from mlserve.serve.errors import BadRequest, MethodNotAllowed, ModelNotFound, NotReady, PayloadTooLarge, RequestError
from mlserve.serve.protocol import oip
from mlserve.serve.state import ServerState
from mlserve.serve.tensors import check_finite

JSON = b"application/json"
Send = Callable[[dict], Awaitable[None]]
Receive = Callable[[], Awaitable[dict]]


class _Disconnected(Exception):
    pass


class RestApp:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.repo = state.repo
        self.metrics = state.metrics
        self.limit = state.options.max_request_bytes
        self.allow_non_finite = state.options.allow_non_finite
        self.access_log = state.log if state.options.access_log else None
        # requests that reached the application, answered, and given up by their clients (for the drain report)
        self.accepted = self.answered = self.abandoned = 0

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        self.accepted += 1
        path: str = scope["path"]
        method: str = scope["method"]
        counted = False
        models = self.repo.models
        if path.startswith("/v2/models/"):
            model = path[11:].split("/", 1)[0]
        elif path == "/predict" and len(models) == 1:
            model = next(iter(models))
        else:
            model = ""
        served: list = []  # the version that answered, once the request is assigned to one
        try:
            if path.startswith("/v2/models/") and path.endswith("/infer"):
                counted = True
                status, headers, body = await self._infer(scope, receive, path, served)
            elif path == "/predict":
                counted = True
                status, headers, body = await self._predict(scope, receive, method, served)
            else:
                status, headers, body = await self._other(scope, receive, path, method, served)
        except _Disconnected:
            self.abandoned += 1
            if counted:
                version, variant = self._attribution(model, served)
                self.metrics.request(499, self._label(model), version, "rest", time.perf_counter() - started, variant)
            return
        except RequestError as exc:
            status, body = exc.status, orjson.dumps({"error": exc.message})
            headers = [(b"content-type", JSON), *((k.encode(), v.encode()) for k, v in exc.headers.items())]
        except Exception as exc:  # noqa: BLE001 - the boundary of one request: answer 500, keep serving
            self.state.log("request_failed", level="error", path=path, error=f"{type(exc).__name__}: {exc}")
            status, body = 500, orjson.dumps({"error": f"internal error: {type(exc).__name__}: {exc}"})
            headers = [(b"content-type", JSON)]
        version, variant = self._attribution(model, served)
        if model in models:
            headers.append((b"x-model-version", version.encode()))
            if variant:
                headers.append((b"x-model-variant", variant.encode()))
        else:
            headers.append((b"x-model-version", self.state.version_header()))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self.answered += 1
        took = time.perf_counter() - started
        if counted:
            self.metrics.request(status, self._label(model), version, "rest", took, variant)
        if self.access_log is not None:
            self.access_log("request", method=method, path=path, status=status, model=model or None,
                            version=version or None, variant=variant or None, ms=round(took * 1000, 3),
                            bytes_out=len(body), client=(scope.get("client") or ("", 0))[0])

    # ------------------------------------------------------------------ helpers

    def _label(self, model: str) -> str:
        """The model label of a request: names from URLs that match no model collapse into one series."""
        return model if model in self.repo.models else ""

    def _attribution(self, model: str, served: list) -> tuple[str, str]:
        """(version, variant) a request counts under: what answered it; before it was assigned, the variant
        that takes every request of the model, and nothing ("") while several share them."""
        if served:
            loaded = served[0]
            return loaded.version, loaded.variant
        group = self.repo.models.get(model)
        loaded = group.unassigned if group is not None else None
        return (loaded.version, loaded.variant) if loaded is not None else ("", "")

    async def _body(self, scope: dict, receive: Receive) -> bytes:
        declared = None
        for k, v in scope["headers"]:
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    raise BadRequest("Content-Length is not an integer") from None
                break
        if declared is not None and declared > self.limit:
            raise PayloadTooLarge(f"the body has {declared} bytes; the limit is {self.limit} (--max-request-bytes)")
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise _Disconnected()
            chunk = msg.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > self.limit:
                    raise PayloadTooLarge(f"the body is over the limit of {self.limit} bytes (--max-request-bytes)")
                chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _await(self, future: asyncio.Future, receive: Receive) -> Any:
        """The result, or _Disconnected when the client goes away first (its queued request is dropped)."""
        if future.done():
            return future.result()
        watcher = asyncio.ensure_future(receive())

        def on_message(t: asyncio.Future) -> None:
            if not t.cancelled() and t.exception() is None and t.result().get("type") == "http.disconnect":
                future.cancel()

        watcher.add_done_callback(on_message)
        try:
            return await future
        except asyncio.CancelledError:
            if watcher.done() and not watcher.cancelled():
                raise _Disconnected() from None
            raise
        finally:
            if not watcher.done():
                watcher.cancel()

    # ------------------------------------------------------------------ inference

    async def _infer(self, scope: dict, receive: Receive, path: str, served: list) -> tuple:
        if scope["method"] != "POST":
            raise MethodNotAllowed(f"{path} takes POST", headers={"allow": "POST"})
        parts = path.split("/")  # ['', 'v2', 'models', m, 'infer'] or [..., m, 'versions', v, 'infer']
        if len(parts) == 5:
            name, version = parts[3], None
        elif len(parts) == 7 and parts[4] == "versions":
            name, version = parts[3], parts[5]
        else:
            raise ModelNotFound(f"no such endpoint: {path}")
        group = self.repo.group(name)
        body = await self._body(scope, receive)
        sticky = group.split.sticky
        wanted = sticky.header_key if sticky is not None else None
        header_length = key_header = None
        for k, v in scope["headers"]:
            if k == b"inference-header-content-length":
                header_length = v.decode("latin-1")
            elif k == wanted:
                key_header = v
        doc, binary = oip.parse_body(body, header_length)
        key = oip.sticky_key(sticky, key_header, doc) if sticky is not None else None
        loaded = self.repo.route(group, version, key)
        served.append(loaded)
        feeds = oip.decode_inputs(loaded, doc, binary, allow_non_finite=self.allow_non_finite)
        names, binary_out = oip.requested_outputs(loaded, doc)
        arrays = await self._await(loaded.submit(feeds, names), receive)
        out, json_len = oip.encode_response(loaded, doc, names, arrays, binary_out)
        if json_len is None:
            headers = [(b"content-type", JSON)]
        else:
            headers = [(b"content-type", b"application/octet-stream"),
                       (b"inference-header-content-length", str(json_len).encode())]
        return 200, headers, out

    async def _predict(self, scope: dict, receive: Receive, method: str, served: list) -> tuple:
        if method != "POST":
            raise MethodNotAllowed("/predict takes POST with {\"features\": [...]}", headers={"allow": "POST"})
        started = time.perf_counter()
        models = self.repo.models
        if len(models) != 1:
            raise BadRequest(f"/predict needs a server with one model; this one has {len(models)}: use "
                             "/v2/models/{name}/infer")
        (group,) = models.values()
        name = group.name
        body = await self._body(scope, receive)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or "features" not in doc:
            raise BadRequest('the body must be {"features": [...]}')
        sticky = group.split.sticky
        key = None
        if sticky is not None:
            wanted = sticky.header_key
            key_header = next((v for k, v in scope["headers"] if k == wanted), None) if wanted else None
            key = oip.sticky_key(sticky, key_header, doc)
        loaded = self.repo.route(group, None, key)
        served.append(loaded)
        if len(loaded.inputs) != 1:
            raise BadRequest(f"model {name!r} has {len(loaded.inputs)} inputs; /predict feeds one: use the "
                             f"OIP endpoint /v2/models/{name}/infer")
        spec = loaded.inputs[0]
        if spec.datatype == "BYTES":
            raise BadRequest("/predict takes numbers; this model's input is BYTES: use the OIP endpoint")
        try:
            arr = np.array(doc["features"], dtype=spec.dtype)
        except (ValueError, TypeError, OverflowError) as exc:
            raise BadRequest(f"features cannot be read as {spec.datatype}: {str(exc)[:120]}") from None
        single = arr.ndim == len(spec.shape) - 1
        if single:
            arr = arr[np.newaxis, ...]
        if arr.ndim != len(spec.shape) or any(w not in (-1, g) for w, g in zip(spec.shape, arr.shape)):
            want = list(spec.shape[1:]) if spec.shape and spec.shape[0] == -1 else list(spec.shape)
            raise BadRequest(f"features has shape {list(arr.shape[1:] if single else arr.shape)}; "
                             f"the model's input {spec.name!r} takes {want} per row (shape {list(spec.shape)})")
        if not self.allow_non_finite:
            check_finite(spec, arr, "features")
        arrays = await self._await(loaded.submit({spec.name: arr}, None), receive)
        first = arrays[0]
        prediction = first[0] if single and first.ndim > 0 else first
        out = orjson.dumps({"prediction": prediction, "model_version": loaded.version,
                            "latency_ms": round((time.perf_counter() - started) * 1000, 3)},
                           option=orjson.OPT_SERIALIZE_NUMPY)
        return 200, [(b"content-type", JSON)], out

    # ------------------------------------------------------------------ everything else

    async def _other(self, scope: dict, receive: Receive, path: str, method: str, served: list) -> tuple:
        """Health, metadata, config and metrics: (status, headers, body)."""
        state = self.state
        if method not in ("GET", "HEAD"):
            await self._body(scope, receive)
            raise MethodNotAllowed(f"{path} takes GET", headers={"allow": "GET, HEAD"})
        if path in ("/v2/health/live", "/health"):
            return 200, [(b"content-type", JSON)], b'{"live":true}'
        if path in ("/v2/health/ready", "/ready"):
            ready = state.ready
            body = orjson.dumps({"ready": ready, "draining": state.draining})
            return (200 if ready else 503), [(b"content-type", JSON)], body
        if path == "/metrics":
            text, ctype = state.metrics.exposition()
            return 200, [(b"content-type", ctype.encode())], text
        if path in ("/v2", "/v2/"):
            return 200, [(b"content-type", JSON)], state.server_metadata
        if path.startswith("/v2/models/"):
            parts = path.split("/")[3:]  # m | m/ready | m/config | m/versions/v[/ready|/config]
            name = parts[0]
            version = None
            rest = parts[1:]
            if len(rest) >= 2 and rest[0] == "versions":
                version, rest = rest[1], rest[2:]
            what = rest[0] if rest else ""
            if len(rest) > 1 or what not in ("", "ready", "config"):
                raise ModelNotFound(f"no such endpoint: {path}")
            if what == "ready":
                try:
                    served.append(self.repo.get(name, version))
                    ok = state.ready
                except NotReady:
                    ok = False
                return (200 if ok else 503), [(b"content-type", JSON)], orjson.dumps({"name": name, "ready": ok})
            loaded = self.repo.get(name, version)
            served.append(loaded)
            if what == "config":
                doc = oip.model_config(loaded, state.options.batching.max_batch_size)
            else:
                doc = oip.model_metadata(loaded, self.repo.models[name])
            return 200, [(b"content-type", JSON)], orjson.dumps(doc)
        raise ModelNotFound(f"no such endpoint: {path}")

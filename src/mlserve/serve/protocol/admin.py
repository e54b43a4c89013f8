"""The admin endpoint: ``/v2/mlserve/split`` on its own listener (``--admin-host``, ``--admin-port``).

It exists only when an admin token is set (``--admin-token`` or ``MLSERVE_ADMIN_TOKEN``), and listens
on loopback unless ``--admin-host`` says otherwise. Every request needs ``Authorization: Bearer
<token>``: without it the answer is 401, with another token 403; the comparison takes the same time
whatever the token (SHA-256 of both, then ``hmac.compare_digest``). The token is never logged and
never echoed.

Routes (JSON documents of version 1, described in docs/serve.md):

- ``GET /v2/mlserve/split``: every model's split; ``GET /v2/mlserve/split/{model}``: one.
- ``PUT /v2/mlserve/split[/{model}]``: replace the split (a split document).
- ``POST /v2/mlserve/split[/{model}]``: change some weights or refs (``{"weights": {...}, "refs": {...}}``).

Without ``{model}``, a change applies to the body's ``model`` or to the server's only model. Both
changes take ``expect_revision`` (409 when the split is at another revision) and answer with the
split and ``changed`` (false when the request asked for what was already there).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Awaitable, Callable

import orjson

from mlserve.serve.control import SplitControl
from mlserve.serve.errors import BadRequest, MethodNotAllowed, ModelNotFound, NotReady, PayloadTooLarge, RequestError
from mlserve.serve.split import SplitError, parse_split, parse_update
from mlserve.serve.state import ServerState

PREFIX = "/v2/mlserve/split"
MAX_BODY = 1 << 20
JSON = b"application/json"
Send = Callable[[dict], Awaitable[None]]
Receive = Callable[[], Awaitable[dict]]
_EXTRA = frozenset({"expect_revision"})


class Unauthorized(RequestError):
    status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"www-authenticate": 'Bearer realm="mlserve-admin"'})


class Forbidden(RequestError):
    status = 403


class AdminApp:
    def __init__(self, state: ServerState, control: SplitControl, token: str) -> None:
        self.state = state
        self.control = control
        self._digest = hashlib.sha256(token.encode()).digest()

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        client = (scope.get("client") or ("", 0))[0]
        try:
            self._authorize(scope)
            status, doc = await self._route(scope, receive, method, path, client)
            body = orjson.dumps(doc)
            headers = [(b"content-type", JSON)]
        except RequestError as exc:
            status, body = exc.status, orjson.dumps({"error": exc.message})
            headers = [(b"content-type", JSON), *((k.encode(), v.encode()) for k, v in exc.headers.items())]
        except Exception as exc:  # noqa: BLE001 - one request's boundary
            self.state.log("admin_request_failed", level="error", path=path, error=f"{type(exc).__name__}: {exc}")
            status, body = 500, orjson.dumps({"error": f"internal error: {type(exc).__name__}"})
            headers = [(b"content-type", JSON)]
        headers.append((b"content-length", str(len(body)).encode()))
        headers.append((b"cache-control", b"no-store"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self.state.log("admin_request", method=method, path=path, status=status, client=client)  # never the token

    def _authorize(self, scope: dict) -> None:
        given = None
        for k, v in scope["headers"]:
            if k == b"authorization":
                given = v
                break
        if given is None:
            raise Unauthorized("this endpoint needs the admin token: Authorization: Bearer <token>")
        scheme, _, token = given.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        if not hmac.compare_digest(hashlib.sha256(token.strip()).digest(), self._digest):
            raise Forbidden("the admin token is not right")

    async def _route(self, scope: dict, receive: Receive, method: str, path: str, client: str) -> tuple[int, Any]:
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            raise ModelNotFound(f"no such endpoint: {path} (the admin endpoint has {PREFIX}[/MODEL])")
        model = path[len(PREFIX) + 1:] or None
        if model is not None and "/" in model:
            raise ModelNotFound(f"no such endpoint: {path}")
        if method in ("GET", "HEAD"):
            return 200, (self.control.document(model) if model else self.control.documents())
        if method not in ("PUT", "POST"):
            raise MethodNotAllowed(f"{path} takes GET, PUT or POST", headers={"allow": "GET, PUT, POST"})
        if self.state.draining:
            raise NotReady("the server is draining; the split no longer changes")
        doc = await self._json(receive)
        expect = doc.get("expect_revision") if isinstance(doc, dict) else None
        if expect is not None and (isinstance(expect, bool) or not isinstance(expect, int)):
            raise BadRequest("expect_revision must be an integer (the revision read from GET)")
        try:
            parsed = parse_split(doc, extra=_EXTRA) if method == "PUT" else parse_update(doc, extra=_EXTRA)
        except SplitError as exc:
            raise BadRequest(str(exc)) from None
        name = self._model(model, parsed.model)
        if method == "PUT":
            result, changed = await self.control.replace(name, parsed, expect, who=client)
        else:
            result, changed = await self.control.update(name, parsed, expect, who=client)
        return 200, {**result, "changed": changed}

    def _model(self, from_path: str | None, from_body: str | None) -> str:
        if from_path and from_body and from_path != from_body:
            raise BadRequest(f"the body is about model {from_body!r}, the path about {from_path!r}")
        name = from_path or from_body
        if name is None:
            models = list(self.state.repo.models)
            if len(models) != 1:
                raise BadRequest(f"this server has {len(models)} models: name one ({PREFIX}/MODEL or \"model\" in "
                                 "the body)")
            name = models[0]
        self.state.repo.group(name)  # 404 for an unknown model
        return name

    async def _json(self, receive: Receive) -> Any:
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise BadRequest("the client went away")
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY:
                raise PayloadTooLarge(f"an admin request has at most {MAX_BODY} bytes")
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        try:
            return orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from None

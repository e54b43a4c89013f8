"""A Kubernetes API emulator for rollout tests: kmock's ``KubernetesEmulator`` plus what a real API server does.

kmock 0.8 stores objects and serves the official client, but it keeps no ``resourceVersion`` or
``metadata.generation``, ignores ``dryRun=All``, answers 500 to a failed JSON-patch ``test`` and never
moves a Deployment's status. :class:`RealisticEmulator` adds exactly those, plus fault injection:

* every create/patch stamps ``metadata.resourceVersion`` (a counter) and bumps ``metadata.generation``
  when ``spec`` changed; a patch whose ``metadata.resourceVersion`` or ``test`` op is stale answers
  409 / 422 like the real server;
* ``dryRun=All`` computes and returns the result without storing it;
* a Deployment "rolls out" after ``ready_after_reads`` reads of it and ``ready_delay`` seconds since
  its last spec change (``None``: never; names in ``never_ready``: never), which fills ``status`` the
  way the deployment controller does;
* :meth:`fail` makes the next N matching requests answer 503 (an API server in trouble);
* ``conflict_next`` makes the next N patches answer 409 (another writer won the race).

:class:`Cluster` runs it on 127.0.0.1 in a background thread so synchronous code (and other
processes) can talk to it over real HTTP.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web
import jsonpatch
import kmock
from kmock._internal import enums, rendering
from kmock._internal.k8s import KubernetesEmulator

RESOURCES = {
    "Deployment": ("apps", "v1", "deployments"),
    "Service": ("", "v1", "services"),
    "ConfigMap": ("", "v1", "configmaps"),
    "Ingress": ("networking.k8s.io", "v1", "ingresses"),
    "HTTPRoute": ("gateway.networking.k8s.io", "v1", "httproutes"),
    "VirtualService": ("networking.istio.io", "v1", "virtualservices"),
    "Lease": ("coordination.k8s.io", "v1", "leases"),
}


def resource_of(kind: str) -> kmock.resource:
    group, version, plural = RESOURCES[kind]
    return kmock.resource(group=group, version=version, plural=plural)


@dataclass
class Seen:
    method: str
    path: str
    params: dict[str, str]
    data: Any
    status: int


@dataclass
class Fault:
    method: str | None  # "GET", "PATCH", ... or None for any
    path_contains: str
    remaining: int
    status: int = 503


def _status(code: int, reason: str, message: str) -> aiohttp.web.Response:
    return aiohttp.web.json_response(
        {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "code": code,
         "reason": reason, "message": message},
        status=code,
    )


def _merge(base: Any, patch: Any) -> Any:
    """RFC 7386 merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(base) if isinstance(base, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


class RealisticEmulator(KubernetesEmulator):
    """kmock's emulator with resourceVersion, generation, dry-run, 409/422, faults and rollout status."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.counter = itertools.count(1000)
        self.faults: list[Fault] = []
        self.conflict_next = 0
        self.ready_after_reads: int | None = 1
        self.ready_delay = 0.0  # and at least this many seconds after the last spec change
        self.never_ready: set[str] = set()  # Deployment names that never become ready
        self._reads_since_change: dict[tuple[str, str], int] = {}
        self._changed_at: dict[tuple[str, str], float] = {}
        self.log: list[tuple[str, str, int]] = []  # (method, path, status) of every request
        self.seen: list[Seen] = []  # the same, with query parameters and body

    # -- helpers ------------------------------------------------------------------------------

    def _key(self, request: rendering.Request, name: str | None = None) -> tuple[Any, str | None, str | None]:
        return (request.resource, request.namespace, name or request.name)

    def _stored(self, key: tuple[Any, Any, Any]) -> dict[str, Any] | None:
        if key not in self._objects or self._objects[key].deleted:
            return None
        return copy.deepcopy(dict(self._objects[key].raw))

    def _store(self, key: tuple[Any, Any, Any], obj: dict[str, Any]) -> None:
        self._objects[key] = obj

    def _stamp(self, old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
        meta = new.setdefault("metadata", {})
        meta["resourceVersion"] = str(next(self.counter))
        if old is None:
            meta["generation"] = 1
            meta.setdefault("uid", f"uid-{meta['resourceVersion']}")
            meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        else:
            generation = int(old.get("metadata", {}).get("generation") or 1)
            meta["generation"] = generation + 1 if old.get("spec") != new.get("spec") else generation
        return new

    def _tick_rollout(self, key: tuple[Any, Any, Any]) -> None:
        """Play the deployment controller: after enough reads, status catches up with spec."""
        obj = self._stored(key)
        if obj is None or obj.get("kind", "Deployment") != "Deployment" or key[0].plural != "deployments":
            return
        if self.ready_after_reads is None or obj["metadata"]["name"] in self.never_ready:
            return
        reads = self._reads_since_change.get((key[1], key[2]), 0) + 1
        self._reads_since_change[(key[1], key[2])] = reads
        if reads < self.ready_after_reads:
            return
        if time.monotonic() - self._changed_at.get((key[1], key[2]), 0.0) < self.ready_delay:
            return
        replicas = int(obj.get("spec", {}).get("replicas", 1))
        status = {"observedGeneration": obj["metadata"].get("generation", 1), "replicas": replicas,
                  "updatedReplicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}
        if obj.get("status") != status:
            obj["status"] = status
            self._store(key, obj)

    def fail(self, path_contains: str = "", *, method: str | None = None, times: int = 1, status: int = 503) -> None:
        """The next ``times`` requests whose path contains ``path_contains`` answer ``status``."""
        self.faults.append(Fault(method, path_contains, times, status))

    # -- the request handler ------------------------------------------------------------------

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        response = await self._dispatch(request)
        method = str(getattr(request.method, "value", request.method)).upper()
        self.log.append((method, request.url.path, response.status))
        self.seen.append(Seen(method, request.url.path, dict(request.params), request.data, response.status))
        return response

    async def _dispatch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        method = str(request.method.value if hasattr(request.method, "value") else request.method).upper()
        for fault in self.faults:
            if fault.remaining > 0 and fault.path_contains in request.url.path and fault.method in (None, method):
                fault.remaining -= 1
                return _status(fault.status, "ServiceUnavailable", "injected fault")
        if request.resource is None:
            return await super()._handle(request)
        dry_run = request.params.get("dryRun") == "All"
        async with self._lock:
            if request.action == enums.action.FETCH and request.name:
                self._tick_rollout(self._key(request))
            elif request.action == enums.action.CREATE:
                body = request.data or {}
                name = body.get("metadata", {}).get("name")
                key = self._key(request, name)
                if key[1] is None:
                    key = (key[0], body.get("metadata", {}).get("namespace"), name)
                if self._stored(key) is not None:
                    return _status(409, "AlreadyExists", f"{key[0].plural} {name!r} already exists")
                obj = copy.deepcopy(body)
                obj.setdefault("metadata", {}).setdefault("namespace", key[1])
                self._stamp(None, obj)
                if not dry_run:
                    self._store(key, obj)
                    self._reads_since_change.pop((key[1], name), None)
                    self._changed_at[(key[1], name)] = time.monotonic()
                return aiohttp.web.json_response(obj, status=201)
            elif request.action == enums.action.UPDATE and request.name:
                key = self._key(request)
                old = self._stored(key)
                if old is None:
                    return _status(404, "NotFound", f"{request.name} not found")
                if self.conflict_next > 0:
                    self.conflict_next -= 1
                    return _status(409, "Conflict", "the object has been modified; please apply your changes to the latest version")
                content_type = request.headers.get("Content-Type", "")
                try:
                    if isinstance(request.data, list):
                        new = jsonpatch.apply_patch(old, request.data, in_place=False)
                    elif "merge-patch" in content_type or "strategic" in content_type or method == "PATCH":
                        new = _merge(old, request.data or {})
                    else:  # PUT: a full replacement
                        new = copy.deepcopy(request.data or {})
                except jsonpatch.JsonPatchTestFailed as exc:
                    return _status(422, "Invalid", f"the server rejected our request due to an error in our request: {exc}")
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                    return _status(422, "Invalid", f"invalid JSON patch: {exc}")
                wanted_rv = (new.get("metadata") or {}).get("resourceVersion")
                current_rv = old["metadata"].get("resourceVersion")
                if not isinstance(request.data, list) and wanted_rv and wanted_rv != current_rv:
                    return _status(409, "Conflict", "the object has been modified; please apply your changes to the latest version")
                if request.subresource != "status":
                    new["status"] = old.get("status", new.get("status"))
                self._stamp(old, new)
                if not dry_run:
                    self._store(key, new)
                    if old.get("spec") != new.get("spec"):
                        self._reads_since_change[(key[1], key[2])] = 0
                        self._changed_at[(key[1], key[2])] = time.monotonic()
                return aiohttp.web.json_response(new, status=200)
            elif request.action == enums.action.DELETE and request.name and dry_run:
                old = self._stored(self._key(request))
                if old is None:
                    return _status(404, "NotFound", f"{request.name} not found")
                return aiohttp.web.json_response(old)
        return await super()._handle(request)


@dataclass
class Cluster:
    """A :class:`RealisticEmulator` served on 127.0.0.1 from a background thread."""

    emulator: RealisticEmulator = field(default_factory=RealisticEmulator)
    url: str = ""
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _stop: asyncio.Event | None = None

    def start(self) -> "Cluster":
        started = threading.Event()

        async def serve() -> None:
            self._stop = asyncio.Event()
            async with self.emulator, kmock.Server(self.emulator) as server:
                self.url = str(server.url).rstrip("/")
                started.set()
                await self._stop.wait()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(serve())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="k8s-emulator", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the Kubernetes emulator did not start")
        return self

    def stop(self) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread:
            self._thread.join(10)

    def _call(self, fn: Any) -> Any:
        async def run() -> Any:
            async with self.emulator._lock:
                return fn()

        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    # -- direct state access for tests (serialised with the server's lock) -------------------

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        key = (resource_of(obj["kind"]), meta["namespace"], meta["name"])

        def do() -> dict[str, Any]:
            old = self.emulator._stored(key)
            self.emulator._stamp(old, obj)
            self.emulator._store(key, obj)
            return obj

        return self._call(do)

    def get(self, kind: str, name: str, namespace: str = "default") -> dict[str, Any] | None:
        key = (resource_of(kind), namespace, name)
        return self._call(lambda: self.emulator._stored(key))

    def delete(self, kind: str, name: str, namespace: str = "default") -> None:
        key = (resource_of(kind), namespace, name)

        def do() -> None:
            if self.emulator._stored(key) is not None:
                self.emulator._objects[key].delete()

        self._call(do)

    def writes(self) -> list[tuple[str, str, int]]:
        """Every non-GET request so far: (method, path, status)."""
        return [entry for entry in list(self.emulator.log) if entry[0] != "GET"]


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)

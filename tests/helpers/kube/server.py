"""A Kubernetes API server emulator for the rollout tests, served over real HTTP to the official client.

It keeps objects the way kube-apiserver does and answers the way it does, so a test that passes
here exercises the requests a real cluster would see:

* ``resourceVersion`` on every write (a no-op write keeps it), ``metadata.generation`` bumped by
  spec changes on the kinds that have one, ``uid``/``creationTimestamp``, ``managedFields`` per
  field manager (``?fieldManager=``, else the client's User-Agent) with the time of its last write;
* every JSON patch is applied by the real evanphx/json-patch over Go's encoding/json
  (:mod:`helpers.kube.gojsonpatch`): a failed operation is a 422 that says only what the real
  server says; merge patches per RFC 7386; a patched or replaced object whose resourceVersion is
  not the current one is a 409;
* schema validation, defaulting and pruning of unknown fields, DNS name and label limits, the
  256 KiB annotation limit, immutable selectors and cluster IPs (:mod:`helpers.kube.schema`),
  answered as 422 ``Invalid`` with the real message shape and ``details.causes``;
* status is a subresource: writes to the main resource leave it alone; the deployment and Gateway
  controllers write it (:mod:`helpers.kube.controllers`);
* ``dryRun=All`` validates and answers without storing;
* discovery (``/api``, ``/apis``, ``/apis/GROUP``) lists the served versions; a version that is not
  served answers 404 like the real server (``serve_versions`` sets them, e.g. an Istio older than 1.22);
* faults: :meth:`Emulator.fail` (status, ``Retry-After``, a delay before answering, or a slow
  success), :meth:`Emulator.outage` (every request 503 for some seconds), ``conflict_next``.

:class:`Cluster` serves it on 127.0.0.1 from a thread; its ``put``/``get``/``patch_as`` helpers go
through the same admission code as the API.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from helpers.kube import gojsonpatch, schema
from helpers.kube.controllers import DeploymentController, GatewayController, now_rfc3339


@dataclass(frozen=True)
class Resource:
    kind: str
    group: str
    versions: tuple[str, ...]
    plural: str
    generation: bool = True  # spec changes bump metadata.generation
    status_subresource: bool = True

    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def display(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind


RESOURCES = {r.kind: r for r in [
    Resource("Deployment", "apps", ("v1",), "deployments"),
    Resource("Service", "", ("v1",), "services", generation=False),
    Resource("ConfigMap", "", ("v1",), "configmaps", generation=False, status_subresource=False),
    Resource("Ingress", "networking.k8s.io", ("v1",), "ingresses"),
    Resource("HTTPRoute", "gateway.networking.k8s.io", ("v1", "v1beta1"), "httproutes"),
    Resource("VirtualService", "networking.istio.io", ("v1", "v1beta1", "v1alpha3"), "virtualservices"),
    Resource("Lease", "coordination.k8s.io", ("v1",), "leases", generation=False, status_subresource=False),
]}
BY_PLURAL = {(r.group, r.plural): r for r in RESOURCES.values()}


@dataclass
class Seen:
    method: str
    path: str
    params: dict[str, str]
    data: Any
    status: int
    body: bytes = b""
    content_type: str = ""
    at: float = 0.0  # time.monotonic() when the request arrived
    manager: str = ""
    error: str = ""  # what the emulator knows about a refusal that the real server does not say


@dataclass
class Fault:
    method: str | None  # "GET", "PATCH", ... or None for any
    path_contains: str
    remaining: int
    status: int | None = 503  # None: answer normally (after ``delay``)
    retry_after: int | None = None
    delay: float = 0.0


REASONS = {400: "BadRequest", 404: "NotFound", 409: "Conflict", 415: "UnsupportedMediaType", 422: "Invalid",
           429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}


class ApiError(Exception):
    def __init__(self, code: int, message: str, *, reason: str | None = None, details: dict[str, Any] | None = None,
                 retry_after: int | None = None, note: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.reason = code, message, reason or REASONS.get(code, "Unknown")
        self.details, self.retry_after, self.note = details, retry_after, note

    def body(self) -> dict[str, Any]:
        doc = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message,
               "reason": self.reason, "code": self.code}
        if self.details is not None:
            doc["details"] = self.details
        return doc


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


def _without_volatile(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out.get("metadata", {}).pop("managedFields", None)
    return out


class Emulator:
    """The API server's state and request handling (thread safe; the HTTP layer is :class:`Cluster`)."""

    def __init__(self, checker: gojsonpatch.Checker) -> None:
        self.checker = checker
        self.lock = threading.RLock()
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (kind, namespace, name) -> object
        self.counter = itertools.count(1000)
        self.deployments = DeploymentController()
        self.gateway = GatewayController()
        self.served = {r.group: list(r.versions) for r in RESOURCES.values()}
        self.faults: list[Fault] = []
        self.outage_until = 0.0
        self.outage_status = 503
        self.conflict_next = 0
        self.seen: list[Seen] = []
        self.log: list[tuple[str, str, int]] = []

    # -- knobs for tests (kept from the first emulator's names) ------------------------------------

    @property
    def ready_after_reads(self) -> int | None:
        return self.deployments.ready_after_reads

    @ready_after_reads.setter
    def ready_after_reads(self, value: int | None) -> None:
        self.deployments.ready_after_reads = value

    @property
    def ready_delay(self) -> float:
        return self.deployments.ready_delay

    @ready_delay.setter
    def ready_delay(self, value: float) -> None:
        self.deployments.ready_delay = value

    @property
    def never_ready(self) -> set[str]:
        return self.deployments.never_ready

    def fail(self, path_contains: str = "", *, method: str | None = None, times: int = 1, status: int | None = 503,
             retry_after: int | None = None, delay: float = 0.0) -> Fault:
        """The next ``times`` matching requests answer ``status`` (after ``delay`` seconds; ``status=None``: a slow success)."""
        fault = Fault(method, path_contains, times, status, retry_after, delay)
        self.faults.append(fault)
        return fault

    def outage(self, seconds: float, *, status: int = 503) -> None:
        """Every request answers ``status`` for the next ``seconds``."""
        self.outage_until = time.monotonic() + seconds
        self.outage_status = status

    def heal(self) -> None:
        for fault in self.faults:
            fault.remaining = 0
        self.outage_until = 0.0

    def serve_versions(self, group: str, versions: list[str]) -> None:
        self.served[group] = list(versions)

    # -- the HTTP entry point -------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(target)
        params = dict(parse_qsl(parts.query))
        content_type = headers.get("content-type", "")
        manager = params.get("fieldManager") or headers.get("user-agent", "unknown").split("/", 1)[0] or "unknown"
        seen = Seen(method, parts.path, params, None, 0, body, content_type, time.monotonic(), manager)
        try:
            seen.data = json.loads(body) if body else None
        except ValueError:
            seen.data = None
        extra: dict[str, str] = {}
        try:
            fault = self._fault_for(method, parts.path)
            if fault is not None and fault.delay:
                time.sleep(fault.delay)
            if fault is not None and fault.status is not None:
                extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                details = {"retryAfterSeconds": fault.retry_after} if fault.retry_after is not None else None
                raise ApiError(fault.status, "injected fault" if fault.status != 429 else
                               "the server has received too many requests and has asked us to try again later",
                               details=details, retry_after=fault.retry_after)
            if time.monotonic() < self.outage_until:
                raise ApiError(self.outage_status, "the API server is unavailable (injected outage)")
            with self.lock:
                status, doc = self._route(method, parts.path, params, body, seen, content_type, manager)
        except ApiError as exc:
            status, doc = exc.code, exc.body()
            seen.error = exc.note or exc.message
            if exc.retry_after is not None:
                extra["Retry-After"] = str(exc.retry_after)
        seen.status = status
        self.seen.append(seen)
        self.log.append((method, parts.path, status))
        return status, extra, doc

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.remaining > 0 and fault.path_contains in path and fault.method in (None, method):
                    fault.remaining -= 1
                    return fault
        return None

    def _route(self, method: str, path: str, params: dict[str, str], body: bytes, seen: Seen, content_type: str,
               manager: str) -> tuple[int, Any]:
        segments = [s for s in path.split("/") if s]
        if segments == ["api"]:
            return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if segments == ["apis"]:
            return 200, {"kind": "APIGroupList", "apiVersion": "v1",
                         "groups": [self._group_doc(g) for g in sorted(self.served) if g]}
        if len(segments) == 2 and segments[0] == "apis":
            if segments[1] not in self.served or not self.served[segments[1]]:
                raise ApiError(404, "the server could not find the requested resource")
            return 200, self._group_doc(segments[1])
        if segments[:1] == ["api"] and len(segments) >= 2:
            group, version, rest = "", segments[1], segments[2:]
        elif segments[:1] == ["apis"] and len(segments) >= 3:
            group, version, rest = segments[1], segments[2], segments[3:]
        else:
            raise ApiError(404, "the server could not find the requested resource")
        if version not in self.served.get(group, []):
            raise ApiError(404, "the server could not find the requested resource")
        if not rest:
            return 200, {"kind": "APIResourceList", "groupVersion": f"{group}/{version}" if group else version,
                         "resources": [{"name": r.plural, "namespaced": True, "kind": r.kind}
                                       for r in RESOURCES.values() if r.group == group]}
        if len(rest) < 3 or rest[0] != "namespaces":
            raise ApiError(404, "the server could not find the requested resource")
        namespace, plural, tail = rest[1], rest[2], rest[3:]
        resource = BY_PLURAL.get((group, plural))
        if resource is None:
            raise ApiError(404, "the server could not find the requested resource")
        name = tail[0] if tail else None
        subresource = tail[1] if len(tail) > 1 else None
        api_version = f"{group}/{version}" if group else version
        dry_run = params.get("dryRun") == "All"
        if method == "GET" and name:
            return 200, self._shown(self._read(resource, namespace, name, tick=True), api_version)
        if method == "GET":
            items = [self._shown(o, api_version) for (k, ns, _), o in sorted(self.objects.items())
                     if k == resource.kind and ns == namespace]
            return 200, {"kind": f"{resource.kind}List", "apiVersion": api_version,
                         "metadata": {"resourceVersion": str(next(self.counter))}, "items": items}
        if method == "POST" and not name:
            doc = self._json_body(body)
            return 201, self._shown(self.create(resource, namespace, doc, manager=manager, dry_run=dry_run), api_version)
        if method == "PATCH" and name:
            return 200, self._shown(self.patch(resource, namespace, name, body, content_type, manager=manager,
                                               dry_run=dry_run, subresource=subresource, seen=seen), api_version)
        if method == "PUT" and name:
            doc = self._json_body(body)
            return 200, self._shown(self.replace(resource, namespace, name, doc, manager=manager, dry_run=dry_run,
                                                 subresource=subresource), api_version)
        if method == "DELETE" and name:
            old = self._read(resource, namespace, name)
            if not dry_run:
                del self.objects[(resource.kind, namespace, name)]
                self.deployments.forget(namespace, name)
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                         "details": {"name": name, "group": resource.group, "kind": resource.plural,
                                     "uid": old["metadata"].get("uid")}}
        raise ApiError(405, "the server does not allow this method on the requested resource", reason="MethodNotAllowed")

    def _group_doc(self, group: str) -> dict[str, Any]:
        versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in self.served[group]]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions,
                "preferredVersion": versions[0] if versions else None}

    @staticmethod
    def _json_body(body: bytes) -> Any:
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ApiError(400, f"error decoding request body: {exc}") from None

    @staticmethod
    def _shown(obj: dict[str, Any], api_version: str) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        out["apiVersion"] = api_version
        return out

    # -- storage ---------------------------------------------------------------------------------------

    def _not_found(self, resource: Resource, name: str) -> ApiError:
        return ApiError(404, f'{resource.qualified()} "{name}" not found',
                        details={"name": name, "group": resource.group, "kind": resource.plural})

    def _read(self, resource: Resource, namespace: str, name: str, *, tick: bool = False) -> dict[str, Any]:
        key = (resource.kind, namespace, name)
        obj = self.objects.get(key)
        if obj is None:
            raise self._not_found(resource, name)
        if tick:
            status = None
            if resource.kind == "Deployment":
                status = self.deployments.status_after_read(obj)
            elif resource.kind == "HTTPRoute":
                status = self.gateway.status_after_read(
                    obj, lambda ns, svc: ("Service", ns, svc) in self.objects)
            if status is not None:  # the controller's status write: a new resourceVersion
                obj = copy.deepcopy(obj)
                obj["status"] = status
                obj["metadata"]["resourceVersion"] = str(next(self.counter))
                self.objects[key] = obj
        return copy.deepcopy(obj)

    def _used_node_ports(self, skip: tuple[str, str, str] | None) -> set[int]:
        ports = set()
        for key, obj in self.objects.items():
            if key[0] == "Service" and key != skip:
                ports |= {p.get("nodePort") for p in (obj.get("spec") or {}).get("ports") or [] if p.get("nodePort")}
        return ports

    def _admit(self, resource: Resource, new: dict[str, Any], old: dict[str, Any] | None, key: tuple[str, str, str]) -> dict[str, Any]:
        """Validate, default and prune ``new``; raise a 422 the way kube-apiserver words it."""
        errors: list[schema.FieldError] = []
        checked = schema.walk(schema.SCHEMAS[resource.kind], new, "", errors)
        if not errors:
            used = self._used_node_ports(key)
            schema.default_more(resource.kind, checked, old, used)
            errors = schema.semantic_errors(resource.kind, checked, old, used_node_ports=used)
        webhook = [e for e in errors if e.kind == "Webhook"]
        if webhook:
            raise ApiError(400, 'admission webhook "validation.istio.io" denied the request: configuration is invalid: '
                           + "; ".join(e.detail for e in webhook))
        if errors:
            name = (new.get("metadata") or {}).get("name", "")
            listed = errors[0].message() if len(errors) == 1 else "[" + ", ".join(e.message() for e in errors) + "]"
            raise ApiError(422, f'{resource.display()} "{name}" is invalid: {listed}',
                           details={"name": name, "group": resource.group, "kind": resource.kind,
                                    "causes": [e.cause() for e in errors]})
        return checked

    def _managed(self, meta: dict[str, Any], manager: str, api_version: str, subresource: str | None) -> None:
        entries = [e for e in meta.get("managedFields") or []
                   if not (e.get("manager") == manager and e.get("subresource") == subresource)]
        entry = {"manager": manager, "operation": "Update", "apiVersion": api_version, "time": now_rfc3339(),
                 "fieldsType": "FieldsV1", "fieldsV1": {}}
        if subresource:
            entry["subresource"] = subresource
        meta["managedFields"] = entries + [entry]

    def _api_version(self, resource: Resource) -> str:
        return f"{resource.group}/{resource.versions[0]}" if resource.group else resource.versions[0]

    def create(self, resource: Resource, namespace: str, doc: Any, *, manager: str, dry_run: bool = False,
               keep_status: bool = False) -> dict[str, Any]:
        if not isinstance(doc, dict):
            raise ApiError(400, "the body of the request was in an unknown format")
        new = copy.deepcopy(doc)
        meta = new.setdefault("metadata", {})
        if meta.get("namespace") not in (None, "", namespace):
            raise ApiError(400, "the namespace of the provided object does not match the namespace sent on the request")
        if new.get("kind") not in (None, resource.kind):
            raise ApiError(400, f"the kind of the object ({new.get('kind')}) does not match the resource ({resource.plural})")
        if meta.get("resourceVersion"):
            raise ApiError(400, "resourceVersion should not be set on objects to be created")
        meta["namespace"] = namespace
        new["kind"] = resource.kind
        new["apiVersion"] = self._api_version(resource)
        if resource.status_subresource and not keep_status:
            new.pop("status", None)
        key = (resource.kind, namespace, meta.get("name") or "")
        new = self._admit(resource, new, None, key)
        if key in self.objects:
            raise ApiError(409, f'{resource.qualified()} "{key[2]}" already exists', reason="AlreadyExists",
                           details={"name": key[2], "group": resource.group, "kind": resource.plural})
        meta = new["metadata"]
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        meta["resourceVersion"] = str(next(self.counter))
        if resource.generation:
            meta["generation"] = 1
        self._managed(meta, manager, new["apiVersion"], None)
        if not dry_run:
            self.objects[key] = new
            self.deployments.spec_changed(namespace, key[2])
            self.gateway.spec_changed(namespace, key[2])
        return copy.deepcopy(new)

    def patch(self, resource: Resource, namespace: str, name: str, body: bytes, content_type: str, *, manager: str,
              dry_run: bool = False, subresource: str | None = None, seen: Seen | None = None) -> dict[str, Any]:
        old = self._read(resource, namespace, name)
        if self.conflict_next > 0:
            self.conflict_next -= 1
            raise ApiError(409, f'Operation cannot be fulfilled on {resource.qualified()} "{name}": the object has been '
                                "modified; please apply your changes to the latest version and try again")
        if "json-patch" in content_type:
            outcome = self.checker.apply(old, body)
            if not outcome.ok and outcome.stage == "decode":
                raise ApiError(400, outcome.error, note=outcome.error)
            if not outcome.ok:
                # What kube-apiserver answers: the library's reason is not passed on to the client.
                raise ApiError(422, "the server rejected our request due to an error in our request",
                               note=f"json-patch: {outcome.error}")
            patched = outcome.doc
        elif "merge-patch" in content_type or "strategic-merge-patch" in content_type:
            patched = _merge(old, self._json_body(body))
        else:
            raise ApiError(415, "the body of the request was in an unknown format - accepted media types include: "
                                "application/json-patch+json, application/merge-patch+json")
        return self._update(resource, old, patched, manager=manager, dry_run=dry_run, subresource=subresource)

    def replace(self, resource: Resource, namespace: str, name: str, doc: Any, *, manager: str, dry_run: bool = False,
                subresource: str | None = None) -> dict[str, Any]:
        old = self._read(resource, namespace, name)
        if not isinstance(doc, dict):
            raise ApiError(400, "the body of the request was in an unknown format")
        new = copy.deepcopy(doc)
        if not (new.get("metadata") or {}).get("resourceVersion"):
            new.setdefault("metadata", {})["resourceVersion"] = old["metadata"]["resourceVersion"]
        return self._update(resource, old, new, manager=manager, dry_run=dry_run, subresource=subresource)

    def _update(self, resource: Resource, old: dict[str, Any], new: Any, *, manager: str, dry_run: bool,
                subresource: str | None, keep_status: bool = False) -> dict[str, Any]:
        meta_old = old["metadata"]
        name, namespace = meta_old["name"], meta_old["namespace"]
        if not isinstance(new, dict):
            raise ApiError(400, "the patched object is not a JSON object")
        new = copy.deepcopy(new)
        meta = new.setdefault("metadata", {})
        if meta.get("resourceVersion") not in (None, "", meta_old["resourceVersion"]):
            raise ApiError(409, f'Operation cannot be fulfilled on {resource.qualified()} "{name}": the object has been '
                                "modified; please apply your changes to the latest version and try again")
        if meta.get("name", name) != name or meta.get("namespace", namespace) != namespace:
            raise ApiError(400, "the name or namespace of the object may not change")
        for fixed in ("uid", "creationTimestamp", "generation", "resourceVersion", "managedFields"):
            if fixed in meta_old:
                meta[fixed] = meta_old[fixed]
        new["kind"], new["apiVersion"] = resource.kind, old.get("apiVersion", self._api_version(resource))
        if subresource == "status":
            new = {**copy.deepcopy(old), "status": new.get("status")}
        elif resource.status_subresource and not keep_status:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        key = (resource.kind, namespace, name)
        new = self._admit(resource, new, old, key)
        if _without_volatile(new) == _without_volatile(old):
            return copy.deepcopy(old)  # a no-op write keeps the resourceVersion, as on a real server
        meta = new["metadata"]
        meta["resourceVersion"] = str(next(self.counter))
        spec_changed = old.get("spec") != new.get("spec")
        if resource.generation and spec_changed:
            meta["generation"] = int(meta_old.get("generation") or 1) + 1
        self._managed(meta, manager, new["apiVersion"], subresource)
        if not dry_run:
            self.objects[key] = new
            if spec_changed:
                self.deployments.spec_changed(namespace, name)
                self.gateway.spec_changed(namespace, name)
        return copy.deepcopy(new)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: without this each answer waits for a delayed ACK
    emulator: Emulator  # set on the subclass made per server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, extra, doc = self.emulator.handle(self.command, self.path, headers, body)
        payload = json.dumps(doc, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting (a slow-response fault): carry on

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


@dataclass
class Cluster:
    """An :class:`Emulator` served on 127.0.0.1 from a background thread."""

    emulator: Emulator | None = None
    url: str = ""
    _server: _Server | None = None
    _thread: threading.Thread | None = None
    _checker: gojsonpatch.Checker | None = field(default=None, repr=False)

    def start(self) -> "Cluster":
        """Start serving; :class:`~helpers.kube.gojsonpatch.CheckerUnavailable` if the Go checker cannot be built."""
        if self.emulator is None:
            self._checker = gojsonpatch.Checker(gojsonpatch.build())
            self.emulator = Emulator(self._checker)
        handler = type("Handler", (_Handler,), {"emulator": self.emulator})
        self._server = _Server(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="k8s-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)
        if self._checker is not None:
            self._checker.close()

    # -- direct access for tests, through the same admission as the API --------------------------------

    def put(self, obj: dict[str, Any], *, manager: str = "test-setup") -> dict[str, Any]:
        """Create or replace ``obj`` as a client would (validated and defaulted); its ``status`` is kept as given."""
        assert self.emulator is not None
        resource = RESOURCES[obj["kind"]]
        namespace = (obj.get("metadata") or {}).get("namespace") or "default"
        name = obj["metadata"]["name"]
        doc = copy.deepcopy(obj)
        doc.setdefault("metadata", {}).pop("resourceVersion", None)
        with self.emulator.lock:
            try:
                if (resource.kind, namespace, name) in self.emulator.objects:
                    old = self.emulator.objects[(resource.kind, namespace, name)]
                    doc["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
                    if "status" not in doc and "status" in old:
                        doc["status"] = old["status"]
                    return self.emulator._update(resource, old, doc, manager=manager, dry_run=False, subresource=None,
                                                 keep_status=True)
                return self.emulator.create(resource, namespace, doc, manager=manager, keep_status=True)
            except ApiError as exc:
                raise AssertionError(f"the test's object was refused: {exc.code} {exc.message}") from None

    def patch_as(self, kind: str, name: str, namespace: str, ops: list[dict[str, Any]], *, manager: str) -> dict[str, Any]:
        """A JSON patch from another client (``manager``: e.g. ``kubectl-edit`` or ``argocd-controller``)."""
        assert self.emulator is not None
        with self.emulator.lock:
            return self.emulator.patch(RESOURCES[kind], namespace, name, json.dumps(ops).encode(),
                                       "application/json-patch+json", manager=manager)

    def get(self, kind: str, name: str, namespace: str = "default") -> dict[str, Any] | None:
        assert self.emulator is not None
        with self.emulator.lock:
            obj = self.emulator.objects.get((kind, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def delete(self, kind: str, name: str, namespace: str = "default") -> None:
        assert self.emulator is not None
        with self.emulator.lock:
            self.emulator.objects.pop((kind, namespace, name), None)

    def writes(self) -> list[tuple[str, str, int]]:
        """Every non-GET request so far: (method, path, status)."""
        assert self.emulator is not None
        return [entry for entry in list(self.emulator.log) if entry[0] != "GET"]


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)

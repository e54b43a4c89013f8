"""The live-cluster :class:`~mlserve.rollout.store.ResourceStore`, built on the official ``kubernetes`` client.

Every request goes through the client's generic ``ApiClient`` so that one code path serves core,
apps, networking, Gateway API and Istio kinds alike and always speaks plain dicts. Changes carry
the field manager ``mlserve``; ``dry_run`` becomes ``dryRun=All`` (server-side dry run).

Groups whose served version differs between clusters (Istio's ``networking.istio.io``: ``v1``
from Istio 1.22, ``v1beta1``/``v1alpha3`` before; Gateway API ``v1`` or ``v1beta1``) are first asked
in the newest version mlserve knows; a 404 for the resource itself (not for one object) looks the
group up once through discovery (``GET /apis/GROUP``) and uses the newest version it serves.

Transient failures are retried with exponential backoff within ``retry_budget`` seconds (the
rollout sets it to half its Lease duration, so the heartbeat survives them): refused or timed-out
connections, 429 and 5xx (except 501), honouring ``Retry-After``. Every request may be retried:
reads trivially, patches because they are guarded by the resourceVersion they were computed from
(a retry of one that did land is refused and recomputed into a no-op), creates because a retry of
one that landed answers 409 and the engine sees the object exists.

Errors are translated once, here, and say what the server said: 404 -> ``None`` (get) or
:class:`NotFoundError`; 409 -> :class:`ConflictError`; a 422 that names no field (a JSON patch that
failed: its resourceVersion ``test``, usually) -> :class:`~mlserve.errors.PatchNotAppliedError`;
422 ``Invalid`` (with the server's field causes), 400 and admission-webhook denials ->
:class:`~mlserve.errors.ApiRejectedError`; 401/403, unreachable, and 5xx once the budget is spent ->
:class:`InfrastructureError`.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from mlserve._deps import require
from mlserve.errors import (
    ApiRejectedError,
    ConflictError,
    InfrastructureError,
    NotFoundError,
    PatchNotAppliedError,
    UsageError,
)
from mlserve.rollout.store import KINDS, Kind

FIELD_MANAGER = "mlserve"
DISCOVERED = {"networking.istio.io": ("v1", "v1beta1", "v1alpha3"),
              "gateway.networking.k8s.io": ("v1", "v1beta1")}
TRANSIENT = {0, 429, 500, 502, 503, 504}


def kind_of(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise UsageError(f"unsupported kind {name!r} (known: {', '.join(sorted(KINDS))})") from None


def object_path(kind: Kind, namespace: str, name: str | None = None) -> str:
    base = f"/api/{kind.version}" if not kind.group else f"/apis/{kind.group}/{kind.version}"
    if kind.namespaced:
        base += f"/namespaces/{namespace}"
    base += f"/{kind.plural}"
    return f"{base}/{name}" if name else base


class KubernetesStore:
    """Objects in a live cluster (or an emulator) through the official client.

    ``api_client`` is a configured ``kubernetes.client.ApiClient``; use :meth:`connect` to build one
    from a kubeconfig, the in-cluster service account, or an explicit server URL.
    """

    is_live = True

    def __init__(self, api_client: Any, *, request_timeout: float = 10.0, retry_budget: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.api = api_client
        self.request_timeout = request_timeout
        self.retry_budget = retry_budget
        self._sleep = sleep
        self._monotonic = monotonic
        self._versions: dict[str, str] = {}
        self.requests = 0  # requests sent (retries included), for benchmarks
    @classmethod
    def connect(cls, *, kubeconfig: str | Path | None = None, context: str | None = None,
                server: str | None = None) -> "KubernetesStore":
        """A store for the cluster named by ``server``, else ``kubeconfig``/``KUBECONFIG``, else in-cluster."""
        k8s = require("kubernetes", purpose="rollouts on a cluster")
        if server:
            cfg = k8s.client.Configuration()
            cfg.host = server.rstrip("/")
            return cls(k8s.client.ApiClient(cfg))
        try:
            cfg = k8s.client.Configuration()
            try:
                k8s.config.load_kube_config(config_file=str(kubeconfig) if kubeconfig else None, context=context,
                                            client_configuration=cfg)
            except (k8s.config.ConfigException, OSError, TypeError):
                if kubeconfig:
                    raise
                k8s.config.load_incluster_config(client_configuration=cfg)
        except (k8s.config.ConfigException, OSError, TypeError) as exc:
            raise InfrastructureError(
                f"no Kubernetes configuration found: {exc}",
                hint="set KUBECONFIG or --kubeconfig, run in a pod, or use --manifests DIR",
            ) from None
        return cls(k8s.client.ApiClient(cfg))

    # -- the ResourceStore protocol -------------------------------------------------------------

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        try:
            return self._versioned(kind, lambda k: self._request("GET", object_path(k, namespace, name)))
        except NotFoundError as exc:
            if exc.details.get("unserved"):
                raise
            return None

    def create(self, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        namespace = obj.get("metadata", {}).get("namespace") or "default"

        def send(k: Kind) -> dict[str, Any]:
            body = dict(obj)
            body["apiVersion"] = k.api_version
            return self._request("POST", object_path(k, namespace), body=body, dry_run=dry_run)

        return self._versioned(obj.get("kind", ""), send)

    def patch(self, kind: str, name: str, namespace: str, ops: list[dict[str, Any]], *,
              dry_run: bool = False) -> dict[str, Any]:
        return self._versioned(kind, lambda k: self._request("PATCH", object_path(k, namespace, name), body=list(ops),
                                                             content_type="application/json-patch+json", dry_run=dry_run))

    def delete(self, kind: str, name: str, namespace: str) -> None:
        try:
            self._versioned(kind, lambda k: self._request("DELETE", object_path(k, namespace, name)))
        except NotFoundError as exc:
            if exc.details.get("unserved"):
                raise

    def kind(self, name: str) -> Kind:
        """The kind with the API version to use: for a group whose served version varies, the one found by discovery
        (or, before any discovery, the newest mlserve knows)."""
        k = kind_of(name)
        if k.group not in DISCOVERED:
            return k
        version = self._versions.get(k.group, DISCOVERED[k.group][0])
        return replace(k, api_version=f"{k.group}/{version}")

    def _versioned(self, kind: str, send: Callable[[Kind], Any]) -> Any:
        """``send`` with the kind's version; a 404 for the resource itself (not for one object) asks discovery once."""
        k = self.kind(kind)
        try:
            return send(k)
        except NotFoundError as exc:
            if k.group not in DISCOVERED or exc.details.get("object") or k.group in self._versions:
                raise
        self._discover(k)
        return send(self.kind(kind))

    def _discover(self, k: Kind) -> None:
        try:
            doc = self._request("GET", f"/apis/{k.group}")
        except NotFoundError:
            raise NotFoundError(f"the cluster does not serve the API group {k.group} ({k.kind})",
                                hint="is its controller (Istio, a Gateway API implementation) installed? "
                                     "check `kubectl api-versions`", details={"unserved": True}) from None
        served = [v.get("version") for v in doc.get("versions") or []]
        known = [v for v in DISCOVERED[k.group] if v in served]
        if not known:
            raise NotFoundError(f"the cluster serves {k.group} only in version(s) {', '.join(map(str, served)) or 'none'}; "
                                f"mlserve knows {', '.join(DISCOVERED[k.group])}", details={"unserved": True})
        self._versions[k.group] = known[0]

    # -- plumbing ---------------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, body: Any = None, content_type: str | None = None,
                 dry_run: bool = False) -> dict[str, Any]:
        k8s = require("kubernetes", purpose="rollouts on a cluster")
        urllib3 = require("urllib3")
        query: list[tuple[str, str]] = []
        if method in ("POST", "PATCH", "PUT"):
            query.append(("fieldManager", FIELD_MANAGER))
        if dry_run and method != "GET":
            query.append(("dryRun", "All"))
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        give_up = self._monotonic() + self.retry_budget
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                req = self.api.param_serialize(method=method, resource_path=path, query_params=query,
                                               header_params=headers, body=body, auth_settings=["BearerToken"])
                self.requests += 1
                resp = self.api.call_api(*req, _request_timeout=self.request_timeout)
                resp.read()
                status = resp.status
                text = resp.data.decode("utf-8", "replace") if resp.data else ""
                retry_after = _retry_after(resp.getheader("Retry-After") if hasattr(resp, "getheader") else None)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                status, text = 0, f"{type(exc).__name__}: {exc}"
            except k8s.client.exceptions.ApiException as exc:  # pragma: no cover - raised by older clients
                status, text = int(exc.status or 0), str(exc.body or exc.reason)
            if 200 <= status < 300:
                return json.loads(text) if text else {}
            left = give_up - self._monotonic()
            if status in TRANSIENT and left > 0:
                attempt += 1
                wait = min(2.0, 0.1 * 2 ** (attempt - 1))
                if retry_after is not None:
                    wait = max(wait, retry_after)
                self._sleep(min(wait, left))
                continue
            raise _translate(status, text, method, path, attempts=attempt + 1)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from an API server; the backoff applies


def _status_doc(text: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _message(text: str) -> str:
    doc = _status_doc(text)
    if not doc:
        return text[:300]
    return str(doc.get("message") or doc.get("reason") or text)[:1000]


def _translate(status: int, text: str, method: str, path: str, *, attempts: int = 1) -> Exception:
    what = f"{method} {path}"
    msg = _message(text).replace("\n", " ")
    doc = _status_doc(text)
    details = {"status": status, "reason": doc.get("reason")}
    causes = ((doc.get("details") or {}).get("causes")) or []
    if status == 404:
        # an object that does not exist names itself in the details; an unserved resource or version does not
        return NotFoundError(f"{what}: not found", details={"object": bool((doc.get("details") or {}).get("name"))})
    if status == 409:
        return ConflictError(f"{what} was refused (409 {doc.get('reason') or 'Conflict'}): {msg}", details=details)
    if status == 422 and not causes and doc.get("reason") in (None, "Invalid") and "is invalid" not in msg:
        return PatchNotAppliedError(f"{what} was refused (422): the server said \"{msg}\"", details=details)
    if status in (400, 422):
        details["causes"] = causes
        return ApiRejectedError(f"{what} was refused by the API server ({status} {doc.get('reason') or ''}): {msg}".replace(" )", ")"),
                                details=details)
    if status in (401, 403):
        return InfrastructureError(f"{what}: access denied ({status}): {msg}",
                                   hint="check the Role with `mlserve rollout rbac`")
    tries = f" (tried {attempts} times)" if attempts > 1 else ""
    if status == 0:
        return InfrastructureError(f"Kubernetes API unreachable for {what}{tries}: {msg}")
    return InfrastructureError(f"Kubernetes API failed {what} ({status}){tries}: {msg}", details=details)

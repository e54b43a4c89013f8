"""The live-cluster :class:`~mlserve.rollout.store.ResourceStore`, built on the official ``kubernetes`` client.

Every request goes through the client's generic ``ApiClient`` so that one code path serves core,
apps, networking, Gateway API and Istio kinds alike and always speaks plain dicts. Changes carry
the field manager ``mlserve``; ``dry_run`` becomes ``dryRun=All`` (server-side dry run).

Errors are translated once, here: 404 -> ``None`` (get) or :class:`NotFoundError`, 409 and 422 (a
failed JSON-patch ``test``) -> :class:`ConflictError`, anything else (5xx, refused connection,
timeouts) -> :class:`InfrastructureError` after a few short retries of idempotent reads.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mlserve._deps import require
from mlserve.errors import ConflictError, InfrastructureError, NotFoundError, UsageError
from mlserve.rollout.store import KINDS, Kind

FIELD_MANAGER = "mlserve"


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

    def __init__(self, api_client: Any, *, request_timeout: float = 10.0, read_retries: int = 3) -> None:
        self.api = api_client
        self.request_timeout = request_timeout
        self.read_retries = read_retries

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
            return self._request("GET", object_path(kind_of(kind), namespace, name), retries=self.read_retries)
        except NotFoundError:
            return None

    def create(self, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        k = kind_of(obj.get("kind", ""))
        namespace = obj.get("metadata", {}).get("namespace") or "default"
        body = dict(obj)
        body.setdefault("apiVersion", k.api_version)
        return self._request("POST", object_path(k, namespace), body=body, dry_run=dry_run)

    def patch(self, kind: str, name: str, namespace: str, ops: list[dict[str, Any]], *,
              dry_run: bool = False) -> dict[str, Any]:
        return self._request("PATCH", object_path(kind_of(kind), namespace, name), body=list(ops),
                             content_type="application/json-patch+json", dry_run=dry_run)

    def delete(self, kind: str, name: str, namespace: str) -> None:
        try:
            self._request("DELETE", object_path(kind_of(kind), namespace, name))
        except NotFoundError:
            pass

    # -- plumbing ---------------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, body: Any = None, content_type: str | None = None,
                 dry_run: bool = False, retries: int = 0) -> dict[str, Any]:
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
        attempt = 0
        while True:
            try:
                req = self.api.param_serialize(method=method, resource_path=path, query_params=query,
                                               header_params=headers, body=body, auth_settings=["BearerToken"])
                resp = self.api.call_api(*req, _request_timeout=self.request_timeout)
                resp.read()
                status = resp.status
                text = resp.data.decode("utf-8", "replace") if resp.data else ""
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                status, text = 0, f"{type(exc).__name__}: {exc}"
            except k8s.client.exceptions.ApiException as exc:  # pragma: no cover - raised by older clients
                status, text = int(exc.status or 0), str(exc.body or exc.reason)
            if 200 <= status < 300:
                return json.loads(text) if text else {}
            if (status == 0 or status >= 500) and attempt < retries:
                attempt += 1
                time.sleep(0.2 * attempt)
                continue
            raise _translate(status, text, method, path)


def _message(text: str) -> str:
    try:
        doc = json.loads(text)
        return str(doc.get("message") or doc.get("reason") or text)[:300]
    except (ValueError, AttributeError):
        return text[:300]


def _translate(status: int, text: str, method: str, path: str) -> Exception:
    what = f"{method} {path}"
    msg = _message(text).replace("\n", " ")
    if status == 404:
        return NotFoundError(f"{what}: not found")
    if status in (409, 422):
        return ConflictError(f"{what} was refused ({status}): {msg}", details={"status": status})
    if status in (401, 403):
        return InfrastructureError(f"{what}: access denied ({status}): {msg}",
                                   hint="check the Role with `mlserve rollout rbac`")
    if status == 0:
        return InfrastructureError(f"Kubernetes API unreachable for {what}: {msg}")
    return InfrastructureError(f"Kubernetes API failed {what} ({status}): {msg}", details={"status": status})

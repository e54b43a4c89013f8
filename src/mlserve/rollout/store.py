"""Where a rollout reads and changes Kubernetes objects: the live API or a directory of manifests.

Both implementations speak plain dicts (the object as ``kubectl get -o json`` shows it) and RFC 6902
JSON patches, so routers compute one patch and it applies the same way to a cluster (guarded by
``test`` operations and resourceVersion) and to YAML files in a GitOps repository (comments kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Kind:
    kind: str
    api_version: str  # "apps/v1", "v1", "gateway.networking.k8s.io/v1", ...
    plural: str
    namespaced: bool = True

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]


KINDS: dict[str, Kind] = {
    k.kind: k
    for k in [
        Kind("Deployment", "apps/v1", "deployments"),
        Kind("Service", "v1", "services"),
        Kind("ConfigMap", "v1", "configmaps"),
        Kind("Ingress", "networking.k8s.io/v1", "ingresses"),
        Kind("HTTPRoute", "gateway.networking.k8s.io/v1", "httproutes"),
        Kind("VirtualService", "networking.istio.io/v1", "virtualservices"),
        Kind("Lease", "coordination.k8s.io/v1", "leases"),
    ]
}


@runtime_checkable
class ResourceStore(Protocol):
    """Read and change objects by kind, name and namespace.

    ``patch`` takes RFC 6902 operations; a failed ``test`` operation raises
    :class:`mlserve.errors.ConflictError` and changes nothing. ``dry_run`` validates without changing.
    """

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None: ...

    def create(self, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]: ...

    def patch(
        self, kind: str, name: str, namespace: str, ops: list[dict[str, Any]], *, dry_run: bool = False
    ) -> dict[str, Any]: ...

    def delete(self, kind: str, name: str, namespace: str) -> None: ...

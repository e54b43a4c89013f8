"""The serving workload: telling a Deployment which model version to serve, deriving a canary, readiness.

A workload learns its version through its container image (``--image``, a template such as
``{repository}:{version}``; empty leaves the image alone) and/or an environment variable
(``--version-env``, default ``MLSERVE_MODEL_VERSION``; empty sets none).

A canary derived from the stable Deployment must not receive the stable Service's traffic, so
every label the stable Service selects on gets ``-canary`` appended in the canary's pod template and
selector, and ``rollout.mlserve.dev/track: canary`` is added; the canary Service selects exactly that.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from mlserve.errors import UsageError
from mlserve.rollout.ops import Op, pointer, set_ops

TRACK_LABEL = "rollout.mlserve.dev/track"
VERSION_ANNOTATION = "rollout.mlserve.dev/version"
MODEL_ANNOTATION = "rollout.mlserve.dev/model"


@dataclass(frozen=True)
class VersionSpec:
    """How a workload is told the version."""

    image_template: str = "{repository}:{version}"
    env_name: str = "MLSERVE_MODEL_VERSION"
    container: str | None = None  # None: the first container

    def __post_init__(self) -> None:
        if not self.image_template and not self.env_name:
            raise UsageError("--image and --version-env are both empty: the workload would never learn the version")
        if self.image_template:  # a bad template is a usage error before anything changes
            desired_image("registry.local/model:1", self, "model", "1")


def container_index(deployment: dict[str, Any], name: str | None) -> int:
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []
    if not containers:
        raise UsageError(f"Deployment {deployment['metadata']['name']} has no containers")
    if name is None:
        return 0
    for i, c in enumerate(containers):
        if c.get("name") == name:
            return i
    raise UsageError(f"Deployment {deployment['metadata']['name']} has no container {name!r}",
                     hint=f"containers: {', '.join(c.get('name', '?') for c in containers)}")


def repository_of(image: str) -> str:
    """``registry:5000/team/iris:1.2@sha256:..`` -> ``registry:5000/team/iris``."""
    image = image.split("@", 1)[0]
    last = image.rsplit("/", 1)
    if ":" in last[-1]:
        image = image[: image.rindex(":")]
    return image


def _env_index(container: dict[str, Any], name: str) -> int | None:
    return next((k for k, e in enumerate(container.get("env") or []) if e.get("name") == name), None)


def version_paths(deployment: dict[str, Any], spec: VersionSpec) -> list[str]:
    """The fields :func:`version_ops` may change, for the revert snapshot."""
    i = container_index(deployment, spec.container)
    container = deployment["spec"]["template"]["spec"]["containers"][i]
    base = ("spec", "template", "spec", "containers", i)
    paths = []
    if spec.image_template:
        paths.append(pointer(*base, "image"))
    if spec.env_name:
        k = _env_index(container, spec.env_name)
        # Only the variable's value when it exists, so restoring it leaves the rest of the list as it was.
        paths.append(pointer(*base, "env", k, "value") if k is not None else pointer(*base, "env"))
    paths.append(pointer("spec", "template", "metadata", "annotations", VERSION_ANNOTATION))
    return paths


def desired_image(current: str, spec: VersionSpec, model: str, version: str) -> str:
    try:
        return spec.image_template.format(repository=repository_of(current), version=version, model=model, image=current)
    except (KeyError, IndexError, AttributeError) as exc:
        raise UsageError(f"bad --image template {spec.image_template!r}: unknown placeholder {exc}",
                         hint="placeholders: {repository} {version} {model} {image}") from None
    except ValueError as exc:
        raise UsageError(f"bad --image template {spec.image_template!r}: {exc}",
                         hint="placeholders: {repository} {version} {model} {image}; write {{ and }} for braces") from None


def version_ops(deployment: dict[str, Any], spec: VersionSpec, model: str, version: str) -> list[Op]:
    """Guarded operations that make ``deployment`` serve ``model`` ``version``."""
    i = container_index(deployment, spec.container)
    container = deployment["spec"]["template"]["spec"]["containers"][i]
    ops: list[Op] = []
    if spec.image_template:
        ops += set_ops(deployment, pointer("spec", "template", "spec", "containers", i, "image"),
                       desired_image(container.get("image", ""), spec, model, version))
    if spec.env_name:
        base = ("spec", "template", "spec", "containers", i, "env")
        k = _env_index(container, spec.env_name)
        if k is not None:
            ops += set_ops(deployment, pointer(*base, k, "value"), str(version))
        elif container.get("env"):
            ops.append({"op": "add", "path": pointer(*base, "-"), "value": {"name": spec.env_name, "value": str(version)}})
        else:
            ops += set_ops(deployment, pointer(*base), [{"name": spec.env_name, "value": str(version)}])
    # An annotation on the pod template too: the version is visible in `kubectl describe` either way.
    ops += set_ops(deployment, pointer("spec", "template", "metadata", "annotations", VERSION_ANNOTATION), str(version))
    return ops


def served_version(deployment: dict[str, Any]) -> str | None:
    return ((deployment.get("spec", {}).get("template", {}).get("metadata") or {}).get("annotations") or {}).get(VERSION_ANNOTATION)


def _canary_labels(labels: dict[str, str], keys: set[str]) -> dict[str, str]:
    out = {k: (f"{v}-canary" if k in keys else v) for k, v in labels.items()}
    out[TRACK_LABEL] = "canary"
    return out


def canary_objects(stable_dep: dict[str, Any], stable_svc: dict[str, Any], *, deployment_name: str,
                   service_name: str, replicas: int, model: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A canary Deployment and Service derived from the stable ones (not yet told the new version)."""
    keys = set((stable_svc.get("spec", {}).get("selector") or {}).keys())
    namespace = stable_dep["metadata"].get("namespace")
    spec = copy.deepcopy(stable_dep.get("spec", {}))
    spec["replicas"] = replicas
    match = spec.setdefault("selector", {}).setdefault("matchLabels", {})
    spec["selector"]["matchLabels"] = _canary_labels(match, keys)
    template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
    template_meta["labels"] = _canary_labels(template_meta.get("labels") or {}, keys)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name,
            "namespace": namespace,
            "labels": {**(stable_dep["metadata"].get("labels") or {}), TRACK_LABEL: "canary"},
            "annotations": {MODEL_ANNOTATION: model},
        },
        "spec": spec,
    }
    svc_spec = {k: copy.deepcopy(v) for k, v in (stable_svc.get("spec") or {}).items()
                if k not in ("clusterIP", "clusterIPs", "healthCheckNodePort", "loadBalancerIP")}
    svc_spec["selector"] = _canary_labels(stable_svc.get("spec", {}).get("selector") or {}, keys)
    # Node ports are unique cluster-wide: the copy must let the API server pick its own.
    svc_spec["ports"] = [{k: v for k, v in port.items() if k != "nodePort"} for port in svc_spec.get("ports") or []]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name,
            "namespace": namespace,
            "labels": {**(stable_svc["metadata"].get("labels") or {}), TRACK_LABEL: "canary"},
            "annotations": {MODEL_ANNOTATION: model},
        },
        "spec": svc_spec,
    }
    return deployment, service


def colour_deployment(live: dict[str, Any], *, name: str, key: str, colour: str) -> dict[str, Any]:
    """The idle colour's Deployment derived from the live one (blue-green)."""
    spec = copy.deepcopy(live.get("spec", {}))
    spec.setdefault("selector", {}).setdefault("matchLabels", {})[key] = colour
    spec.setdefault("template", {}).setdefault("metadata", {}).setdefault("labels", {})[key] = colour
    labels = {**(live["metadata"].get("labels") or {}), key: colour}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": live["metadata"].get("namespace"), "labels": labels}, "spec": spec}


def readiness(deployment: dict[str, Any] | None, *, min_replicas: int = 0) -> tuple[bool, str]:
    """Whether the rollout controller finished: observed generation, updated, ready and available replicas.

    ``min_replicas``: a Deployment about to get traffic must run at least this many; one scaled
    below it is never ready (a canary scaled to 0 would answer nothing).
    """
    if deployment is None:
        return False, "does not exist"
    want = int(deployment.get("spec", {}).get("replicas", 1))
    if want < min_replicas:
        return False, f"scaled to {want}: needs at least {min_replicas} replica(s) before it gets traffic"
    status = deployment.get("status") or {}
    generation = deployment.get("metadata", {}).get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and (observed is None or int(observed) < int(generation)):
        return False, f"generation {generation} not observed yet (observed {observed})"
    if want == 0:
        return True, "scaled to 0"
    counts = {k: int(status.get(k) or 0) for k in ("updatedReplicas", "readyReplicas", "availableReplicas")}
    if any(v < want for v in counts.values()) or int(status.get("replicas") or want) > want:
        return False, (f"{counts['readyReplicas']}/{want} ready, {counts['availableReplicas']} available, "
                       f"{counts['updatedReplicas']} updated")
    return True, f"{want}/{want} ready"

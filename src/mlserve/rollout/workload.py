"""The serving workload: telling a Deployment which model version to serve, deriving a canary, readiness.

A workload learns its version through its container image (``--image``, a template such as
``{repository}:{version}``; empty leaves the image alone) and/or an environment variable
(``--version-env``, default ``MLSERVE_MODEL_VERSION``; empty sets none). Labels that carry the
version (``--version-label``, default ``app.kubernetes.io/version`` and ``version``) follow it in
the pod template and on the Deployment, so dashboards and selectors keyed on them stay right; a
label that a selector uses is left alone and the rollout says why (:func:`version_labels`).

A canary derived from the stable Deployment must not receive the stable Service's traffic, so
every label the stable Service selects on gets ``-canary`` appended in the canary's pod template and
selector (shortened with a hash where that would pass a label value's 63 characters), and
``rollout.mlserve.dev/track: canary`` is added; the canary Service selects exactly that. The
canary Service is always ``ClusterIP``: it is reached through the router, never from outside.
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from mlserve.errors import UsageError
from mlserve.rollout.ops import Op, pointer, set_ops

TRACK_LABEL = "rollout.mlserve.dev/track"
VERSION_ANNOTATION = "rollout.mlserve.dev/version"
MODEL_ANNOTATION = "rollout.mlserve.dev/model"
LABEL_VALUE_MAX = 63
DEFAULT_VERSION_LABELS = ("app.kubernetes.io/version", "version")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class VersionSpec:
    """How a workload is told the version."""

    image_template: str = "{repository}:{version}"
    env_name: str = "MLSERVE_MODEL_VERSION"
    container: str | None = None  # None: the first container
    labels: tuple[str, ...] = DEFAULT_VERSION_LABELS  # label keys that carry the version, where present

    def __post_init__(self) -> None:
        if not self.image_template and not self.env_name:
            raise UsageError("--image and --version-env are both empty: the workload would never learn the version")
        if self.image_template:  # a bad template is a usage error before anything changes
            desired_image("registry.local/model:1", self, "model", "1")


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def sibling_name(base: str, suffix: str, limit: int) -> str:
    """``base + suffix``, or (past ``limit`` characters) ``base`` cut, a hash of it, then ``suffix``."""
    if len(base) + len(suffix) <= limit:
        return base + suffix
    keep = max(1, limit - len(suffix) - 9)
    return f"{base[:keep].rstrip('-.')}-{_short_hash(base)}{suffix}"


def labelled(value: str, suffix: str) -> str:
    """A label value with ``suffix`` appended, shortened with a hash to stay a valid 63-character label value."""
    if len(value) + len(suffix) <= LABEL_VALUE_MAX:
        return value + suffix
    keep = LABEL_VALUE_MAX - len(suffix) - 9
    head = value[:keep].rstrip("-_.")
    return f"{head}-{_short_hash(value)}{suffix}" if head else f"{_short_hash(value)}{suffix}"


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


def desired_image(current: str, spec: VersionSpec, model: str, version: str) -> str:
    try:
        return spec.image_template.format(repository=repository_of(current), version=version, model=model, image=current)
    except (KeyError, IndexError, AttributeError) as exc:
        raise UsageError(f"bad --image template {spec.image_template!r}: unknown placeholder {exc}",
                         hint="placeholders: {repository} {version} {model} {image}") from None
    except ValueError as exc:
        raise UsageError(f"bad --image template {spec.image_template!r}: {exc}",
                         hint="placeholders: {repository} {version} {model} {image}; write {{ and }} for braces") from None


# -- version labels ------------------------------------------------------------------------------------


def _current_versions(deployment: dict[str, Any], spec: VersionSpec, previous: str | None) -> list[str]:
    """What the Deployment says it serves now: the registry's previous version, its env var, its image tag."""
    found = [previous] if previous else []
    try:
        container = deployment["spec"]["template"]["spec"]["containers"][container_index(deployment, spec.container)]
    except (KeyError, IndexError, UsageError):
        return found
    if spec.env_name:
        k = _env_index(container, spec.env_name)
        if k is not None and container["env"][k].get("value"):
            found.append(str(container["env"][k]["value"]))
    image = str(container.get("image", "")).split("@", 1)[0]
    if ":" in image.rsplit("/", 1)[-1]:
        found.append(image.rsplit(":", 1)[1])
    return found


def relabel(value: str, current: list[str], version: str) -> str | None:
    """``value`` with the version it carries replaced by ``version`` (``v1`` -> ``v2``); None if it carries none."""
    for old in current:
        if value == old or (value.startswith("v") and value[1:] == old):
            new = value[: len(value) - len(old)] + version
            return new if len(new) <= LABEL_VALUE_MAX and _LABEL_VALUE.match(new) else None
    return None


def version_labels(deployment: dict[str, Any], spec: VersionSpec, version: str, *, previous: str | None,
                   service_selector: dict[str, Any] | None) -> tuple[dict[str, str], list[str]]:
    """The version labels of ``deployment``'s pods to rewrite (key -> new value), and why the others stay."""
    template = ((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}
    labels = template.get("labels") or {}
    selected = set((deployment.get("spec") or {}).get("selector", {}).get("matchLabels") or {})
    served = set(service_selector or {})
    current = _current_versions(deployment, spec, previous)
    name = (deployment.get("metadata") or {}).get("name", "?")
    changes: dict[str, str] = {}
    notes: list[str] = []
    for key in spec.labels:
        if key not in labels:
            continue
        value = str(labels[key])
        if key in served:
            notes.append(f"label {key}={value} of Deployment {name}'s pods is left as it is: the Service selects on it, "
                         "and a new value would take the pods out of the Service")
            continue
        if key in selected:
            notes.append(f"label {key}={value} of Deployment {name}'s pods is left as it is: it is in the Deployment's "
                         "selector, which Kubernetes does not allow to change")
            continue
        new = relabel(value, current, version)
        if new is None:
            notes.append(f"label {key}={value} of Deployment {name}'s pods does not carry the served version "
                         f"({' or '.join(current) or 'unknown'}): left as it is")
        elif new != value:
            changes[key] = new
    return changes, notes


def version_paths(deployment: dict[str, Any], spec: VersionSpec, labels: dict[str, str] | None = None) -> list[str]:
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
    for key in labels or {}:
        paths.append(pointer("spec", "template", "metadata", "labels", key))
        if key in ((deployment.get("metadata") or {}).get("labels") or {}):
            paths.append(pointer("metadata", "labels", key))
    return paths


def version_ops(deployment: dict[str, Any], spec: VersionSpec, model: str, version: str,
                labels: dict[str, str] | None = None) -> list[Op]:
    """Operations that make ``deployment`` serve ``model`` ``version`` (``labels``: version labels to rewrite)."""
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
    for key, value in (labels or {}).items():
        ops += set_ops(deployment, pointer("spec", "template", "metadata", "labels", key), value)
        if key in ((deployment.get("metadata") or {}).get("labels") or {}):
            ops += set_ops(deployment, pointer("metadata", "labels", key), value)
    return ops


def served_version(deployment: dict[str, Any]) -> str | None:
    return ((deployment.get("spec", {}).get("template", {}).get("metadata") or {}).get("annotations") or {}).get(VERSION_ANNOTATION)


# -- canary and baseline objects -------------------------------------------------------------------------


def _tracked_labels(labels: dict[str, str], keys: set[str], track: str) -> dict[str, str]:
    out = {k: (labelled(v, f"-{track}") if k in keys else v) for k, v in labels.items()}
    out[TRACK_LABEL] = track
    return out


def _metadata(name: str, namespace: str | None, labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:  # omit what is unset: no empty `namespace:` in a manifest
        meta["namespace"] = namespace
    meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    return meta


_SERVICE_KEEP = ("ports", "sessionAffinity", "sessionAffinityConfig", "ipFamilies", "publishNotReadyAddresses")


def sibling_objects(stable_dep: dict[str, Any], stable_svc: dict[str, Any], *, deployment_name: str, service_name: str,
                    replicas: int, model: str, track: str = "canary",
                    version_labels: dict[str, str] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Deployment and Service derived from the stable ones for ``track`` (canary or baseline), not yet told any version.

    The Service is ClusterIP whatever stable's type is: no load balancer, external IP or node port
    is copied (they cost money, and node ports are unique cluster-wide).
    """
    keys = set((stable_svc.get("spec", {}).get("selector") or {}).keys())
    namespace = stable_dep["metadata"].get("namespace")
    spec = copy.deepcopy(stable_dep.get("spec", {}))
    spec.pop("paused", None)
    spec["replicas"] = replicas
    spec.setdefault("selector", {})
    spec["selector"]["matchLabels"] = _tracked_labels(spec["selector"].get("matchLabels") or {}, keys, track)
    template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
    template_meta["labels"] = _tracked_labels(template_meta.get("labels") or {}, keys, track)
    dep_labels = {**(stable_dep["metadata"].get("labels") or {}), TRACK_LABEL: track}
    for key, value in (version_labels or {}).items():
        template_meta["labels"][key] = value
        if key in spec["selector"]["matchLabels"]:
            spec["selector"]["matchLabels"][key] = value
        if key in dep_labels:
            dep_labels[key] = value
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": _metadata(deployment_name, namespace, dep_labels, {MODEL_ANNOTATION: model}), "spec": spec}
    old = stable_svc.get("spec") or {}
    svc_spec: dict[str, Any] = {"type": "ClusterIP"}
    for key in _SERVICE_KEEP:
        if key in old:
            svc_spec[key] = copy.deepcopy(old[key])
    svc_spec["selector"] = _tracked_labels(old.get("selector") or {}, keys, track)
    svc_spec["ports"] = [{k: v for k, v in port.items() if k != "nodePort"} for port in svc_spec.get("ports") or []]
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": _metadata(service_name, stable_svc["metadata"].get("namespace"),
                                     {**(stable_svc["metadata"].get("labels") or {}), TRACK_LABEL: track},
                                     {MODEL_ANNOTATION: model}),
               "spec": svc_spec}
    return deployment, service


def canary_objects(stable_dep: dict[str, Any], stable_svc: dict[str, Any], *, deployment_name: str,
                   service_name: str, replicas: int, model: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A canary Deployment and Service derived from the stable ones (not yet told the new version)."""
    return sibling_objects(stable_dep, stable_svc, deployment_name=deployment_name, service_name=service_name,
                           replicas=replicas, model=model)


def colour_deployment(live: dict[str, Any], *, name: str, key: str, colour: str) -> dict[str, Any]:
    """The idle colour's Deployment derived from the live one (blue-green)."""
    spec = copy.deepcopy(live.get("spec", {}))
    spec.setdefault("selector", {}).setdefault("matchLabels", {})[key] = colour
    spec.setdefault("template", {}).setdefault("metadata", {}).setdefault("labels", {})[key] = colour
    labels = {**(live["metadata"].get("labels") or {}), key: colour}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": _metadata(name, live["metadata"].get("namespace"), labels, {}), "spec": spec}


# -- readiness ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Readiness:
    ready: bool
    detail: str
    failed: bool = False  # it will not get there: the controller gave up (ProgressDeadlineExceeded)

    def __iter__(self):  # (ready, detail), as before
        return iter((self.ready, self.detail))


def readiness(deployment: dict[str, Any] | None, *, min_replicas: int = 0) -> Readiness:
    """Whether the rollout controller finished: observed generation, updated, ready and available replicas.

    ``min_replicas``: a Deployment about to get traffic must run at least this many; one scaled
    below it is never ready (a canary scaled to 0 would answer nothing). A ``Progressing``
    condition with reason ``ProgressDeadlineExceeded`` for the current generation means it will
    not get there: ``failed``, with the condition's message.
    """
    if deployment is None:
        return Readiness(False, "does not exist")
    want = int(deployment.get("spec", {}).get("replicas", 1))
    if want < min_replicas:
        return Readiness(False, f"scaled to {want}: needs at least {min_replicas} replica(s) before it gets traffic")
    status = deployment.get("status") or {}
    generation = deployment.get("metadata", {}).get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and (observed is None or int(observed) < int(generation)):
        return Readiness(False, f"generation {generation} not observed yet (observed {observed})")
    if want == 0:
        return Readiness(True, "scaled to 0")
    counts = {k: int(status.get(k) or 0) for k in ("updatedReplicas", "readyReplicas", "availableReplicas")}
    if any(v < want for v in counts.values()) or int(status.get("replicas") or want) > want:
        detail = (f"{counts['readyReplicas']}/{want} ready, {counts['availableReplicas']} available, "
                  f"{counts['updatedReplicas']} updated")
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Progressing" and str(cond.get("status")) == "False" \
                    and cond.get("reason") == "ProgressDeadlineExceeded":
                return Readiness(False, f"{detail}; ProgressDeadlineExceeded: {cond.get('message', '')}".rstrip(": "),
                                 failed=True)
        return Readiness(False, detail)
    return Readiness(True, f"{want}/{want} ready")


def workload_readiness(store: Any, name: str, namespace: str, *, min_replicas: int = 0, kind: str = "Deployment",
                       version: str | None = None) -> Readiness:
    """The readiness of workload ``name``: the store's own notion where it has one (the local target's
    variants: serving ``version``), else the Deployment's (:func:`readiness`)."""
    own = getattr(store, "readiness", None)
    if own is not None:
        return own(name, namespace, min_replicas=min_replicas, version=version or None)
    return readiness(store.get(kind, name, namespace), min_replicas=min_replicas)

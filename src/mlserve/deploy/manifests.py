"""The Deployment, Service, PodDisruptionBudget (and HTTPRoute) that run ``mlserve serve`` for one model.

Made to be driven by ``mlserve rollout`` with its defaults:

* The container serves the version pinned in ``MLSERVE_MODEL_VERSION`` (``NAME:$(MLSERVE_MODEL_VERSION)``),
  the variable ``rollout`` sets on the canary; the pod template carries the version annotation
  ``rollout.mlserve.dev/version`` and the Deployment the model annotation, as rollout writes them.
  The image may hold ``{version}`` (``--image 'ghcr.io/acme/iris:{version}'``), matching rollout's
  default ``--image '{repository}:{version}'``.
* Metrics carry ``namespace`` and ``deployment`` labels, the default analysis selector: the namespace
  comes from the Downward API, the Deployment's name from the pod label ``mlserve.dev/deployment``,
  which the Service selects on, so rollout's canary copy gets ``NAME-canary`` in it: the canary
  Deployment's own name.
* Probes: startup and readiness on ``/v2/health/ready`` (ready only after load, checksum and warm-up;
  503 from the first moment of a drain), liveness on ``/v2/health/live``. ``preStop`` waits while
  endpoints are updated; ``terminationGracePeriodSeconds`` covers preStop, drain delay and drain
  timeout with a margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from mlserve.errors import UsageError

DEPLOYMENT_LABEL = "mlserve.dev/deployment"
NAME_LABEL = "app.kubernetes.io/name"
VERSION_ANNOTATION = "rollout.mlserve.dev/version"  # the same keys as mlserve.rollout.workload
MODEL_ANNOTATION = "rollout.mlserve.dev/model"
VERSION_ENV = "MLSERVE_MODEL_VERSION"
ROUTERS = ("gateway", "none")


@dataclass(frozen=True)
class DeploySpec:
    ref: str
    image: str
    namespace: str = "default"
    name: str | None = None  # Deployment/Service name (default: the model's name)
    replicas: int = 2
    http_port: int = 8000
    grpc_port: int = 8001
    cpu: str = "1"
    memory: str = "1Gi"
    threads: int = 1
    registry_path: str = "/var/lib/mlserve/registry"
    registry_claim: str | None = None  # a PersistentVolumeClaim holding the registry (else: in the image)
    drain_delay: float = 5.0
    drain_timeout: float = 30.0
    prestop_seconds: int = 5
    min_available: int = 1
    router: str = "gateway"
    gateway: str = "mlserve-gateway"
    extra_args: tuple[str, ...] = ()

    def check(self) -> "DeploySpec":
        if not self.image:
            raise UsageError("--image is empty")
        if self.replicas < 1:
            raise UsageError(f"--replicas {self.replicas}: must be at least 1")
        if not 0 <= self.min_available < self.replicas:
            raise UsageError(f"--min-available {self.min_available}: must be below --replicas {self.replicas} "
                             "(else no pod may ever be evicted)")
        if self.router not in ROUTERS:
            raise UsageError(f"--router {self.router!r}: choose one of {', '.join(ROUTERS)}")
        if self.http_port == self.grpc_port:
            raise UsageError("--http-port and --grpc-port are the same")
        for what, value in (("--drain-delay", self.drain_delay), ("--drain-timeout", self.drain_timeout),
                            ("--prestop-seconds", self.prestop_seconds)):
            if value < 0:
                raise UsageError(f"{what} {value}: must not be negative")
        return self


class DeployManifests(BaseModel):
    model: str
    version: str
    namespace: str
    name: str
    objects: list[dict[str, Any]]
    yaml: str
    warnings: list[str] = Field(default_factory=list)


def _image(template: str, model: str, version: str) -> str:
    try:
        return template.format(version=version, model=model)
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(f"bad --image {template!r}: {exc}", hint="placeholders: {version} {model}") from None


def build_manifests(spec: DeploySpec, registry: Any) -> DeployManifests:
    """The objects for ``spec.ref``'s current version (read from ``registry``; nothing is written)."""
    from mlserve.registry import parse_ref_strict

    spec.check()
    ref = parse_ref_strict(spec.ref)
    resolved = registry.resolve(spec.ref)
    if not str(resolved.artifact_path).endswith(".onnx"):
        raise UsageError(f"{resolved.model}:{resolved.version} is not an ONNX artifact; serve runs ONNX models",
                         hint=f"convert it first: mlserve optimize {resolved.model}:{resolved.version} --auto "
                              f"--register {resolved.model}")
    model, version = resolved.model, resolved.version
    name = spec.name or model
    ns = spec.namespace
    selector = {NAME_LABEL: model, DEPLOYMENT_LABEL: name}
    labels = {**selector, "app.kubernetes.io/component": "model-server", "app.kubernetes.io/managed-by": "mlserve"}
    grace = math.ceil(spec.prestop_seconds + spec.drain_delay + spec.drain_timeout + 10)
    args = ["serve", f"{model}:$({VERSION_ENV})", "--metrics-label", "namespace=$(MLSERVE_POD_NAMESPACE)",
            "--metrics-label", "deployment=$(MLSERVE_DEPLOYMENT)", *spec.extra_args]
    env = [
        {"name": VERSION_ENV, "value": version},
        {"name": "MLSERVE_POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "MLSERVE_DEPLOYMENT", "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{DEPLOYMENT_LABEL}']"}}},
        {"name": "MLSERVE_REGISTRY", "value": spec.registry_path},
        {"name": "MLSERVE_SERVE_HOST", "value": "0.0.0.0"},
        {"name": "MLSERVE_SERVE_HTTP_PORT", "value": str(spec.http_port)},
        {"name": "MLSERVE_SERVE_GRPC_PORT", "value": str(spec.grpc_port)},
        {"name": "MLSERVE_SERVE_THREADS", "value": str(spec.threads)},
        {"name": "MLSERVE_SERVE_DRAIN_DELAY", "value": f"{spec.drain_delay:g}"},
        {"name": "MLSERVE_SERVE_DRAIN_TIMEOUT", "value": f"{spec.drain_timeout:g}"},
    ]
    ports = [{"name": "http", "containerPort": spec.http_port, "protocol": "TCP"}]
    if spec.grpc_port:
        ports.append({"name": "grpc", "containerPort": spec.grpc_port, "protocol": "TCP"})

    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "timeoutSeconds": 2,
                "failureThreshold": failures}

    container: dict[str, Any] = {
        "name": "server",
        "image": _image(spec.image, model, version),
        "command": ["mlserve"],
        "args": args,
        "env": env,
        "ports": ports,
        "startupProbe": probe("/v2/health/ready", 2, 150),  # up to 5 minutes to load, verify and warm up
        "readinessProbe": probe("/v2/health/ready", 2, 1),
        "livenessProbe": probe("/v2/health/live", 10, 3),
        "lifecycle": {"preStop": {"exec": {"command": [
            "python", "-c", f"import time; time.sleep({spec.prestop_seconds})"]}}},
        "resources": {"requests": {"cpu": spec.cpu, "memory": spec.memory}, "limits": {"memory": spec.memory}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True},
    }
    pod_spec: dict[str, Any] = {"terminationGracePeriodSeconds": grace, "containers": [container]}
    if spec.registry_claim:
        container["volumeMounts"] = [{"name": "registry", "mountPath": spec.registry_path, "readOnly": True}]
        pod_spec["volumes"] = [{"name": "registry", "persistentVolumeClaim": {"claimName": spec.registry_claim,
                                                                              "readOnly": True}}]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": {MODEL_ANNOTATION: model}},
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": dict(selector)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": dict(labels), "annotations": {
                    VERSION_ANNOTATION: version, "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(spec.http_port), "prometheus.io/path": "/metrics"}},
                "spec": pod_spec,
            },
        },
    }
    svc_ports = [{"name": "http", "port": spec.http_port, "targetPort": "http", "protocol": "TCP"}]
    if spec.grpc_port:
        svc_ports.append({"name": "grpc", "port": spec.grpc_port, "targetPort": "grpc", "protocol": "TCP",
                          "appProtocol": "kubernetes.io/h2c"})
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": ns, "labels": labels},
               "spec": {"type": "ClusterIP", "selector": dict(selector), "ports": svc_ports}}
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
           "metadata": {"name": name, "namespace": ns, "labels": labels},
           "spec": {"minAvailable": spec.min_available, "selector": {"matchLabels": dict(selector)}}}
    objects = [deployment, service, pdb]
    warnings = []
    if spec.router == "gateway":
        objects.append({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                        "metadata": {"name": name, "namespace": ns, "labels": labels},
                        "spec": {"parentRefs": [{"name": spec.gateway}],
                                 "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                                            "backendRefs": [{"name": name, "port": spec.http_port, "weight": 100}]}]}})
    if ref.stage is None:
        warnings.append(f"{spec.ref} is pinned: the manifests serve version {version} until rollout or you change "
                        f"{VERSION_ENV}")
    if not spec.registry_claim:
        warnings.append(f"no --registry-claim: the image must hold the registry at {spec.registry_path} "
                        "(see docs/serve.md, 'Dockerfile')")
    return DeployManifests(model=model, version=version, namespace=ns, name=name, objects=objects,
                           yaml=_yaml(objects), warnings=warnings)


def _yaml(objects: list[dict[str, Any]]) -> str:
    import io

    from mlserve._deps import require

    ruamel_yaml = require("ruamel.yaml", purpose="writing YAML manifests")
    yaml = ruamel_yaml.YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # keep apiVersion, kind, metadata, spec in that order
    out = io.StringIO()
    yaml.dump_all(objects, out)
    return "---\n" + out.getvalue().replace("\n...\n", "\n").replace("\n---\n", "\n---\n")

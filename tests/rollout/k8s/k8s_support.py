"""Shared objects and helpers for the rollout tests against the Kubernetes API emulator."""

from __future__ import annotations

import time

import json

from typing import Any

from mlserve.rollout.analysis import AnalysisResult
from mlserve.rollout.engine import JudgeWindow, RolloutConfig, RolloutEngine
from mlserve.rollout.kube import KubernetesStore
from mlserve.rollout.registry_link import RegistryLink

NS = "ml"

STABLE_DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "iris", "namespace": NS, "labels": {"app": "iris"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "iris"}},
        "template": {
            "metadata": {"labels": {"app": "iris"}},
            "spec": {"containers": [{
                "name": "server",
                "image": "registry.local/iris-server:1",
                "ports": [{"containerPort": 8080}],
                "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "MLSERVE_MODEL_VERSION", "value": "1"}],
            }]},
        },
    },
}
STABLE_SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "iris", "namespace": NS, "labels": {"app": "iris"}},
    "spec": {"selector": {"app": "iris"}, "ports": [{"port": 80, "targetPort": 8080}], "clusterIP": "10.0.0.12"},
}
HTTP_ROUTE = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "iris", "namespace": NS},
    "spec": {
        "parentRefs": [{"name": "public-gw"}],
        "hostnames": ["iris.example.com"],
        "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                   "backendRefs": [{"name": "iris", "port": 80}]}],
    },
    "status": {"parents": [{
        "parentRef": {"name": "public-gw"},
        "controllerName": "example.com/gateway-controller",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "observedGeneration": 1},
                       {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "observedGeneration": 1}],
    }]},
}
STABLE_INGRESS = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "Ingress",
    "metadata": {"name": "iris", "namespace": NS, "annotations": {"kubernetes.io/ingress.class": "nginx"}},
    "spec": {"rules": [{"host": "iris.example.com", "http": {"paths": [{
        "path": "/", "pathType": "Prefix",
        "backend": {"service": {"name": "iris", "port": {"number": 80}}}}]}}]},
}
VIRTUAL_SERVICE = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "iris", "namespace": NS},
    "spec": {"hosts": ["iris.example.com"], "http": [{"route": [
        {"destination": {"host": "iris.ml.svc.cluster.local", "port": {"number": 80}}, "weight": 100}]}]},
}


class ScriptedJudge:
    """A deterministic judge: returns the given verdicts in order as real AnalysisResult objects."""

    def __init__(self, *verdicts: str) -> None:
        self.verdicts = list(verdicts)
        self.windows: list[JudgeWindow] = []

    def __call__(self, window: JudgeWindow) -> AnalysisResult:
        self.windows.append(window)
        verdict = self.verdicts.pop(0) if self.verdicts else "pass"
        score = {"pass": 100.0, "marginal": 80.0, "fail": 0.0}.get(verdict)
        return AnalysisResult(verdict=verdict, score=score, reason=f"scripted {verdict}", metrics=[],
                              start=window.start, end=window.end, pass_score=95.0, marginal_score=75.0)


def config(**overrides: Any) -> RolloutConfig:
    base = dict(name="iris", to="2", namespace=NS, steps=[10, 50, 100], pause=0.05, timeout=60, poll=0.05,
                ready_timeout=5, lease_seconds=2, owner="test-owner", revert_timeout=1.0)
    base.update(overrides)
    return RolloutConfig(**base)


def engine(store: KubernetesStore, registry: Any = None, judge: Any = None, **kw: Any) -> RolloutEngine:
    return RolloutEngine(store, judge=judge, registry=RegistryLink(registry) if registry is not None else None, **kw)


def weights(route: dict[str, Any]) -> dict[str, int]:
    return {r["name"]: r.get("weight", 1) for r in route["spec"]["rules"][0]["backendRefs"]}


def env_of(dep: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0].get("env", [])}




def wait_for(predicate: Any, timeout: float = 30.0) -> Any:
    """Poll ``predicate`` until it returns something truthy (no timing assertion: only a give-up limit)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def lease_state(cluster: Any, model: str = "iris") -> dict[str, Any]:
    lease = cluster.get("Lease", f"mlserve-rollout-{model}", NS)
    return json.loads(lease["metadata"]["annotations"]["rollout.mlserve.dev/state"])


# The stable backendRef as the API server stores it: the Gateway API CRD defaults group, kind and weight.
STABLE_BACKENDS = [{"group": "", "kind": "Service", "name": "iris", "port": 80, "weight": 1}]

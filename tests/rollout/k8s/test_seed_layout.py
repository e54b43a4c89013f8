"""The layout of the project's own seed manifests: a model `churn` served by Deployment, Service and Ingress `churn-api`,
pods labelled `version: v1`; and header/cookie routing and the baseline, end to end."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from mlserve import exitcodes
from mlserve.rollout.routers import NGINX_COOKIE, NGINX_HEADER, NGINX_HEADER_VALUE, NGINX_WEIGHT
from mlserve.rollout.settings import HeaderRoute
from rollout.k8s.k8s_support import (
    HTTP_ROUTE,
    NS,
    STABLE_BACKENDS,
    STABLE_DEPLOYMENT,
    STABLE_SERVICE,
    ScriptedJudge,
    config,
    engine,
    env_of,
)

APP = "churn-api"
LABELS = {"app": APP, "version": "v1"}


def churn_objects() -> list[dict]:
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": APP, "namespace": NS, "labels": dict(LABELS)},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": APP}},
                    "template": {"metadata": {"labels": dict(LABELS)}, "spec": {"containers": [{
                        "name": "server", "image": "registry.local/churn-api:1", "ports": [{"containerPort": 8080}],
                        "env": [{"name": "MLSERVE_MODEL_VERSION", "value": "1"}]}]}}}}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": APP, "namespace": NS},
           "spec": {"type": "LoadBalancer", "selector": {"app": APP}, "ports": [{"port": 80, "targetPort": 8080}]}}
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": APP, "namespace": NS, "annotations": {"kubernetes.io/ingress.class": "nginx"}},
               "spec": {"rules": [{"host": "churn.example.com", "http": {"paths": [{
                   "path": "/", "pathType": "Prefix", "backend": {"service": {"name": APP, "port": {"number": 80}}}}]}}]}}
    return [dep, svc, ingress]


@pytest.fixture
def churn(cluster, tmp_path):
    from mlserve.registry import Registry

    for obj in churn_objects():
        cluster.put(obj)
    reg = Registry(tmp_path / "churn-registry", lock_timeout=5)
    for content in (b"churn one", b"churn two"):
        artifact = tmp_path / "churn.bin"
        artifact.write_bytes(content)
        reg.register("churn", artifact)
    reg.promote("churn", "1")
    return cluster, reg


def test_every_missing_object_is_named_in_one_error(churn, cli):
    cluster, reg = churn
    result = cli("rollout", "canary", "churn", "--to", "2", "-n", NS, "--server", cluster.url, "--router", "nginx",
                 "--no-analysis", "--registry", str(reg.root), "--json")
    assert result.exit_code == exitcodes.NOT_FOUND
    error = json.loads(result.stdout)["error"]
    assert error["message"] == f"not found: Deployment {NS}/churn, Service {NS}/churn, Ingress {NS}/churn"
    assert "--workload" in error["hint"]
    assert cluster.writes() == []


def test_one_option_names_the_workload_and_version_labels_follow(churn, cli):
    cluster, reg = churn
    result = cli("rollout", "canary", "churn", "--to", "2", "-n", NS, "--server", cluster.url, "--router", "nginx",
                 "--workload", APP, "--steps", "50,100", "--pause", "0s", "--poll", "0.05s", "--no-analysis",
                 "--registry", str(reg.root), "--json")
    assert result.exit_code == 0, result.stderr
    canary = cluster.get("Deployment", f"{APP}-canary", NS)
    assert canary["spec"]["template"]["metadata"]["labels"]["version"] == "v2"  # not the stable pods' v1
    assert canary["metadata"]["labels"]["version"] == "v2"
    stable = cluster.get("Deployment", APP, NS)
    assert stable["spec"]["template"]["metadata"]["labels"] == {"app": APP, "version": "v2"}
    assert stable["metadata"]["labels"]["version"] == "v2" and env_of(stable)["MLSERVE_MODEL_VERSION"] == "2"
    assert cluster.get("Service", f"{APP}-canary", NS)["spec"]["type"] == "ClusterIP"  # stable's is a LoadBalancer
    assert cluster.get("Ingress", f"{APP}-canary", NS)["metadata"]["annotations"][NGINX_WEIGHT] == "0"


def test_a_version_label_a_selector_uses_is_left_alone_and_the_rollout_says_why(cluster, store, registry):
    dep, svc = copy.deepcopy(STABLE_DEPLOYMENT), copy.deepcopy(STABLE_SERVICE)
    dep["spec"]["template"]["metadata"]["labels"]["version"] = "v1"
    svc["spec"]["selector"]["version"] = "v1"
    for obj in (dep, svc, HTTP_ROUTE):
        cluster.put(copy.deepcopy(obj))
    result = engine(store, registry, ScriptedJudge()).run(config(steps=[100]))
    assert result.outcome == "promoted", result.message
    assert cluster.get("Deployment", "iris", NS)["spec"]["template"]["metadata"]["labels"]["version"] == "v1"
    assert any("label version=v1 of Deployment iris's pods is left as it is: the Service selects on it" in w
               for w in result.warnings), result.warnings


def test_manifests_without_namespaces_get_no_empty_namespace_key(tmp_path: Path, registry, cli):
    """The seed's manifests carry no namespace: the generated canary files must not say `namespace:` with nothing."""
    from ruamel.yaml import YAML

    repo = tmp_path / "deploy"
    repo.mkdir()
    yaml = YAML()
    for obj in churn_objects():
        obj["metadata"].pop("namespace")
        obj["metadata"]["name"] = "iris"
        if obj["kind"] == "Ingress":
            obj["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] = "iris"
        with (repo / f"{obj['kind'].lower()}.yaml").open("w") as fh:
            yaml.dump(obj, fh)
    result = cli("rollout", "canary", "iris", "--to", "2", "--manifests", str(repo), "--router", "nginx", "--steps", "100",
                 "--pause", "0s", "--registry", str(registry.root))
    assert result.exit_code == 0, result.stderr
    created = sorted(p.name for p in repo.glob("*-canary.yaml"))
    assert created == ["deployment-iris-canary.yaml", "ingress-iris-canary.yaml", "service-iris-canary.yaml"]
    for name in created:
        text = (repo / name).read_text()
        assert "namespace" not in text, (name, text)


def test_header_routing_reaches_the_canary_first_then_goes(seeded, store, registry):
    """Gateway API: a rule matching the header sends to the canary during the rollout; it is gone afterwards."""
    seen = []

    def judge(window):
        rules = seeded.get("HTTPRoute", "iris", NS)["spec"]["rules"]
        seen.append([(r["matches"][0].get("headers"), [b["name"] for b in r["backendRefs"]]) for r in rules])
        return ScriptedJudge("pass")(window)

    result = engine(store, registry, judge).run(config(steps=[10, 100], header_route=HeaderRoute(header="X-Canary", value="always")))
    assert result.outcome == "promoted", result.message
    header_rule = ([{"type": "Exact", "name": "X-Canary", "value": "always"}], ["iris-canary"])
    assert all(step[-1] == header_rule for step in seen)
    assert len(seeded.get("HTTPRoute", "iris", NS)["spec"]["rules"]) == 1
    assert any("requests with header X-Canary: always reach iris-canary" in e["message"] for e in result.events)


def test_header_routing_is_removed_by_a_revert(seeded, store, registry):
    result = engine(store, registry, ScriptedJudge("fail")).run(config(header_route=HeaderRoute(header="X-Canary", value="1")))
    assert result.outcome == "rolled-back" and result.reverted
    route = seeded.get("HTTPRoute", "iris", NS)
    assert len(route["spec"]["rules"]) == 1 and route["spec"]["rules"][0]["backendRefs"] == STABLE_BACKENDS


@pytest.mark.parametrize("route,annotations", [
    (HeaderRoute(header="X-Canary", value="always"), {NGINX_HEADER: "X-Canary", NGINX_HEADER_VALUE: "always"}),
    (HeaderRoute(cookie="beta"), {NGINX_COOKIE: "beta"})])
def test_nginx_canary_by_header_or_cookie(cluster, store, registry, route, annotations):
    from rollout.k8s.k8s_support import STABLE_INGRESS

    for obj in (STABLE_DEPLOYMENT, STABLE_SERVICE, STABLE_INGRESS):
        cluster.put(copy.deepcopy(obj))
    seen = []

    def judge(window):
        got = cluster.get("Ingress", "iris-canary", NS)["metadata"]["annotations"]
        seen.append({k: got.get(k) for k in annotations})
        return ScriptedJudge("pass")(window)

    result = engine(store, registry, judge).run(config(router="nginx", steps=[50, 100], header_route=route))
    assert result.outcome == "promoted", result.message
    assert seen == [annotations, annotations]
    left = cluster.get("Ingress", "iris-canary", NS)["metadata"]["annotations"]
    assert not set(annotations) & set(left)


def test_the_baseline_gets_the_canarys_share_and_is_the_judges_reference(seeded, store, registry):
    split = []

    def judge(window):
        refs = seeded.get("HTTPRoute", "iris", NS)["spec"]["rules"][0]["backendRefs"]
        split.append(({r["name"]: r["weight"] for r in refs}, window.stable, window.compare))
        base = seeded.get("Deployment", "iris-baseline", NS)
        assert env_of(base)["MLSERVE_MODEL_VERSION"] == "1"  # a fresh copy of stable, not the new version
        return ScriptedJudge("pass")(window)

    result = engine(store, registry, judge).run(config(steps=[10, 50, 100], baseline=True))
    assert result.outcome == "promoted", result.message
    assert split == [({"iris": 80, "iris-canary": 10, "iris-baseline": 10}, "iris-baseline", True),
                     ({"iris": 0, "iris-canary": 50, "iris-baseline": 50}, "iris-baseline", True),
                     ({"iris": 0, "iris-canary": 100, "iris-baseline": 0}, "iris", False)]
    assert seeded.get("Deployment", "iris-baseline", NS)["spec"]["replicas"] == 0


def test_a_failed_baseline_rollout_removes_the_baseline(seeded, store, registry):
    result = engine(store, registry, ScriptedJudge("fail")).run(config(steps=[10, 50, 100], baseline=True))
    assert result.outcome == "rolled-back" and result.reverted
    assert seeded.get("Deployment", "iris-baseline", NS) is None and seeded.get("Service", "iris-baseline", NS) is None
    assert seeded.get("HTTPRoute", "iris", NS)["spec"]["rules"][0]["backendRefs"] == STABLE_BACKENDS

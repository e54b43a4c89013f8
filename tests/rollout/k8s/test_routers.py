"""The nginx and Istio routers end to end, and the pure weight computations of every router."""

from __future__ import annotations

import copy
import json

import pytest

from mlserve.errors import UsageError
from mlserve.rollout.jsonpatch import apply_patch
from mlserve.rollout.routers import NGINX_CANARY, NGINX_WEIGHT, GatewayRouter, IstioRouter, SelectorRouter
from rollout.k8s.k8s_support import (
    STABLE_BACKENDS,
    HTTP_ROUTE,
    NS,
    STABLE_DEPLOYMENT,
    STABLE_INGRESS,
    STABLE_SERVICE,
    VIRTUAL_SERVICE,
    ScriptedJudge,
    config,
    engine,
)


@pytest.fixture
def nginx(cluster):
    for obj in (STABLE_DEPLOYMENT, STABLE_SERVICE, STABLE_INGRESS):
        cluster.put(copy.deepcopy(obj))
    return cluster


@pytest.fixture
def istio(cluster):
    for obj in (STABLE_DEPLOYMENT, STABLE_SERVICE, VIRTUAL_SERVICE):
        cluster.put(copy.deepcopy(obj))
    return cluster


def test_nginx_canary_ingress_is_created_weighted_and_reset(nginx, store, registry):
    seen = []

    def judge(window):
        ann = nginx.get("Ingress", "iris-canary", NS)["metadata"]["annotations"]
        seen.append((ann[NGINX_CANARY], ann[NGINX_WEIGHT]))
        return ScriptedJudge("pass")(window)

    result = engine(store, registry, judge).run(config(router="nginx"))
    assert result.outcome == "promoted", result.message
    assert seen == [("true", "10"), ("true", "50"), ("true", "100")]
    canary = nginx.get("Ingress", "iris-canary", NS)
    assert canary["metadata"]["annotations"][NGINX_WEIGHT] == "0"
    assert canary["metadata"]["annotations"]["kubernetes.io/ingress.class"] == "nginx"
    backend = canary["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
    assert backend == "iris-canary"
    assert nginx.get("Ingress", "iris", NS)["spec"] == STABLE_INGRESS["spec"]  # the stable Ingress is never touched


def test_nginx_abort_removes_the_canary_ingress(nginx, store, registry):
    result = engine(store, registry, ScriptedJudge("fail")).run(config(router="nginx"))
    assert result.outcome == "rolled-back"
    assert nginx.get("Ingress", "iris-canary", NS) is None


def test_preexisting_canary_weight_is_not_restored_onto_the_canary(nginx, store, registry):
    """A leftover canary Ingress at weight 10 (the seed's lab) must end at 0 after an abort, not at 10."""
    leftover = copy.deepcopy(STABLE_INGRESS)
    leftover["metadata"] = {"name": "iris-canary", "namespace": NS,
                            "annotations": {NGINX_CANARY: "true", NGINX_WEIGHT: "10"}}
    leftover["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] = "iris-canary"
    nginx.put(leftover)
    result = engine(store, registry, ScriptedJudge("fail")).run(config(router="nginx"))
    assert result.outcome == "rolled-back"
    assert nginx.get("Ingress", "iris-canary", NS)["metadata"]["annotations"][NGINX_WEIGHT] == "0"


def test_istio_weights_sum_to_100(istio, store, registry):
    seen = []

    def judge(window):
        routes = istio.get("VirtualService", "iris", NS)["spec"]["http"][0]["route"]
        seen.append({r["destination"]["host"]: r["weight"] for r in routes})
        return ScriptedJudge("pass")(window)

    result = engine(store, registry, judge).run(config(router="istio"))
    assert result.outcome == "promoted", result.message
    assert seen == [
        {"iris.ml.svc.cluster.local": 90, "iris-canary.ml.svc.cluster.local": 10},
        {"iris.ml.svc.cluster.local": 50, "iris-canary.ml.svc.cluster.local": 50},
        {"iris.ml.svc.cluster.local": 0, "iris-canary.ml.svc.cluster.local": 100},
    ]
    assert all(sum(s.values()) == 100 for s in seen)


def test_gateway_route_refusing_the_change_is_reported(seeded, store, registry):
    # The Gateway controller cannot resolve the canary Service (as with a missing ReferenceGrant).
    seeded.emulator.gateway.unresolved.add("iris-canary")
    result = engine(store, registry, ScriptedJudge()).run(config())
    assert result.outcome == "failed"
    assert "ResolvedRefs=False" in result.message and "BackendNotFound" in result.message
    assert result.reverted
    assert seeded.get("HTTPRoute", "iris", NS)["spec"]["rules"][0]["backendRefs"] == STABLE_BACKENDS


def test_gateway_ops_are_plain_changes_and_idempotent():
    router = GatewayRouter("iris", "iris", "iris-canary")
    route = copy.deepcopy(HTTP_ROUTE)
    ops = router.weight_ops(route, 25)
    assert ops == [
        {"op": "add", "path": "/spec/rules/0/backendRefs/0/weight", "value": 75},
        {"op": "add", "path": "/spec/rules/0/backendRefs/-", "value": {"name": "iris-canary", "port": 80, "weight": 25}},
    ]
    after = apply_patch(route, ops, in_place=False)
    assert router.weight(after) == 25
    assert router.weight_ops(after, 25) == []  # nothing to do twice
    again = router.weight_ops(after, 60)
    assert again[0] == {"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": 40}
    assert all(op["op"] != "test" for op in again)  # values are never tested: the resourceVersion guards
    assert router.weight(apply_patch(after, again, in_place=False)) == 60


def test_routers_refuse_objects_they_cannot_manage():
    route = copy.deepcopy(HTTP_ROUTE)
    with pytest.raises(UsageError, match="no rule with a backendRef to Service other"):
        GatewayRouter("iris", "other", "other-canary").weight_ops(route, 10)
    vs = copy.deepcopy(VIRTUAL_SERVICE)
    vs["spec"]["http"][0]["route"].append({"destination": {"host": "legacy"}, "weight": 0})
    with pytest.raises(UsageError, match="other than stable and canary"):
        IstioRouter("iris", "iris", "iris-canary").weight_ops(vs, 10)


def test_gateway_refuses_a_rule_with_a_third_backend():
    """[iris:50, iris-legacy:50] at 10% must not become [iris:90, iris-legacy:50, iris-canary:10] (legacy's share silently grows)."""
    route = copy.deepcopy(HTTP_ROUTE)
    route["spec"]["rules"][0]["backendRefs"] = [{"name": "iris", "port": 80, "weight": 50},
                                                {"name": "iris-legacy", "port": 80, "weight": 50}]
    router = GatewayRouter("iris", "iris", "iris-canary")
    for call in (lambda: router.weight_ops(route, 10), lambda: router.snapshot_paths(route), lambda: router.weight(route)):
        with pytest.raises(UsageError) as info:
            call()
        assert info.value.message == ("HTTPRoute iris rules[0] sends traffic to backends other than stable and canary "
                                      "(iris-legacy); mlserve only manages a two-way split")
        assert info.value.hint == "move the other backends to their own rule, or point --route at a route whose rule has only iris"
    # A backend of another kind with the stable's name is not stable either.
    route["spec"]["rules"][0]["backendRefs"][1] = {"group": "example.com", "kind": "Bucket", "name": "iris", "weight": 50}
    with pytest.raises(UsageError, match=r"other than stable and canary \(iris\)"):
        router.weight_ops(route, 10)
    # Stable and canary alone, and rules that do not serve stable, are fine.
    route["spec"]["rules"][0]["backendRefs"] = [{"name": "iris", "port": 80, "weight": 90},
                                                {"name": "iris-canary", "port": 80, "weight": 10}]
    route["spec"]["rules"].append({"backendRefs": [{"name": "docs", "port": 80}, {"name": "docs-v2", "port": 80}]})
    assert router.weight(route) == 10
    assert router.weight_ops(route, 50)[-1] == {"op": "replace", "path": "/spec/rules/0/backendRefs/1/weight", "value": 50}


def test_gateway_rollout_with_a_third_backend_is_refused_before_any_change(seeded, store, registry):
    route = copy.deepcopy(HTTP_ROUTE)
    route["spec"]["rules"][0]["backendRefs"] = [{"name": "iris", "port": 80, "weight": 50},
                                                {"name": "iris-legacy", "port": 80, "weight": 50}]
    stored = seeded.put(route)
    writes = len(seeded.writes())
    with pytest.raises(UsageError, match="mlserve only manages a two-way split"):
        engine(store, registry, ScriptedJudge()).run(config())
    assert len(seeded.writes()) == writes
    assert seeded.get("HTTPRoute", "iris", NS)["spec"]["rules"][0]["backendRefs"] == stored["spec"]["rules"][0]["backendRefs"]


def test_selector_router_switches_colour():
    svc = {"spec": {"selector": {"app": "iris", "slot": "blue"}}}
    router = SelectorRouter("iris", "slot", "blue", "green")
    ops = router.weight_ops(svc, 100)
    assert ops == [{"op": "replace", "path": "/spec/selector/slot", "value": "green"}]
    assert router.weight(apply_patch(svc, ops, in_place=False)) == 100


def test_plan_prints_exact_patches_and_applies_nothing(seeded, registry, cli):
    before = len(seeded.writes())
    result = cli("rollout", "plan", "iris", "--to", "2", "-n", NS, "--server", seeded.url, "--steps", "20,100",
                 "--registry", str(registry.root), "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    plan = json.loads(result.stdout)["result"]
    assert len(seeded.writes()) == before
    stages = [c["stage"] for c in plan["changes"]]
    assert stages[:3] == ["lock", "create canary Service", "create canary Deployment"]
    step1 = next(c for c in plan["changes"] if c["stage"] == "step 1: 20% to the canary")
    # The stored route has the weight the Gateway API CRD defaults (1): it is replaced, never tested.
    assert step1["ops"] == [
        {"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": 80},
        {"op": "add", "path": "/spec/rules/0/backendRefs/-",
         "value": {"group": "", "kind": "Service", "name": "iris-canary", "port": 80, "weight": 20}},
    ]
    step2 = next(c for c in plan["changes"] if c["stage"] == "step 2: 100% to the canary")
    assert step2["ops"] == [{"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": 0},
                            {"op": "replace", "path": "/spec/rules/0/backendRefs/1/weight", "value": 100}]
    stable = next(c for c in plan["changes"] if c["stage"] == "tell stable the new version")
    assert {"op": "replace", "path": "/spec/template/spec/containers/0/image",
            "value": "registry.local/iris-server:2"} in stable["ops"]
    assert [s["kind"] + "/" + s["name"] for s in plan["snapshot"]] == [
        "HTTPRoute/iris", "Service/iris-canary", "Deployment/iris-canary", "Deployment/iris"]
    human = cli("rollout", "plan", "iris", "--to", "2", "-n", NS, "--server", seeded.url, "--registry", str(registry.root))
    assert "snapshot (restored by abort):" in human.stdout
    assert "  Deployment/iris-canary: created by the rollout (deleted on abort)" in human.stdout


def test_rbac_prints_a_minimal_role(cli):
    result = cli("rollout", "rbac", "-n", "ml", "--router", "gateway")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "kind: Role" in lines and "  namespace: ml" in lines
    assert '  - apiGroups: ["coordination.k8s.io"]' in lines
    assert "    resources: [httproutes]" in lines
    assert "ingresses" not in result.stdout and "secrets" not in result.stdout
    assert "list" not in result.stdout and "watch" not in result.stdout
    doc = json.loads(cli("rollout", "rbac", "-n", "ml", "--json").stdout)["result"]
    assert {r["resources"][0] for r in doc["rules"]} == {
        "deployments", "services", "leases", "httproutes", "ingresses", "virtualservices"}


def test_stale_route_conditions_are_waited_for_then_reported(seeded, store, registry):
    """Conditions observed for an older generation are not trusted: the engine waits, then warns."""
    seeded.emulator.gateway.enabled = False  # a controller that stopped reporting
    route = copy.deepcopy(HTTP_ROUTE)
    for cond in route["status"]["parents"][0]["conditions"]:
        cond["observedGeneration"] = 1
    seeded.put(route)
    result = engine(store, registry, ScriptedJudge()).run(config(steps=[100], route_check_timeout=0.2))
    assert result.outcome == "promoted", result.message
    assert any("has not reported on generation" in w for w in result.warnings)


def test_transient_server_errors_on_a_patch_are_retried(seeded, store, registry):
    seeded.emulator.fail("/httproutes/", method="PATCH", times=2)
    result = engine(store, registry, ScriptedJudge()).run(config(steps=[100]))
    assert result.outcome == "promoted", result.message
    assert [s for m, p, s in seeded.writes() if "/httproutes/" in p][:3] == [503, 503, 200]


def test_canary_service_is_cluster_ip_whatever_stable_is():
    """A canary Service never copies a load balancer, external IPs or node ports: it is reached through the router."""
    from mlserve.rollout.workload import canary_objects

    svc = copy.deepcopy(STABLE_SERVICE)
    svc["spec"].update(type="LoadBalancer", clusterIPs=["10.0.0.12"], externalIPs=["203.0.113.7"],
                       loadBalancerIP="203.0.113.8", loadBalancerSourceRanges=["0.0.0.0/0"],
                       externalTrafficPolicy="Local", healthCheckNodePort=31000, allocateLoadBalancerNodePorts=True)
    svc["spec"]["ports"][0]["nodePort"] = 30080
    dep, canary_svc = canary_objects(copy.deepcopy(STABLE_DEPLOYMENT), svc, deployment_name="iris-canary",
                                     service_name="iris-canary", replicas=1, model="iris")
    assert canary_svc["spec"] == {"type": "ClusterIP", "ports": [{"port": 80, "targetPort": 8080}],
                                  "selector": {"app": "iris-canary", "rollout.mlserve.dev/track": "canary"}}
    assert dep["spec"]["selector"]["matchLabels"] == {"app": "iris-canary", "rollout.mlserve.dev/track": "canary"}
    assert "status" not in dep and "resourceVersion" not in dep["metadata"]

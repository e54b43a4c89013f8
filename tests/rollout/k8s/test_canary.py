"""Full canary runs against the emulated API server, through the official client over real HTTP."""

from __future__ import annotations

from mlserve import exitcodes
from rollout.k8s.k8s_support import STABLE_BACKENDS, NS, ScriptedJudge, config, engine, env_of, weights


def test_canary_promotes_through_every_step(seeded, store, registry):
    judge = ScriptedJudge("pass", "marginal", "pass")
    result = engine(store, registry, judge).run(config())

    assert result.outcome == "promoted", result.message
    assert result.exit_code == exitcodes.OK
    assert [(s.weight, s.verdict) for s in result.steps] == [(10, "pass"), (50, "marginal"), (100, "pass")]
    assert any("marginal" in w for w in result.warnings)
    # The judge compared canary against stable over each pause.
    assert [(w.canary, w.stable, w.weight) for w in judge.windows] == [
        ("iris-canary", "iris", 10), ("iris-canary", "iris", 50), ("iris-canary", "iris", 100)]
    assert all(w.end > w.start for w in judge.windows)

    stable = seeded.get("Deployment", "iris", NS)
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local/iris-server:2"
    assert env_of(stable) == {"LOG_LEVEL": "info", "MLSERVE_MODEL_VERSION": "2"}
    canary = seeded.get("Deployment", "iris-canary", NS)
    assert canary["spec"]["replicas"] == 0
    assert canary["spec"]["template"]["metadata"]["labels"] == {"app": "iris-canary", "rollout.mlserve.dev/track": "canary"}
    # The canary Service does not select stable pods, and the stable Service does not select canary pods.
    assert seeded.get("Service", "iris-canary", NS)["spec"]["selector"] == {
        "app": "iris-canary", "rollout.mlserve.dev/track": "canary"}
    assert seeded.get("Service", "iris-canary", NS)["spec"]["clusterIP"] != seeded.get("Service", "iris", NS)["spec"]["clusterIP"]
    assert weights(seeded.get("HTTPRoute", "iris", NS)) == {"iris": 100, "iris-canary": 0}

    assert registry.resolve("iris@production").version == "2"
    lease = seeded.get("Lease", "mlserve-rollout-iris", NS)
    assert lease["spec"]["holderIdentity"] == ""
    messages = [e["message"] for e in result.events]
    tail = [m for m in messages if m.startswith(("stable iris serves", "canary iris-canary scaled", "registry:"))]
    assert tail == ["stable iris serves 2 and takes all traffic", "canary iris-canary scaled to 0",
                    "registry: iris@production is now 2"], "the --json record ends with the promotion's own steps"


def test_route_weights_follow_the_steps(seeded, store, registry):
    """Each step's weight is really applied: the route's history holds 10/90, 50/50, 100/0 in order."""
    seen = []

    def judge(window):
        seen.append(weights(seeded.get("HTTPRoute", "iris", NS)))
        return ScriptedJudge("pass")(window)

    result = engine(store, registry, judge).run(config())
    assert result.outcome == "promoted"
    assert seen == [{"iris": 90, "iris-canary": 10}, {"iris": 50, "iris-canary": 50}, {"iris": 0, "iris-canary": 100}]


def test_judge_fail_rolls_back(seeded, store, registry):
    result = engine(store, registry, ScriptedJudge("pass", "fail")).run(config())
    assert result.outcome == "rolled-back"
    assert result.exit_code == exitcodes.ROLLED_BACK
    assert "step 2" in result.message and "50%" in result.message
    assert result.reverted
    # Traffic is back on stable, stable untouched, created objects removed.
    assert weights(seeded.get("HTTPRoute", "iris", NS)) == {"iris": 1}
    assert seeded.get("HTTPRoute", "iris", NS)["spec"]["rules"][0]["backendRefs"] == STABLE_BACKENDS
    assert env_of(seeded.get("Deployment", "iris", NS))["MLSERVE_MODEL_VERSION"] == "1"
    assert seeded.get("Deployment", "iris-canary", NS) is None
    assert seeded.get("Service", "iris-canary", NS) is None
    assert registry.resolve("iris@production").version == "1"
    kinds = [e.kind for e in registry.events("iris")]
    assert "rollout-rolled-back" in kinds


def test_judge_inconclusive_is_never_a_pass(seeded, store, registry):
    result = engine(store, registry, ScriptedJudge("inconclusive")).run(config())
    assert result.outcome == "inconclusive"
    assert result.exit_code == exitcodes.INCONCLUSIVE
    assert weights(seeded.get("HTTPRoute", "iris", NS)) == {"iris": 1}
    assert registry.resolve("iris@production").version == "1"


def test_undo_after_a_promoted_canary_restores_the_previous_version(seeded, store, registry, cli):
    assert engine(store, registry, ScriptedJudge()).run(config()).outcome == "promoted"
    assert env_of(seeded.get("Deployment", "iris", NS))["MLSERVE_MODEL_VERSION"] == "2"
    result = cli("rollout", "undo", "iris", "-n", NS, "--server", seeded.url, "--registry", str(registry.root))
    assert result.exit_code == 0, result.stderr
    stable = seeded.get("Deployment", "iris", NS)
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local/iris-server:1"
    assert env_of(stable) == {"LOG_LEVEL": "info", "MLSERVE_MODEL_VERSION": "1"}
    assert seeded.get("HTTPRoute", "iris", NS)["spec"]["rules"][0]["backendRefs"] == STABLE_BACKENDS
    assert registry.resolve("iris@production").version == "1"
    # Undo twice is refused with a clear reason rather than silently doing something else.
    again = cli("rollout", "undo", "iris", "-n", NS, "--server", seeded.url, "--registry", str(registry.root))
    assert again.exit_code == exitcodes.CONFLICT
    assert "already reverted" in again.stderr


def test_existing_canary_deployment_is_reused_and_restored(seeded, store, registry):
    """A canary Deployment left from an earlier rollout is updated, and an abort puts its fields back."""
    import copy

    from rollout.k8s.k8s_support import STABLE_DEPLOYMENT

    old = copy.deepcopy(STABLE_DEPLOYMENT)
    old["metadata"]["name"] = "iris-canary"
    old["spec"]["replicas"] = 0
    old["spec"]["selector"]["matchLabels"] = {"app": "iris-canary"}
    old["spec"]["template"]["metadata"]["labels"] = {"app": "iris-canary"}
    seeded.put(old)
    seen = []

    def judge(window):
        dep = seeded.get("Deployment", "iris-canary", NS)
        seen.append((dep["spec"]["replicas"], env_of(dep)["MLSERVE_MODEL_VERSION"]))
        return ScriptedJudge("fail")(window)

    result = engine(store, registry, judge).run(config())
    assert result.outcome == "rolled-back"
    assert seen == [(1, "2")]
    after = seeded.get("Deployment", "iris-canary", NS)
    assert after["spec"]["replicas"] == 0 and env_of(after)["MLSERVE_MODEL_VERSION"] == "1"
    assert "rollout.mlserve.dev/version" not in (after["spec"]["template"]["metadata"].get("annotations") or {})


def test_a_crashing_judge_still_leaves_traffic_on_stable(seeded, store, registry):
    import pytest

    def judge(window):
        raise ZeroDivisionError("bug in a custom judge")

    with pytest.raises(ZeroDivisionError):
        engine(store, registry, judge).run(config())
    assert seeded.get("HTTPRoute", "iris", NS)["spec"]["rules"][0]["backendRefs"] == STABLE_BACKENDS
    assert seeded.get("Deployment", "iris-canary", NS) is None

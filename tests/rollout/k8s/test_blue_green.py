"""Blue-green: the idle colour gets the version, is checked, the Service selector switches; undo is instant."""

from __future__ import annotations

import copy
import json
import sys

import pytest

from mlserve import exitcodes
from rollout.k8s.k8s_support import NS, STABLE_DEPLOYMENT, ScriptedJudge, config, engine, env_of


@pytest.fixture
def blue(cluster):
    dep = copy.deepcopy(STABLE_DEPLOYMENT)
    dep["metadata"]["name"] = "iris-blue"
    dep["spec"]["selector"]["matchLabels"]["slot"] = "blue"
    dep["spec"]["template"]["metadata"]["labels"]["slot"] = "blue"
    cluster.put(dep)
    cluster.put({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "iris", "namespace": NS},
                 "spec": {"selector": {"app": "iris", "slot": "blue"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    return cluster


def bg(**kw):
    return config(**{"strategy": "blue-green", "keep": 0.1, "pause": 0.05, **kw})


def selector(cluster):
    return cluster.get("Service", "iris", NS)["spec"]["selector"]


def test_blue_green_switches_after_smoke_and_analysis(blue, store, registry):
    judge = ScriptedJudge("pass")
    result = engine(store, registry, judge).run(bg(smoke_cmd=f"{sys.executable} -c 'import os; assert os.environ[\"MLSERVE_ROLLOUT_VERSION\"] == \"2\"'"))
    assert result.outcome == "promoted", result.message
    assert selector(blue) == {"app": "iris", "slot": "green"}
    green = blue.get("Deployment", "iris-green", NS)
    assert env_of(green)["MLSERVE_MODEL_VERSION"] == "2"
    assert green["spec"]["replicas"] == 2
    assert green["spec"]["selector"]["matchLabels"] == {"app": "iris", "slot": "green"}
    assert blue.get("Deployment", "iris-blue", NS)["spec"]["replicas"] == 0  # after --keep
    assert [(w.canary, w.stable) for w in judge.windows] == [("iris-green", "iris-blue")]
    assert registry.resolve("iris@production").version == "2"
    assert any("smoke command passed" in e["message"] for e in result.events)


def test_failed_smoke_check_keeps_traffic_on_live_colour(blue, store, registry):
    result = engine(store, registry, ScriptedJudge()).run(bg(smoke_cmd=f"{sys.executable} -c 'raise SystemExit(3)'"))
    assert result.outcome == "rolled-back"
    assert result.exit_code == exitcodes.ROLLED_BACK
    assert "smoke command exited 3" in result.message
    assert selector(blue) == {"app": "iris", "slot": "blue"}
    assert blue.get("Deployment", "iris-green", NS) is None
    assert blue.get("Deployment", "iris-blue", NS)["spec"]["replicas"] == 2


def test_smoke_url_that_fails_rolls_back(blue, store, registry):
    result = engine(store, registry, ScriptedJudge()).run(bg(smoke_url=blue.url + "/no/such/path"))
    assert result.outcome == "rolled-back"
    assert result.message == f"smoke check {blue.url}/no/such/path answered 404"
    assert selector(blue)["slot"] == "blue"


def test_undo_during_keep_is_an_instant_switch_back(blue, store, registry, cli):
    import threading
    import time

    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("r", engine(store, registry, ScriptedJudge()).run(bg(keep=30))))
    thread.start()
    end = time.monotonic() + 20
    while selector(blue)["slot"] != "green" and time.monotonic() < end:
        time.sleep(0.02)
    assert selector(blue)["slot"] == "green"
    result = cli("rollout", "undo", "iris", "-n", NS, "--server", blue.url, "--registry", str(registry.root), "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)["result"]
    assert (doc["phase_before"], doc["phase"]) == ("switched", "undone")
    thread.join(20)
    assert box["r"].outcome == "aborted"
    assert selector(blue) == {"app": "iris", "slot": "blue"}
    assert blue.get("Deployment", "iris-blue", NS)["spec"]["replicas"] == 2
    assert blue.get("Deployment", "iris-green", NS) is None
    assert registry.resolve("iris@production").version == "1"


def test_undo_after_scale_down_brings_the_old_colour_back_first(blue, store, registry, cli):
    assert engine(store, registry, ScriptedJudge()).run(bg()).outcome == "promoted"
    assert blue.get("Deployment", "iris-blue", NS)["spec"]["replicas"] == 0
    result = cli("rollout", "undo", "iris", "-n", NS, "--server", blue.url, "--registry", str(registry.root))
    assert result.exit_code == 0, result.stderr
    assert selector(blue)["slot"] == "blue"
    assert blue.get("Deployment", "iris-blue", NS)["spec"]["replicas"] == 2
    # The old colour was scaled up before the Service moved back to it.
    writes = [p for m, p, s in blue.writes() if m in ("PATCH", "DELETE") and not p.endswith("/leases/mlserve-rollout-iris")]
    last = writes[-3:]
    assert last[0].endswith("/deployments/iris-blue") and last[1].endswith("/services/iris"), last
    assert registry.resolve("iris@production").version == "1"


def test_undo_that_reads_the_state_before_the_registry_promotion_still_restores_production(blue, store, registry, cli):
    """The race: undo runs between the selector switch and the rollout's registry promotion.

    The registry link (injected, as in production) holds the promotion until the undo has finished,
    which makes the interleaving deterministic. Production must end on the old version, moved back
    exactly once.
    """
    import threading
    import time

    from mlserve.rollout.engine import RolloutEngine
    from mlserve.rollout.registry_link import RegistryLink

    undo_done = threading.Event()

    class LatePromotion(RegistryLink):
        def promote(self, model, version, reason, expect_current=None):
            undo_done.wait(20)
            return super().promote(model, version, reason, expect_current=expect_current)

    box = {}
    rollout = RolloutEngine(store, judge=ScriptedJudge(), registry=LatePromotion(registry))
    thread = threading.Thread(target=lambda: box.setdefault("r", rollout.run(bg(keep=30))))
    thread.start()
    end = time.monotonic() + 20
    while selector(blue)["slot"] != "green" and time.monotonic() < end:
        time.sleep(0.02)
    result = cli("rollout", "undo", "iris", "-n", NS, "--server", blue.url, "--registry", str(registry.root), "--json")
    undo_done.set()
    assert result.exit_code == 0, result.stderr
    thread.join(20)
    assert box["r"].outcome == "aborted"
    assert selector(blue) == {"app": "iris", "slot": "blue"}
    assert registry.resolve("iris@production").version == "1"
    moves = [(e.from_version, e.to_version) for e in registry.events("iris") if e.kind == "promote"]
    assert moves[-2:] == [("1", "2"), ("2", "1")], "promoted late, then moved back exactly once"

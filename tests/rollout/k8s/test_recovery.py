"""Recovery and sizing: resuming a promotion, failed aborts, registry after abort, defaults, capacity, heartbeats."""

from __future__ import annotations

import copy
import json
import threading
import time
from datetime import timedelta

import pytest

from mlserve import exitcodes
from mlserve.errors import ConflictError, InfrastructureError
from mlserve.rollout.engine import Clock, RolloutEngine
from mlserve.rollout.registry_link import RegistryLink
from mlserve.rollout.state import LeaseStateStore
from mlserve.rollout.workload import readiness
from rollout.k8s.k8s_support import STABLE_BACKENDS, NS, STABLE_DEPLOYMENT, config, engine, env_of, lease_state, ScriptedJudge, wait_for, weights
from rollout.k8s.test_blue_green import bg, blue, selector  # noqa: F401 - the blue fixture




class Later(Clock):
    """The clock of a job started a while later: the dead owner's heartbeat is long stale."""

    def now(self):
        return super().now() + timedelta(seconds=30)


class DiesBeforeRegistryPromotion(RegistryLink):
    """The job is killed right before the registry promotion (SystemExit escapes the engine like a kill)."""

    def promote(self, model, version, reason, expect_current=None):
        raise SystemExit(137)


def route_patches_to_canary(cluster, since: int) -> list:
    """Weights sent to the canary by HTTPRoute patches after request number ``since``."""
    sent = []
    for r in cluster.emulator.seen[since:]:
        if r.method == "PATCH" and "/httproutes/" in r.path:
            for op in r.data if isinstance(r.data, list) else []:
                value = op.get("value")
                if isinstance(value, dict) and value.get("name") == "iris-canary":
                    sent.append(value.get("weight"))
                elif op.get("path", "").endswith("/backendRefs/1/weight"):
                    sent.append(value)
    return sent


# -- 1: resume in the promoting phase -------------------------------------------------------------


def test_readiness_of_a_deployment_about_to_get_traffic_needs_replicas():
    dep = {"metadata": {"generation": 2}, "spec": {"replicas": 0}, "status": {"observedGeneration": 2}}
    assert tuple(readiness(dep)) == (True, "scaled to 0")
    ready, detail = readiness(dep, min_replicas=1)
    assert not ready and "scaled to 0" in detail


def test_resume_after_dying_while_promoting_finishes_the_promotion(seeded, store, registry):
    with pytest.raises(SystemExit):
        RolloutEngine(store, registry=DiesBeforeRegistryPromotion(registry)).run(config())
    assert lease_state(seeded)["phase"] == "promoting"
    assert seeded.get("Deployment", "iris-canary", NS)["spec"]["replicas"] == 0
    since = len(seeded.emulator.seen)
    result = engine(store, registry, ScriptedJudge(), clock=Later()).run(config(resume=True, owner="second-job"))
    assert result.outcome == "promoted", result.message
    assert [w for w in route_patches_to_canary(seeded, since) if w] == []  # no traffic to the scaled-down canary
    assert any("resuming the promotion" in e["message"] for e in result.events)
    assert weights(seeded.get("HTTPRoute", "iris", NS)).get("iris-canary", 0) == 0
    assert env_of(seeded.get("Deployment", "iris", NS))["MLSERVE_MODEL_VERSION"] == "2"
    assert registry.resolve("iris@production").version == "2"


# -- 2: an abort that fails half-way keeps the lock -----------------------------------------------


def test_abort_that_fails_half_way_keeps_the_lock_until_an_abort_succeeds(seeded, store, registry):
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("r", engine(store, registry, ScriptedJudge()).run(config(pause=30))))
    thread.start()
    wait_for(lambda: weights(seeded.get("HTTPRoute", "iris", NS)).get("iris-canary") == 10)
    seeded.emulator.fail("/httproutes/", method="PATCH", times=10**6)
    with pytest.raises(InfrastructureError) as info:
        engine(store, registry).abort("iris", NS, revert_timeout=0)
    assert "traffic may still be split" in info.value.message
    thread.join(30)
    assert box["r"].outcome == "aborted" and not box["r"].reverted
    assert "traffic may still be split" in box["r"].message
    state = lease_state(seeded)
    assert (state["phase"], state["reverted"]) == ("aborted", False)
    assert weights(seeded.get("HTTPRoute", "iris", NS))["iris-canary"] == 10
    # the split state is not taken as the snapshot of a new rollout
    with pytest.raises(ConflictError) as refused:
        engine(store, registry).run(config(owner="next-job"))
    assert "mlserve rollout abort iris" in str(refused.value)
    for fault in seeded.emulator.faults:
        fault.remaining = 0
    done = engine(store, registry).abort("iris", NS)
    assert done.phase == "aborted"
    assert lease_state(seeded)["reverted"] is True
    assert seeded.get("HTTPRoute", "iris", NS)["spec"]["rules"][0]["backendRefs"] == STABLE_BACKENDS
    assert engine(store, registry, ScriptedJudge()).run(config(owner="next-job")).outcome == "promoted"


# -- 3: abort restores the registry --------------------------------------------------------------


class DiesDuringKeep(Clock):
    """Kills the job (SystemExit ends its thread without a revert) once the Service switched."""

    def __init__(self, cluster) -> None:
        self.cluster = cluster

    def sleep(self, seconds):
        if selector(self.cluster)["slot"] == "green":
            raise SystemExit(137)
        super().sleep(seconds)


def test_abort_of_a_switched_blue_green_puts_the_registry_back(blue, store, registry, cli):  # noqa: F811
    def job():
        try:
            engine(store, registry, ScriptedJudge(), clock=DiesDuringKeep(blue)).run(bg(keep=600))
        except SystemExit:
            pass  # killed

    thread = threading.Thread(target=job)
    thread.start()
    thread.join(30)
    assert lease_state(blue)["phase"] == "switched"
    assert registry.resolve("iris@production").version == "2"
    result = cli("rollout", "abort", "iris", "-n", NS, "--server", blue.url, "--registry", str(registry.root))
    assert result.exit_code == 0, result.stderr
    assert selector(blue)["slot"] == "blue"
    assert registry.resolve("iris@production").version == "1"


# -- 4, 5, 8: defaults and up-front checks -------------------------------------------------------


def test_default_pause_is_the_analysis_min_range_and_must_fit_the_timeout(seeded, registry, cli, tmp_path):
    analysis = tmp_path / "analysis.json"
    analysis.write_text(json.dumps({"defaults": {"min_points": 4, "step": "1s", "window": "1s", "scrape_interval": "1s"}}))
    result = cli("rollout", "canary", "iris", "--to", "2", "-n", NS, "--server", seeded.url, "--steps", "10,100",
                 "--timeout", "3s", "--analysis", str(analysis), "--prometheus-url", "http://127.0.0.1:9",
                 "--registry", str(registry.root))
    assert result.exit_code == exitcodes.USAGE, result.stderr
    assert "--timeout 3s" in result.stderr and "2 steps x --pause 5s = 10s" in result.stderr
    assert seeded.get("Lease", "mlserve-rollout-iris", NS) is None  # refused before the lock


def test_canary_with_every_default_is_not_refused(seeded, registry, cli):
    result = cli("rollout", "canary", "iris", "--to", "2", "-n", NS, "--server", seeded.url, "--dry-run",
                 "--prometheus-url", "http://127.0.0.1:9", "--registry", str(registry.root))
    assert result.exit_code == 0, result.stderr


def test_keep_counts_against_the_timeout(blue, registry, cli):  # noqa: F811
    result = cli("rollout", "blue-green", "iris", "--to", "2", "-n", NS, "--server", blue.url, "--no-analysis",
                 "--keep", "20s", "--timeout", "3s", "--registry", str(registry.root))
    assert result.exit_code == exitcodes.USAGE, result.stderr
    assert "--keep 20s" in result.stderr
    assert selector(blue)["slot"] == "blue"


def test_blue_green_with_defaults_skips_analysis_and_says_why(blue, registry, cli):  # noqa: F811
    result = cli("rollout", "blue-green", "iris", "--to", "2", "-n", NS, "--server", blue.url, "--keep", "0s",
                 "--poll", "0.05s", "--prometheus-url", "http://127.0.0.1:9", "--registry", str(registry.root), "--json")
    assert result.exit_code == 0, result.stderr
    step = json.loads(result.stdout)["result"]["steps"][0]
    assert step["verdict"] == "skipped" and "idle colour gets no traffic" in step["reason"]
    assert selector(blue)["slot"] == "green"


def test_blue_green_analysis_without_thresholds_is_refused(blue, registry, cli, tmp_path):  # noqa: F811
    analysis = tmp_path / "analysis.json"
    analysis.write_text(json.dumps({"metrics": [{"name": "errors", "query": "sum(rate(errors{{deployment=\"{target}\"}}[1m]))",
                                                 "direction": "max"}]}))
    result = cli("rollout", "blue-green", "iris", "--to", "2", "-n", NS, "--server", blue.url, "--keep", "0s",
                 "--analysis", str(analysis), "--prometheus-url", "http://127.0.0.1:9", "--registry", str(registry.root))
    assert result.exit_code == exitcodes.USAGE, result.stderr + result.stdout
    assert "threshold" in result.stderr


def test_bad_image_template_is_a_usage_error_before_anything_changes(seeded, registry, cli):
    before = seeded.writes()
    result = cli("rollout", "canary", "iris", "--to", "2", "-n", NS, "--server", seeded.url, "--no-analysis",
                 "--image", "{bogus}", "--registry", str(registry.root))
    assert result.exit_code == exitcodes.USAGE, result.stderr
    assert "bogus" in result.stderr
    assert seeded.writes() == before
    result = cli("rollout", "canary", "iris", "--to", "2", "-n", NS, "--server", seeded.url, "--no-analysis",
                 "--container", "sidecar", "--registry", str(registry.root))
    assert result.exit_code == exitcodes.USAGE, result.stderr
    assert seeded.get("Lease", "mlserve-rollout-iris", NS) is None


# -- 6: a comparison-only analysis at 100% -------------------------------------------------------


def test_comparison_only_analysis_skips_the_full_step(seeded, store, registry, tmp_path):
    from mlserve.rollout.api import STABLE_IDLE, prometheus_judge

    analysis = tmp_path / "analysis.json"
    analysis.write_text(json.dumps({"metrics": [{"name": "errors", "query": "sum(rate(errors{{deployment=\"{target}\"}}[1m]))",
                                                 "direction": "max"}]}))
    judge = prometheus_judge(analysis, "http://127.0.0.1:9")  # unreachable: any query would fail the rollout
    result = engine(store, registry, judge).run(config(steps=[100]))
    assert result.outcome == "promoted", result.message
    assert (result.steps[0].verdict, result.steps[0].reason) == ("skipped", STABLE_IDLE)


# -- 7: canary capacity follows its weight -------------------------------------------------------


def test_canary_is_scaled_to_its_share_before_the_weight_moves(cluster, store, registry):
    from rollout.k8s.k8s_support import HTTP_ROUTE, STABLE_SERVICE

    dep = copy.deepcopy(STABLE_DEPLOYMENT)
    dep["spec"]["replicas"] = 4
    for obj in (dep, STABLE_SERVICE, HTTP_ROUTE):
        cluster.put(copy.deepcopy(obj))
    seen = []

    def judge(window):
        canary = cluster.get("Deployment", "iris-canary", NS)
        seen.append((window.weight, canary["spec"]["replicas"], (canary.get("status") or {}).get("readyReplicas")))
        return ScriptedJudge("pass")(window)

    result = engine(store, registry, judge).run(config(steps=[10, 50, 100]))
    assert result.outcome == "promoted", result.message
    assert seen == [(10, 1, 1), (50, 2, 2), (100, 4, 4)]


# -- 9: keep past the deadline -------------------------------------------------------------------


def test_keep_past_the_deadline_still_scales_the_old_colour_down(blue, store, registry):  # noqa: F811
    result = engine(store, registry, ScriptedJudge()).run(bg(keep=600, timeout=3))
    assert result.outcome == "promoted", result.message
    assert selector(blue)["slot"] == "green"
    assert blue.get("Deployment", "iris-blue", NS)["spec"]["replicas"] == 0
    assert any("deadline" in w and "scaled to 0" in w for w in result.warnings)


# -- 10: heartbeat while blocked -----------------------------------------------------------------


def test_heartbeat_goes_on_while_the_judge_works(seeded, store, registry):
    states = LeaseStateStore(store, NS)
    renewals = []

    def slow_judge(window):
        first = states.load("iris").renewed_at
        end = time.monotonic() + 5  # a judge this slow would otherwise let the 1 s lease go stale
        while time.monotonic() < end and states.load("iris").renewed_at == first:
            time.sleep(0.05)
        renewals.append(states.load("iris").renewed_at != first)
        return ScriptedJudge("pass")(window)

    result = engine(store, registry, slow_judge).run(config(steps=[100], lease_seconds=1))
    assert result.outcome == "promoted", result.message
    assert renewals == [True]


# -- 11: status of blue-green reads the Service --------------------------------------------------


def test_status_of_blue_green_reads_the_live_selector(blue, store, registry, cli):  # noqa: F811
    assert engine(store, registry, ScriptedJudge()).run(bg()).outcome == "promoted"
    svc = blue.get("Service", "iris", NS)
    svc["spec"]["selector"]["slot"] = "blue"  # someone switched back by hand
    blue.put(svc)
    status = json.loads(cli("rollout", "status", "iris", "-n", NS, "--server", blue.url, "--json").stdout)["result"]
    assert status["weight"] == 100 and status["live_weight"] == 0


def test_abort_racing_the_canary_registry_promotion_leaves_production_on_the_old_version(seeded, store, registry, cli):
    """The abort reads the state while the job is promoting, before its registry promotion lands."""
    abort_done = threading.Event()

    class LatePromotion(RegistryLink):
        def promote(self, model, version, reason, expect_current=None):
            abort_done.wait(20)
            return super().promote(model, version, reason, expect_current=expect_current)

    box = {}
    rollout = RolloutEngine(store, judge=ScriptedJudge(), registry=LatePromotion(registry))
    thread = threading.Thread(target=lambda: box.setdefault("r", rollout.run(config())))
    thread.start()
    wait_for(lambda: seeded.get("Lease", "mlserve-rollout-iris", NS) is not None
             and lease_state(seeded)["phase"] == "promoting"
             and seeded.get("Deployment", "iris-canary", NS)["spec"]["replicas"] == 0)
    result = cli("rollout", "abort", "iris", "-n", NS, "--server", seeded.url, "--registry", str(registry.root))
    abort_done.set()
    assert result.exit_code == 0, result.stderr
    thread.join(20)
    assert box["r"].outcome == "aborted"
    assert env_of(seeded.get("Deployment", "iris", NS))["MLSERVE_MODEL_VERSION"] == "1"
    assert registry.resolve("iris@production").version == "1"

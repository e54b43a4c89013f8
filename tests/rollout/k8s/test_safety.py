"""Safety of rollouts: conflicts, API failures, dry runs, readiness, aborts, deadlines, commands from other jobs."""

from __future__ import annotations

import json
import threading
import time

from mlserve import exitcodes
from rollout.k8s.k8s_support import STABLE_BACKENDS, NS, config, engine, env_of, lease_state, ScriptedJudge, wait_for, weights


def test_conflicts_are_retried_with_guarded_patches(seeded, store, registry):
    seeded.emulator.conflict_next = 3
    result = engine(store, registry, ScriptedJudge()).run(config())
    assert result.outcome == "promoted", result.message
    statuses = [s for m, p, s in seeded.writes() if m == "PATCH"]
    assert statuses.count(409) == 3
    # Every patch carried the resourceVersion guard and a field manager.
    patches = [r for r in seeded.emulator.seen if r.method == "PATCH"]
    assert patches and all(r.params.get("fieldManager") == "mlserve" for r in patches)
    assert all(r.data[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": r.data[0]["value"]}
               for r in patches)


def test_failed_test_op_is_reported_with_the_servers_words_not_a_crash(seeded, store):
    import pytest

    from mlserve.errors import PatchNotAppliedError

    ops = [{"op": "test", "path": "/spec/replicas", "value": 7}, {"op": "replace", "path": "/spec/replicas", "value": 1}]
    with pytest.raises(PatchNotAppliedError) as info:
        store.patch("Deployment", "iris", NS, ops)
    assert info.value.message == ('PATCH /apis/apps/v1/namespaces/ml/deployments/iris was refused (422): the server said '
                                  '"the server rejected our request due to an error in our request"')
    assert seeded.get("Deployment", "iris", NS)["spec"]["replicas"] == 2


def test_api_failing_mid_rollout_is_infrastructure_and_recoverable(seeded, store, registry, cli):
    def judge(window):
        # After the first step is judged, the API server starts failing every write to the route.
        seeded.emulator.fail("/httproutes/", method="PATCH", times=1000)
        return ScriptedJudge("pass")(window)

    result = engine(store, registry, judge).run(config())
    assert result.outcome == "failed"
    assert result.exit_code == exitcodes.INFRASTRUCTURE
    assert not result.reverted
    assert "mlserve rollout abort iris" in result.message
    # Traffic is stuck at step 1 but the state says so, and holds the snapshot.
    assert weights(seeded.get("HTTPRoute", "iris", NS)) == {"iris": 90, "iris-canary": 10}
    state = lease_state(seeded)
    assert state["phase"] == "failed" and state["reverted"] is False and state["weight"] == 10

    # A second rollout is refused while this one is unresolved.
    refused = cli("rollout", "canary", "iris", "--to", "2", "-n", NS, "--server", seeded.url, "--no-analysis",
                  "--registry", str(registry.root))
    assert refused.exit_code == exitcodes.CONFLICT
    assert "abort" in refused.stderr

    # The API recovers; `abort` from another process re-applies the snapshot, and is idempotent.
    for fault in seeded.emulator.faults:
        fault.remaining = 0
    first = cli("rollout", "abort", "iris", "-n", NS, "--server", seeded.url, "--registry", str(registry.root), "--json")
    assert first.exit_code == 0, first.stderr
    doc = json.loads(first.stdout)["result"]
    assert (doc["phase_before"], doc["phase"]) == ("failed", "aborted")
    assert seeded.get("HTTPRoute", "iris", NS)["spec"]["rules"][0]["backendRefs"] == STABLE_BACKENDS
    assert seeded.get("Deployment", "iris-canary", NS) is None
    writes_before = len(seeded.writes())
    second = cli("rollout", "abort", "iris", "-n", NS, "--server", seeded.url, "--registry", str(registry.root), "--json")
    assert second.exit_code == 0
    assert json.loads(second.stdout)["result"]["already_reverted"] is True
    # Only the Lease is written again; no object is touched a second time.
    assert all("leases" in p for _, p, _ in seeded.writes()[writes_before:])
    assert "rollout-aborted" in [e.kind for e in registry.events("iris")]


def test_dry_run_is_server_side_and_changes_nothing(seeded, store, registry):
    def spec_and_meta(kind):
        obj = seeded.get(kind, "iris", NS)  # status (and so resourceVersion) is the controllers' to change
        return {k: obj["metadata"].get(k) for k in ("labels", "annotations", "generation", "managedFields")}, obj["spec"]

    before = {k: spec_and_meta(k) for k in ("Deployment", "Service", "HTTPRoute")}
    result = engine(store, registry, ScriptedJudge()).run(config(dry_run=True))
    assert result.outcome == "dry-run" and result.exit_code == 0
    assert {(c.action, c.kind) for c in result.changes} >= {
        ("create", "Lease"), ("create", "Service"), ("create", "Deployment"), ("patch", "HTTPRoute"), ("patch", "Deployment")}
    assert {k: spec_and_meta(k) for k in before} == before
    assert seeded.get("Lease", "mlserve-rollout-iris", NS) is None
    assert seeded.get("Deployment", "iris-canary", NS) is None
    writes = [r for r in seeded.emulator.seen if r.method in ("POST", "PATCH")]
    assert writes and all(r.params.get("dryRun") == "All" for r in writes)
    assert registry.resolve("iris@production").version == "1"


def test_canary_that_never_gets_ready_gets_no_traffic(seeded, store, registry):
    seeded.emulator.never_ready.add("iris-canary")
    result = engine(store, registry, ScriptedJudge()).run(config(ready_timeout=0.3))
    assert result.outcome == "rolled-back"
    assert "not ready" in result.message
    assert [w for w in seeded.writes() if "httproutes" in w[1]] == []
    assert seeded.get("Deployment", "iris-canary", NS) is None


def test_slow_readiness_is_waited_for(seeded, store, registry):
    seeded.emulator.ready_after_reads = 4
    seeded.emulator.ready_delay = 0.3
    result = engine(store, registry, ScriptedJudge()).run(config())
    assert result.outcome == "promoted", result.message
    assert any("canary iris-canary is ready" in e["message"] for e in result.events)
    seen = seeded.emulator.seen
    first_traffic = next(i for i, r in enumerate(seen) if r.method == "PATCH" and "/httproutes/" in r.path)
    canary_reads = [i for i, r in enumerate(seen) if r.method == "GET" and r.path.endswith("/deployments/iris-canary")]
    assert len([i for i in canary_reads if i < first_traffic]) >= 4  # no traffic before the canary was ready


def test_deadline_is_honoured(seeded, store, registry):
    result = engine(store, registry, ScriptedJudge()).run(config(pause=30, timeout=0.5))
    assert result.outcome == "aborted"
    assert result.exit_code == exitcodes.ABORTED
    assert "deadline" in result.message
    assert seeded.get("HTTPRoute", "iris", NS)["spec"]["rules"][0]["backendRefs"] == STABLE_BACKENDS


def _run_in_thread(store, registry, cfg):
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", engine(store, registry, ScriptedJudge()).run(cfg)))
    thread.start()
    return thread, box


def test_abort_from_another_job_puts_traffic_back(seeded, store, registry, cli):
    thread, box = _run_in_thread(store, registry, config(pause=30))
    wait_for(lambda: weights(seeded.get("HTTPRoute", "iris", NS)).get("iris-canary") == 10)
    result = cli("rollout", "abort", "iris", "-n", NS, "--server", seeded.url, "--registry", str(registry.root),
                 "--reason", "bad dashboards")
    assert result.exit_code == 0, result.stderr
    assert "progressing -> aborted" in result.stdout
    thread.join(20)
    assert box["result"].outcome == "aborted"
    assert box["result"].exit_code == exitcodes.ABORTED
    assert "bad dashboards" in box["result"].message and "unknown" not in box["result"].message, box["result"].message
    assert seeded.get("HTTPRoute", "iris", NS)["spec"]["rules"][0]["backendRefs"] == STABLE_BACKENDS
    assert env_of(seeded.get("Deployment", "iris", NS))["MLSERVE_MODEL_VERSION"] == "1"
    state = lease_state(seeded)
    assert state["phase"] == "aborted" and state["message"] == "bad dashboards"
    status = cli("rollout", "status", "iris", "-n", NS, "--server", seeded.url, "--json")
    assert json.loads(status.stdout)["result"]["phase"] == "aborted"


def test_promote_full_skips_remaining_pauses(seeded, store, registry, cli):
    thread, box = _run_in_thread(store, registry, config(pause=30))
    wait_for(lambda: weights(seeded.get("HTTPRoute", "iris", NS)).get("iris-canary") == 10)
    result = cli("rollout", "promote", "iris", "--full", "-n", NS, "--server", seeded.url)
    assert result.exit_code == 0, result.stderr
    thread.join(20)
    assert box["result"].outcome == "promoted"
    assert [s.weight for s in box["result"].steps] == [10, 50, 100]
    assert registry.resolve("iris@production").version == "2"


def test_status_wait_gives_the_outcome_exit_code(seeded, store, registry, cli):
    engine(store, registry, ScriptedJudge("fail")).run(config())
    result = cli("rollout", "status", "iris", "-n", NS, "--server", seeded.url, "--wait", "--timeout", "5s")
    assert result.exit_code == exitcodes.ROLLED_BACK
    assert "rolled-back" in result.stdout
    plain = cli("rollout", "status", "iris", "-n", NS, "--server", seeded.url)
    assert plain.exit_code == 0


def test_promote_skips_one_pause_at_a_time_and_status_wait_follows(seeded, store, registry, cli):
    thread, box = _run_in_thread(store, registry, config(steps=[10, 100], pause=30))
    wait_for(lambda: weights(seeded.get("HTTPRoute", "iris", NS)).get("iris-canary") == 10)
    first = cli("rollout", "promote", "iris", "-n", NS, "--server", seeded.url, "--json")
    assert first.exit_code == 0, first.stderr
    assert json.loads(first.stdout)["result"]["command"] == "promote"
    wait_for(lambda: weights(seeded.get("HTTPRoute", "iris", NS)).get("iris-canary") == 100)
    assert thread.is_alive()  # the second pause was not skipped
    assert cli("rollout", "promote", "iris", "-n", NS, "--server", seeded.url).exit_code == 0
    waited = cli("rollout", "status", "iris", "-n", NS, "--server", seeded.url, "--wait", "--timeout", "20s")
    assert waited.exit_code == 0, waited.stdout
    assert "succeeded" in waited.stdout
    thread.join(20)
    assert box["result"].outcome == "promoted"
    assert sum("pause skipped by `promote`" in e["message"] for e in box["result"].events) == 2
    # Nothing is running any more: promote has nothing to act on.
    assert cli("rollout", "promote", "iris", "-n", NS, "--server", seeded.url).exit_code == exitcodes.NOT_FOUND

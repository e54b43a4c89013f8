"""Blue-green with its smoke check on ``--target local``, and what happens when someone else changes the split."""

from __future__ import annotations

import pytest

from mlserve import exitcodes
from mlserve.errors import ConflictError
from rollout.local.local_support import (
    MODEL,
    TOKEN,
    Traffic,
    finish,
    production,
    run_cli,
    start_cli,
    status,
    target_args,
    variants,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)


def test_blue_green_switches_all_traffic_at_once_after_its_smoke_checks(server, registry):
    with Traffic(server) as traffic:
        rc, doc, err = run_cli("rollout", "blue-green", MODEL, "--to", "2", *target_args(server, registry),
                               "--pause", "0.5s", "--smoke-url", f"{server.url}/v2/health/ready")
    assert rc == exitcodes.OK, err
    result = doc["result"]
    assert result["outcome"] == "promoted"
    messages = [e["message"] for e in result["events"]]
    assert any(m == f"smoke check: /v2/models/{MODEL}/versions/2/infer answered 200" for m in messages), messages
    assert any(m.startswith("smoke check http://") and m.endswith(": 200") for m in messages), messages
    assert f"all of {MODEL}'s requests go to {MODEL}:2" in messages
    assert production(registry) == "2"
    assert variants(server) == {"stable": (100.0, "2")}
    assert set(traffic.codes) == {200}, traffic.codes


def test_blue_green_judges_the_requests_pinned_to_the_new_version_against_thresholds(server, registry, analysis):
    """Before the switch the new version has no share of the split: its preview traffic is what is pinned to it."""
    with Traffic(server, rate=100), Traffic(server, rate=60, version="2", seed=1) as preview:
        rc, doc, err = run_cli("rollout", "blue-green", MODEL, "--to", "2", *target_args(server, registry),
                               "--pause", "3.5s", "--analysis", str(analysis))
    assert rc == exitcodes.OK, err
    step = doc["result"]["steps"][0]
    assert (step["weight"], step["verdict"]) == (0, "pass"), step
    metrics = step["analysis"]["metrics"]
    assert all(m["canary_points"] >= 3 and m["stable_points"] == 0 for m in metrics), metrics  # thresholds only
    assert preview.codes.get(200, 0) > 50 and production(registry) == "2"


def test_a_version_the_server_cannot_load_is_rolled_back_before_any_traffic(server, registry):
    """Version 4 fails on every input: the server's own warm-up refuses it (422) when the canary variant is added."""
    with Traffic(server) as traffic:
        rc, doc, err = run_cli("rollout", "blue-green", MODEL, "--to", "4", *target_args(server, registry),
                               "--pause", "0.5s")
    assert rc == exitcodes.ROLLED_BACK, err
    assert "(422), it cannot serve that version" in err and "Gather" in err, err
    assert len(err.strip().splitlines()) == 1
    assert doc["result"]["reverted"] is True
    assert production(registry) == "1"
    assert variants(server) == {"stable": (100.0, "1")}
    assert set(traffic.codes) == {200}, traffic.codes  # no request reached the broken version


def test_blue_green_whose_smoke_url_fails_never_switches(server, registry):
    rc, doc, err = run_cli("rollout", "blue-green", MODEL, "--to", "2", *target_args(server, registry),
                           "--pause", "0.5s", "--smoke-url", f"{server.url}/v2/models/{MODEL}/versions/9/ready")
    assert rc == exitcodes.ROLLED_BACK, err
    assert "smoke check http://" in err and "answered 404" in err, err
    messages = [e["message"] for e in doc["result"]["events"]]
    assert f"smoke check: /v2/models/{MODEL}/versions/2/infer answered 200" in messages  # the built-in one passed
    assert production(registry) == "1"
    assert variants(server) == {"stable": (100.0, "1")}


def test_a_change_of_the_split_between_read_and_write_is_a_conflict_not_an_overwrite(server, registry):
    from mlserve.registry import Registry
    from mlserve.rollout.local.admin import ServerClient
    from mlserve.rollout.local.router import SplitRouter
    from mlserve.rollout.local.state import RegistryLeases
    from mlserve.rollout.local.store import ServerStore
    from mlserve.rollout.ops import guarded

    store = ServerStore(ServerClient(server.url, server.admin_url, TOKEN, retry_budget=2), MODEL,
                        states=RegistryLeases(Registry(registry)))
    router = SplitRouter(MODEL)
    store.patch("Split", MODEL, "local", router.load_ops(store.get("Split", MODEL, "local"), f"{MODEL}:2"))
    seen = store.get("Split", MODEL, "local")
    ops = guarded(seen, router.weight_ops(seen, 30))
    # another writer moves the weights after the rollout read the split
    status_code, _, _ = server.admin("POST", f"/v2/mlserve/split/{MODEL}", {"weights": {"stable": 50, "canary": 50}})
    assert status_code == 200
    with pytest.raises(ConflictError):
        store.patch("Split", MODEL, "local", ops)
    assert variants(server) == {"stable": (50.0, "1"), "canary": (50.0, "2")}  # the other writer's change stands
    # the server's own compare-and-swap: a request at a stale revision is a 409, a ConflictError
    stale = int(seen["metadata"]["resourceVersion"])
    with pytest.raises(ConflictError, match="revision"):
        store.client.change_split("POST", MODEL, {"weights": {"canary": 10}, "expect_revision": stale})
    assert variants(server) == {"stable": (50.0, "1"), "canary": (50.0, "2")}


@pytest.mark.parametrize("on_drift,code,phase", [("fail", exitcodes.ABORTED, "aborted"),
                                                 ("pause", exitcodes.ABORTED, "paused")])
def test_a_split_changed_during_a_pause_stops_the_rollout_unjudged(server, registry, tmp_path, on_drift, code, phase):
    owner = start_cli("rollout", "canary", MODEL, "--to", "2", *target_args(server, registry), "--steps", "20,100",
                      "--no-analysis", "--pause", "3s", "--on-drift", on_drift, workdir=tmp_path / "owner")
    try:
        wait_for(lambda: variants(server).get("canary", (0,))[0] == 20.0, what="the first step")
        server.admin("POST", f"/v2/mlserve/split/{MODEL}", {"weights": {"stable": 40, "canary": 60}})
        rc, doc, err = finish(owner, tmp_path / "owner", timeout=30)
    finally:
        owner.kill()
    assert rc == code, err
    assert "traffic changed under the rollout at step 1" in err and "now sends 60% to canary" in err, err
    assert production(registry) == "1"
    assert status(server, registry)["phase"] == phase
    if on_drift == "fail":
        assert variants(server) == {"stable": (100.0, "1")}  # reverted to the snapshot
    else:
        assert variants(server) == {"stable": (40.0, "1"), "canary": (60.0, "2")}  # left as it is, resumable

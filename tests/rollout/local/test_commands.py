"""``status``, ``abort``, ``promote``, ``undo`` and ``--resume`` on ``--target local``, each from its own process."""

from __future__ import annotations

import signal
import time

import pytest

from mlserve import exitcodes
from rollout.local.local_support import (
    MODEL,
    finish,
    lease,
    production,
    run_cli,
    start_cli,
    status,
    target_args,
    variants,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)


def start_canary(server, registry, tmp_path, *extra: str, to: str = "2"):  # noqa: ANN001, ANN201
    return start_cli("rollout", "canary", MODEL, "--to", to, *target_args(server, registry), "--steps", "20,100",
                     "--no-analysis", "--poll", "0.1s", *extra, workdir=tmp_path / "owner")


def at_first_step(server, registry):  # noqa: ANN001, ANN201
    def check():  # noqa: ANN202
        s = status(server, registry)
        return s if s and s["phase"] == "progressing" and s["weight"] == 20 else None

    return wait_for(check, what="the rollout at 20%")


def test_status_shows_the_running_rollout_and_abort_from_another_process_reverts_it(server, registry, tmp_path):
    owner = start_canary(server, registry, tmp_path, "--pause", "60s")
    try:
        s = at_first_step(server, registry)
        assert (s["step"], s["live_weight"], s["stale"], s["version"], s["previous_version"]) == (1, 20, False, "2", "1")
        assert s["owner"] and str(owner.pid) in s["owner"]
        roles = {o["role"]: o for o in s["objects"]}
        assert roles["canary"]["kind"] == "Variant" and "serves 2" in roles["canary"]["detail"]
        assert "follows churn@production" in roles["stable"]["detail"]
        assert variants(server) == {"stable": (80.0, "1"), "canary": (20.0, "2")}
        # a second rollout of the model is refused while this one is alive
        rc, _, err = run_cli("rollout", "canary", MODEL, "--to", "2", *target_args(server, registry), "--no-analysis")
        assert rc == exitcodes.CONFLICT and "already running" in err, err
        # its hints point at this server, not at a cluster
        assert f"mlserve rollout abort {MODEL} --target local --server {server.url} --admin-url {server.admin_url}" in err, err
        rc, doc, err = run_cli("rollout", "abort", MODEL, *target_args(server, registry), "--dry-run")
        assert rc == exitcodes.OK, err
        assert [(c["action"], c["kind"]) for c in doc["result"]["changes"]] == [("patch", "Split")]
        assert variants(server) == {"stable": (80.0, "1"), "canary": (20.0, "2")}  # nothing was sent
        rc, doc, err = run_cli("rollout", "abort", MODEL, *target_args(server, registry), "--reason", "test")
        assert rc == exitcodes.OK, err
        assert (doc["result"]["phase_before"], doc["result"]["phase"]) == ("progressing", "aborted")
        assert variants(server) == {"stable": (100.0, "1")}
        rc, doc, err = finish(owner, tmp_path / "owner", timeout=30)
    finally:
        owner.kill()
    assert rc == exitcodes.ABORTED, err
    assert doc["result"]["outcome"] == "aborted"
    assert production(registry) == "1"
    assert variants(server) == {"stable": (100.0, "1")}
    s = status(server, registry)
    assert (s["phase"], s["reverted"], s["owner"]) == ("aborted", True, None)  # the lock is released
    # abort is safe to repeat
    rc, doc, err = run_cli("rollout", "abort", MODEL, *target_args(server, registry))
    assert rc == exitcodes.OK and doc["result"]["already_reverted"] is True, err


def test_promote_full_skips_every_pause(server, registry, tmp_path):
    owner = start_canary(server, registry, tmp_path, "--pause", "60s")
    try:
        at_first_step(server, registry)
        started = time.monotonic()
        rc, doc, err = run_cli("rollout", "promote", MODEL, *target_args(server, registry), "--full")
        assert rc == exitcodes.OK and doc["result"]["command"] == "promote-full", err
        rc, doc, err = finish(owner, tmp_path / "owner", timeout=30)
    finally:
        owner.kill()
    assert rc == exitcodes.OK, err
    assert time.monotonic() - started < 15
    assert production(registry) == "2"
    assert variants(server) == {"stable": (100.0, "2")}


def test_an_owner_killed_mid_rollout_is_stale_after_its_lease_and_resume_finishes_it(server, registry, tmp_path):
    owner = start_canary(server, registry, tmp_path, "--pause", "60s", "--lease-duration", "2s")
    try:
        at_first_step(server, registry)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
    assert variants(server) == {"stable": (80.0, "1"), "canary": (20.0, "2")}  # traffic stays where it was
    s = wait_for(lambda: (status(server, registry) or {}).get("stale") and status(server, registry), timeout=10,
                 what="a stale heartbeat")
    assert s["phase"] == "progressing"
    rc, _, err = run_cli("rollout", "canary", MODEL, "--to", "2", *target_args(server, registry), "--no-analysis")
    assert rc == exitcodes.CONFLICT and "--resume" in err, err
    rc, _, err = run_cli("rollout", "canary", MODEL, "--to", "3", *target_args(server, registry), "--no-analysis",
                         "--resume")
    assert rc == exitcodes.CONFLICT and "cannot resume" in err, err
    rc, doc, err = run_cli("rollout", "canary", MODEL, "--to", "2", *target_args(server, registry), "--steps", "20,100",
                           "--no-analysis", "--pause", "0.5s", "--resume")
    assert rc == exitcodes.OK, err
    assert any("resumed by" in e["message"] for e in doc["result"]["events"])
    assert production(registry) == "2"
    assert variants(server) == {"stable": (100.0, "2")}


def test_on_interrupt_pause_leaves_traffic_and_resume_continues(server, registry, tmp_path):
    owner = start_canary(server, registry, tmp_path, "--pause", "60s", "--on-interrupt", "pause")
    try:
        at_first_step(server, registry)
        owner.send_signal(signal.SIGINT)
        rc, doc, err = finish(owner, tmp_path / "owner", timeout=30)
    finally:
        owner.kill()
    assert rc == exitcodes.ABORTED and doc["result"]["outcome"] == "paused", err
    assert variants(server) == {"stable": (80.0, "1"), "canary": (20.0, "2")}
    s = status(server, registry)
    assert (s["phase"], s["live_weight"]) == ("paused", 20)
    rc, _, err = run_cli("rollout", "promote", MODEL, *target_args(server, registry))
    assert rc == exitcodes.CONFLICT and "no live owner" in err, err
    rc, doc, err = run_cli("rollout", "canary", MODEL, "--to", "2", *target_args(server, registry), "--steps", "20,100",
                           "--no-analysis", "--pause", "0.2s", "--resume")
    assert rc == exitcodes.OK, err
    assert production(registry) == "2"


def test_undo_puts_the_previous_version_back_in_production_and_on_the_server(server, registry):
    rc, doc, err = run_cli("rollout", "canary", MODEL, "--to", "2", *target_args(server, registry), "--steps", "50,100",
                           "--no-analysis", "--pause", "0.2s")
    assert rc == exitcodes.OK, err
    assert variants(server) == {"stable": (100.0, "2")}
    rc, doc, err = run_cli("rollout", "undo", MODEL, *target_args(server, registry))
    assert rc == exitcodes.OK, err
    assert doc["result"]["phase"] == "undone"
    assert production(registry) == "1"
    assert variants(server) == {"stable": (100.0, "1")}  # undo waited until stable swapped back
    assert status(server, registry)["phase"] == "undone"
    rc, _, err = run_cli("rollout", "undo", MODEL, *target_args(server, registry))
    assert rc == exitcodes.CONFLICT, err
    assert lease(registry)["spec"]["holderIdentity"] == ""

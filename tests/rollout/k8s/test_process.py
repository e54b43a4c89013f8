"""A real `python -m mlserve rollout canary` process: killed, interrupted, or racing another pipeline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from mlserve import exitcodes
from rollout.k8s.k8s_support import STABLE_BACKENDS, NS, lease_state, wait_for, weights



def start_rollout(cluster, registry, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mlserve", "rollout", "canary", "iris", "--to", "2", "-n", NS, "--server", cluster.url,
           "--registry", str(registry.root), "--steps", "10,50,100", "--pause", "60s", "--no-analysis",
           "--poll", "0.1s", "--lease-duration", "1s", "--json", *extra]
    env = dict(os.environ, MLSERVE_NO_PROGRESS="1")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def at_first_step(cluster) -> bool:
    """The route sends 10% to the canary AND the Lease says so: the engine records a weight after the
    route's patch has landed, so waiting for the route alone races that record."""
    route = cluster.get("HTTPRoute", "iris", NS)
    if weights(route).get("iris-canary") != 10 or cluster.get("Lease", "mlserve-rollout-iris", NS) is None:
        return False
    return lease_state(cluster)["weight"] == 10


def test_second_rollout_refused_while_first_runs_then_sigterm_aborts(seeded, registry, cli):
    proc = start_rollout(seeded, registry)
    try:
        wait_for(lambda: at_first_step(seeded) or proc.poll() is not None)
        assert proc.poll() is None, proc.communicate()
        second = cli("rollout", "canary", "iris", "--to", "2", "-n", NS, "--server", seeded.url, "--no-analysis",
                     "--registry", str(registry.root), "--json")
        assert second.exit_code == exitcodes.CONFLICT
        error = json.loads(second.stdout)["error"]
        assert error["code"] == "conflict" and "already running" in error["message"]

        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == exitcodes.ABORTED, err
    doc = json.loads(out)["result"]
    assert doc["outcome"] == "aborted" and "SIGTERM" in doc["message"] and doc["reverted"] is True
    assert seeded.get("HTTPRoute", "iris", NS)["spec"]["rules"][0]["backendRefs"] == STABLE_BACKENDS
    assert seeded.get("Deployment", "iris-canary", NS) is None


def test_killed_process_then_abort_from_another_job(seeded, registry, cli):
    proc = start_rollout(seeded, registry)
    wait_for(lambda: at_first_step(seeded) or proc.poll() is not None)
    proc.kill()  # SIGKILL: no handler runs, nothing is cleaned up
    proc.wait(10)
    assert weights(seeded.get("HTTPRoute", "iris", NS)) == {"iris": 90, "iris-canary": 10}

    status = cli("rollout", "status", "iris", "-n", NS, "--server", seeded.url, "--json")
    doc = json.loads(status.stdout)["result"]
    assert (doc["phase"], doc["step"], doc["weight"], doc["live_weight"]) == ("progressing", 1, 10, 10)
    wait_for(lambda: json.loads(cli("rollout", "status", "iris", "-n", NS, "--server", seeded.url, "--json").stdout)["result"]["stale"])

    aborted = cli("rollout", "abort", "iris", "-n", NS, "--server", seeded.url, "--registry", str(registry.root))
    assert aborted.exit_code == 0, aborted.stderr
    assert seeded.get("HTTPRoute", "iris", NS)["spec"]["rules"][0]["backendRefs"] == STABLE_BACKENDS
    assert seeded.get("Deployment", "iris-canary", NS) is None
    assert seeded.get("Service", "iris-canary", NS) is None
    assert registry.resolve("iris@production").version == "1"


def test_killed_process_then_resume_from_another_job(seeded, registry, cli):
    proc = start_rollout(seeded, registry)
    wait_for(lambda: at_first_step(seeded) or proc.poll() is not None)
    proc.kill()
    proc.wait(10)
    # Right away the dead owner's lease is still fresh: a resume must wait for it to go stale.
    wait_for(lambda: json.loads(cli("rollout", "status", "iris", "-n", NS, "--server", seeded.url, "--json").stdout)["result"]["stale"])
    resumed = cli("rollout", "canary", "iris", "--to", "2", "-n", NS, "--server", seeded.url, "--registry",
                  str(registry.root), "--steps", "10,50,100", "--pause", "0.1s", "--no-analysis", "--poll", "0.05s",
                  "--resume", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    doc = json.loads(resumed.stdout)["result"]
    assert doc["outcome"] == "promoted"
    # It continued from the recorded step (1: 10%), it did not start over with a new snapshot.
    assert [s["weight"] for s in doc["steps"]] == [10, 50, 100]
    assert any("resumed by" in e["message"] and "step 1" in e["message"] for e in doc["events"])
    assert weights(seeded.get("HTTPRoute", "iris", NS)) == {"iris": 100, "iris-canary": 0}
    assert registry.resolve("iris@production").version == "2"


def test_sigint_with_on_interrupt_pause_leaves_traffic_and_can_be_resumed(seeded, registry, cli):
    proc = start_rollout(seeded, registry, "--on-interrupt", "pause")
    try:
        wait_for(lambda: at_first_step(seeded) or proc.poll() is not None)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == exitcodes.ABORTED, err
    doc = json.loads(out)["result"]
    assert doc["outcome"] == "paused" and "SIGINT" in doc["message"] and doc["reverted"] is False
    assert weights(seeded.get("HTTPRoute", "iris", NS)) == {"iris": 90, "iris-canary": 10}
    status = json.loads(cli("rollout", "status", "iris", "-n", NS, "--server", seeded.url, "--json").stdout)["result"]
    assert (status["phase"], status["owner"]) == ("paused", None)
    # A paused rollout holds the lock: a fresh rollout is refused, --resume continues it.
    refused = cli("rollout", "canary", "iris", "--to", "2", "-n", NS, "--server", seeded.url, "--no-analysis",
                  "--registry", str(registry.root))
    assert refused.exit_code == exitcodes.CONFLICT and "--resume" in refused.stderr
    resumed = cli("rollout", "canary", "iris", "--to", "2", "-n", NS, "--server", seeded.url, "--no-analysis",
                  "--registry", str(registry.root), "--steps", "10,50,100", "--pause", "0.05s", "--poll", "0.05s",
                  "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert weights(seeded.get("HTTPRoute", "iris", NS)) == {"iris": 100, "iris-canary": 0}


def test_kubeconfig_file_is_honoured(seeded, registry, cli, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: emu\n"
        f"clusters:\n- name: emu\n  cluster:\n    server: {seeded.url}\n"
        "users:\n- name: ci\n  user:\n    token: not-a-real-token\n"
        "contexts:\n- name: emu\n  context:\n    cluster: emu\n    user: ci\n"
    )
    result = cli("rollout", "plan", "iris", "--to", "2", "-n", NS, "--kubeconfig", str(kubeconfig),
                 "--registry", str(registry.root), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["result"]["model"] == "iris"
    missing = cli("rollout", "plan", "iris", "--to", "2", "-n", NS, "--kubeconfig", str(tmp_path / "nope"),
                  "--registry", str(registry.root))
    assert missing.exit_code == exitcodes.INFRASTRUCTURE
    assert "no Kubernetes configuration found" in missing.stderr

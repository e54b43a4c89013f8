"""`mlserve rollout ...` through Typer's runner against the emulated API server."""

from __future__ import annotations

import json

from mlserve import exitcodes
from rollout.k8s.k8s_support import STABLE_BACKENDS, NS, weights


def test_canary_json_record(seeded, registry, cli):
    result = cli("rollout", "canary", "iris", "--to", "2", "--steps", "10,100", "--pause", "0.1s", "--no-analysis",
                 "--poll", "0.05s", "--registry", str(registry.root), "--json", "-n", NS,
                 "--server", seeded.url)
    assert result.exit_code == exitcodes.OK, result.stderr
    assert result.stderr == ""
    doc = json.loads(result.stdout)
    assert doc["kind"] == "rollout" and doc["schema_version"] == 1
    r = doc["result"]
    assert (r["model"], r["version"], r["previous_version"], r["outcome"], r["exit_code"]) == ("iris", "2", "1", "promoted", 0)
    assert [(s["weight"], s["verdict"]) for s in r["steps"]] == [(10, "skipped"), (100, "skipped")]
    assert any("step 1/2: 10%" in e["message"] for e in r["events"])
    assert weights(seeded.get("HTTPRoute", "iris", NS)) == {"iris": 100, "iris-canary": 0}


def test_pause_too_short_for_the_analysis_is_refused_before_any_change(seeded, registry, cli):
    result = cli("rollout", "canary", "iris", "--to", "2", "-n", NS, "--server", seeded.url, "--pause", "10s",
                 "--prometheus-url", "http://127.0.0.1:9", "--registry", str(registry.root))
    assert result.exit_code == exitcodes.USAGE
    assert "--pause 10s is too short for the analysis" in result.stderr
    assert seeded.writes() == []


def test_human_output_and_exit_code_of_a_rollback(seeded, registry, cli, tmp_path):
    # A canary that never becomes ready is rolled back before it gets traffic.
    seeded.emulator.never_ready.add("iris-canary")
    result = cli("rollout", "canary", "iris", "--to", "2", "-n", NS, "--server", seeded.url, "--no-analysis",
                 "--ready-timeout", "0.2s", "--poll", "0.05s", "--registry", str(registry.root))
    assert result.exit_code == exitcodes.ROLLED_BACK
    assert "canary rollout of iris 1 -> 2 in ml (gateway)" in result.stdout
    assert "outcome: rolled-back (reverted to the snapshot)" in result.stdout
    assert result.stderr.startswith("error: canary iris-canary not ready after 0.2s")


def test_unknown_version_is_not_found_and_changes_nothing(seeded, registry, cli):
    result = cli("rollout", "canary", "iris", "--to", "9", "-n", NS, "--server", seeded.url, "--no-analysis",
                 "--registry", str(registry.root))
    assert result.exit_code == exitcodes.NOT_FOUND
    assert seeded.writes() == []


def test_bad_inputs_are_usage_errors(seeded, registry, cli):
    for extra, message in ((["--steps", "50,10"], "increase"), (["--pause", "soon"], "bad --pause"),
                           (["--on-interrupt", "ignore"], "--on-interrupt")):
        result = cli("rollout", "canary", "iris", "--to", "2", "-n", NS, "--server", seeded.url, "--no-analysis",
                     "--registry", str(registry.root), *extra)
        assert result.exit_code == exitcodes.USAGE, (extra, result.stderr)
        assert message in result.stderr


def test_unreachable_api_is_infrastructure(registry, cli):
    result = cli("rollout", "status", "iris", "-n", NS, "--server", "http://127.0.0.1:9")
    assert result.exit_code == exitcodes.INFRASTRUCTURE
    assert "unreachable" in result.stderr


def test_unreachable_prometheus_reverts_and_exits_infrastructure(seeded, registry, cli, tmp_path):
    analysis = tmp_path / "analysis.json"
    analysis.write_text(json.dumps({"defaults": {"min_points": 4, "step": "1s", "window": "1s", "scrape_interval": "1s",
                                                 "consecutive_error_limit": 1}}))
    result = cli("rollout", "canary", "iris", "--to", "2", "-n", NS, "--server", seeded.url, "--steps", "10,100",
                 "--pause", "5s", "--poll", "0.1s", "--analysis", str(analysis), "--prometheus-url", "http://127.0.0.1:9",
                 "--registry", str(registry.root), "--json")
    assert result.exit_code == exitcodes.INFRASTRUCTURE, result.stdout
    doc = json.loads(result.stdout)["result"]
    assert doc["outcome"] == "failed" and doc["reverted"] is True
    assert "127.0.0.1:9" in doc["message"]
    assert seeded.get("HTTPRoute", "iris", NS)["spec"]["rules"][0]["backendRefs"] == STABLE_BACKENDS
    # Reverted, so the lock is free again: the next rollout may start.
    status = json.loads(cli("rollout", "status", "iris", "-n", NS, "--server", seeded.url, "--json").stdout)["result"]
    assert status["phase"] == "failed" and status["reverted"] is True
    again = cli("rollout", "canary", "iris", "--to", "2", "-n", NS, "--server", seeded.url, "--steps", "100",
                "--pause", "0s", "--no-analysis", "--registry", str(registry.root))
    assert again.exit_code == 0, again.stderr

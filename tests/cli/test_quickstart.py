"""`mlserve quickstart` runs the main job end to end in its own directory, with real servers, and can run again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_quickstart_end_to_end_prints_a_script_that_replays(cli, tmp_path: Path, capsys) -> None:
    pytest.importorskip("onnxruntime")
    from mlserve.cli.quickstart import _render
    from mlserve.quickstart import MANIFESTS, QuickstartResult

    workdir = tmp_path / "demo"
    result, doc = cli.json("quickstart", "--workdir", workdir, "--with-manifests")
    assert result.exit_code == 0
    r = doc["result"]
    steps = r["steps"]
    names = [s["name"] for s in steps]
    assert names == ["train", "register", "register", "promote", "promote", "rollback", "history", "optimize",
                     "serve", "smoke", "load", "canary", "register", "canary", "status", "stop-load", "stop-serve",
                     "ab-serve", "ab-load", "stop-ab", "simulate", "ab-analyze", "rollout", "verify"]
    assert steps[0]["command"] == "" and steps[3]["command"] == (
        "mlserve promote churn:1 --require 'accuracy>=0.5' --reason 'first production model'")
    assert "parity with the source passed, registered churn:3" in steps[7]["outcome"]
    assert steps[8]["command"].startswith("mlserve serve churn@production --http-port ")
    assert steps[8]["command"].endswith(" > serve.json 2> serve.log & SERVE_PID=$!")
    assert steps[13]["command"].endswith(" || [ $? -eq 10 ]") and steps[16]["command"] == (
        "kill -TERM $SERVE_PID && wait $SERVE_PID")

    # the optimized version went out as a local canary judged on the server's metrics, and was promoted
    assert r["canary"]["version"] == "3" and r["canary"]["outcome"] == "promoted" and r["canary"]["exit_code"] == 0
    assert [s.split(":")[0] for s in r["canary"]["steps"]] == ["10%", "50%", "100%"]
    # the broken version was rejected by the judge and the server rolled back
    assert r["broken"]["version"] == "4" and r["broken"]["outcome"] == "rolled-back" and r["broken"]["exit_code"] == 10
    assert "success-rate" in r["broken"]["steps"][0]
    load = r["load"]
    by_version = {v["version"]: v for v in load["by_version"]}
    assert by_version["4"]["errors"] > 0, "the broken version really failed for some users"
    assert by_version["3"]["errors"] == 0 and by_version["1"]["errors"] == 0
    assert load["stable_errors"] == 0 and load["stable_requests"] > 500 and load["unanswered"] == 0
    assert load["errors"] == load["canary_errors"] == by_version["4"]["errors"]
    assert r["stable_ok"] is True
    # the A/B experiment: the assignment log joined with the simulated outcomes gave a verdict
    assert r["ab"]["verdict"] and r["ab"]["sample_ratio_passed"] is True
    assert set(r["ab"]["units"]) == {"control", "treatment"} and sum(r["ab"]["units"].values()) == 1500
    # the manifest-mode canary of the A/B's treatment came last and promoted it
    assert "Variant/canary not in the split" in steps[14]["outcome"], "the server rolled the broken version back"
    assert steps[22]["outcome"].startswith("promoted: canary of the A/B's treatment churn:2 10% -> 50% -> 100%")
    assert r["production"] == "2" and steps[-1]["outcome"] == "clean"
    route = (workdir / "manifests" / "route.yaml").read_text()
    assert "# Public traffic for the churn model" in route, "comments survive the rollout"
    # no process is left behind
    assert len(r["server_pids"]) == 3 and all(_gone(pid) for pid in r["server_pids"])
    assert r["elapsed_seconds"] < 90

    parsed = QuickstartResult.model_validate(r)
    _render(None, parsed)
    text = capsys.readouterr().out
    assert "# users on stable: " in text and text.rstrip().splitlines()[-2:] == [
        "# churn@production is version 2", f"# quickstart took {r['elapsed_seconds']:g} s"]

    script = r["replay_script"]
    registry = Path(r["registry"])
    lines = script.splitlines()
    assert lines[3:6] == [f"cd {workdir}", f"export MLSERVE_REGISTRY={registry}", "export MLSERVE_ACTOR=quickstart"]
    assert lines[6].startswith("export MLSERVE_ADMIN_TOKEN=")
    journal = registry / "models" / "churn" / "journal.jsonl"
    kinds = [json.loads(line)["kind"] for line in journal.read_text().splitlines()]

    # replay the printed script in a real shell, on a fresh registry and the original manifests: the servers start
    # in the background, the canaries run against them again, and the script stops them
    from mlserve.registry.fsio import remove_tree

    remove_tree(registry)
    remove_tree(workdir / "manifests")
    (workdir / "manifests").mkdir()
    for name, body in MANIFESTS.items():
        (workdir / "manifests" / name).write_text(body)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVE_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    replay = subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert replay.returncode == 0, replay.stderr[-3000:]
    replayed = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [e["kind"] for e in replayed] == kinds and {e["actor"] for e in replayed} == {"quickstart"}
    assert (registry / "models" / "churn" / "current").resolve().name == "2"
    again = json.loads((workdir / "load.json").read_text())["result"]
    assert again["by_variant"]["stable"]["errors"] == 0 and again["unanswered"] == 0


def test_a_rerun_starts_clean_and_keeps_foreign_files_out(tmp_path: Path) -> None:
    from mlserve.quickstart import MADE, MARKER, _prepare

    workdir = tmp_path / "demo"
    assert _prepare(workdir) is False and (workdir / MARKER).exists()
    for name in MADE:
        (workdir / name).write_text("old") if "." in name else (workdir / name).mkdir()
    (workdir / "registry" / "x").write_text("old")
    assert _prepare(workdir) is True
    assert sorted(p.name for p in workdir.iterdir()) == [MARKER]


def test_quickstart_refuses_a_directory_it_did_not_make(cli, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    r = cli("quickstart", "--workdir", mine)
    assert r.exit_code == 2 and r.stderr.startswith(f"error: --workdir {mine} is not empty and was not made by")
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_quickstart_port_options(cli, tmp_path: Path) -> None:
    import socket

    r = cli("quickstart", "--workdir", tmp_path / "a", "--port", "80")
    assert r.exit_code == 2 and r.stderr.startswith("error: --port 80 is out of range")
    r = cli("quickstart", "--workdir", tmp_path / "a", "--port", "65534")
    assert r.exit_code == 2 and "--port 65534 is out of range" in r.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        first = port - 2 if port > 2000 else port
        r = cli("quickstart", "--workdir", tmp_path / "a", "--port", str(first))
    assert r.exit_code == 2 and r.stderr.startswith(f"error: --port {first}: loopback port ") and "in use" in r.stderr
    assert not (tmp_path / "a").exists(), "nothing is made before the ports are checked"
    r = cli("quickstart", tmp_path / "a", "--workdir", tmp_path / "b")
    assert r.exit_code == 2 and r.stderr.startswith("error: give the work directory once")


def test_a_failure_stops_every_background_command(tmp_path: Path) -> None:
    """Whatever fails (here a Ctrl-C during the first rollout), the servers and the load are stopped."""
    pytest.importorskip("onnxruntime")
    from mlserve.cli.quickstart import _Background
    from mlserve.quickstart import run_quickstart

    class FakeRunner:
        def __init__(self) -> None:
            self.started: list[_Background] = []
            self.versions = iter(["1", "2"])

        def __call__(self, argv, *, ok_exit=(0,)):
            head = argv[0]
            if head == "register":
                return {"version": next(self.versions), "sha256": "0" * 64}
            if head in ("promote", "rollback"):
                return {"previous": "1", "version": "1"}
            if head == "history":
                return {"events": [{"actor": "quickstart"}]}
            if head == "optimize":
                return {"chosen": "fp32", "registered": {"version": "3", "created": True}}
            if head == "load":
                return {"requests": 50, "errors": 0, "by_version": {"1": {}}}
            raise KeyboardInterrupt  # the first rollout

        def start(self, argv, *, stdout, stderr):
            proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
            self.started.append(_Background(proc, []))
            return self.started[-1]

    runner = FakeRunner()
    with pytest.raises(KeyboardInterrupt):
        run_quickstart(tmp_path / "demo", runner, ports=[1, 2, 3, 4])
    assert len(runner.started) == 2 and all(not b.running() for b in runner.started)


def test_sigterm_during_the_live_part_leaves_no_process_behind(tmp_path: Path) -> None:
    import signal
    import time

    pytest.importorskip("onnxruntime")
    from mlserve.quickstart import free_ports

    first = free_ports(1)[0]
    while first > 60000:
        first = free_ports(1)[0]
    try:
        free_ports(4, first)
    except Exception:
        pytest.skip("no 4 consecutive free ports")
    workdir = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVE_")}
    proc = subprocess.Popen([sys.executable, "-m", "mlserve", "quickstart", "--workdir", str(workdir),
                             "--port", str(first)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (workdir / "load.log").exists() and proc.poll() is None:
        time.sleep(0.2)
    assert (workdir / "load.log").exists(), proc.stderr.read() if proc.poll() is not None else "no load started"
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err

    def ours() -> list[str]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if f"127.0.0.1:{first}" in cmd or f"--http-port {first} " in cmd:
                    found.append(f"{entry.name}: {cmd}")
        return found

    assert ours() == [], "the server and the load were stopped"
    log = (workdir / "serve.log").read_text()
    assert '"event":"stopped"' in log.replace(" ", ""), "the server drained on SIGTERM"


def test_a_stable_failure_is_reported_never_hidden(capsys) -> None:
    """A request of a user on stable that failed, or one that got no answer at all, breaks the promise: the result
    says so (stable_ok False, a warning, NOT ZERO in the summary)."""
    from mlserve.cli.quickstart import _render
    from mlserve.loadgen import RequestRecord, summarize
    from mlserve.quickstart import QuickstartResult, _load_summary

    records = [RequestRecord(key="user-1", status=200, version="3", variant="stable", latency_ms=1, t=0),
               RequestRecord(key="user-2", status=500, version="3", variant="stable", latency_ms=1, t=0),
               RequestRecord(key="user-3", status=500, version="4", variant="canary", latency_ms=1, t=0),
               RequestRecord(key="user-4", status=0, latency_ms=1, t=0, error="ConnectionResetError")]
    report = summarize(records, url="http://x", model="churn", header="X-User-Id", seconds=1.0)
    s = _load_summary(report.model_dump(mode="json"))
    assert (s.requests, s.errors, s.unanswered, s.stable_requests, s.stable_errors, s.canary_errors) == (4, 3, 1, 2, 2, 1)
    assert {v.version: v.errors for v in s.by_version} == {"-": 1, "3": 1, "4": 1}
    result = QuickstartResult(workdir=Path("/w"), registry=Path("/w/registry"), steps=[], production="3", load=s,
                              stable_ok=False)
    _render(None, result)
    assert "# users on stable: 2 requests, 2 failed  <-- NOT ZERO" in capsys.readouterr().out

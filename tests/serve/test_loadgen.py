"""The load generator (``mlserve.loadgen``, ``mlserve load``) against a real server with a healthy and a broken variant."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from serve.support import ServerProcess

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def churn_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from mlserve.quickstart import save_example, train_example

    root = tmp_path_factory.mktemp("loadgen-models")
    weights, _ = train_example(40)
    (root / "broken").mkdir()
    return save_example(weights, root / "churn"), save_example(weights, root / "broken" / "churn", broken=True)


def test_loadgen_counts_by_version_and_a_broken_variant_fails_only_its_own_users(churn_files, tmp_path: Path) -> None:
    from mlserve.loadgen import LoadGenerator, request_body
    from mlserve.quickstart import BROKEN_ABOVE

    good, broken = churn_files
    with ServerProcess([str(good)], tmp_path, "--canary", str(broken), "--canary-weight", "50",
                       "--sticky-header", "X-User-Id", grpc=False) as server:
        gen = LoadGenerator(server.url, "churn", users=60, threads=3)
        records = gen.run(requests=600)
        report = gen.report()
        code = server.terminate()
    assert code == 0
    assert len(records) == 600 and report.requests == 600 and report.users == 60
    assert set(report.by_variant) == {"stable", "canary"}
    assert report.by_variant["stable"].errors == 0 and report.by_variant["stable"].requests > 100
    canary = report.by_variant["canary"]
    assert 0 < canary.errors < canary.requests, "the broken version fails for a share of its users only"
    assert report.unanswered == 0 and report.errors == canary.errors
    assert set(canary.statuses) == {"200", "500"}
    meta = {"inputs": [{"name": "input", "shape": [-1, 4], "datatype": "FP32"}]}
    for r in records:
        first = json.loads(request_body(meta, r.key))["inputs"][0]["data"][0]
        assert r.failed == (r.variant == "canary" and first > BROKEN_ABOVE), r
        assert r.version and r.latency_ms > 0
    by_key: dict[str, set[str]] = {}
    for r in records:
        by_key.setdefault(r.key, set()).add(r.variant)
    assert all(len(v) == 1 for v in by_key.values()), "sticky: a user always reaches the same variant"


def test_load_command_stops_on_sigterm_and_prints_its_summary(churn_files, tmp_path: Path) -> None:
    import signal
    import time

    good, _ = churn_files
    with ServerProcess([str(good)], tmp_path, grpc=False) as server:
        done = subprocess.run([sys.executable, "-m", "mlserve", "load", "churn", "--server", server.url,
                               "--requests", "25", "--users", "5", "--json"], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)["result"]
        assert doc["requests"] == 25 and doc["users"] == 5 and doc["by_version"][next(iter(doc["by_version"]))]["errors"] == 0

        records = tmp_path / "load.jsonl"
        proc = subprocess.Popen([sys.executable, "-m", "mlserve", "load", "churn", "--server", server.url,
                                 "--rate", "50", "--records", str(records), "--json"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not records.exists() or records.stat().st_size == 0):
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        doc = json.loads(out)["result"]
        lines = records.read_text().splitlines()
        assert doc["requests"] == len(lines) > 5 and doc["errors"] == 0

    r = subprocess.run([sys.executable, "-m", "mlserve", "load", "churn", "--server", "http://127.0.0.1:9",
                        "--ready-timeout", "0.3"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 12 and r.stderr.startswith("error: the server at http://127.0.0.1:9 was not ready")

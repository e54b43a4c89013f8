"""Several real processes write the same registry at once: nothing is lost, nothing is duplicated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mlserve.registry import Registry

WORKER = Path(__file__).with_name("worker.py")


def test_parallel_register_and_promote(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    procs, per_worker = 5, 8
    workers = [subprocess.Popen([sys.executable, str(WORKER), str(root), "register-promote", str(n), str(per_worker)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(procs)]
    for w in workers:
        out, err = w.communicate(timeout=240)
        assert w.returncode == 0, err
    reg = Registry(root)
    versions = reg.list_versions("shared").versions
    assert len(versions) == procs * per_worker, "no version lost"
    assert sorted(int(v.version) for v in versions) == list(range(1, procs * per_worker + 1)), "no max+1 race"
    assert len({v.sha256 for v in versions}) == procs * per_worker
    events = reg.events("shared")
    assert sum(e.kind == "register" for e in events) == procs * per_worker
    promotions = [e for e in events if e.kind == "promote"]
    assert len(promotions) == procs * per_worker
    # the journal is a consistent chain: each promotion starts from the previous one's target
    for before, after in zip(promotions, promotions[1:]):
        assert after.from_version == before.to_version
    assert reg.resolve("shared").version == promotions[-1].to_version
    report = reg.verify()
    assert report.problems == [] and report.versions_checked == procs * per_worker

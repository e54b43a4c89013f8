"""Processes killed with SIGKILL at random instants leave a registry that loads and repairs clean."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlserve.registry import Registry

WORKER = Path(__file__).with_name("worker.py")


def test_sigkill_during_register_promote_rollback(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    rng = random.Random(1234)
    for round_ in range(12):
        proc = subprocess.Popen([sys.executable, str(WORKER), str(root), "churn", str(round_), "0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # let it get past start-up (imports) most of the time, then kill it mid-flight
        time.sleep(0.35 + rng.random() * 0.6)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""

        reg = Registry(root, lock_timeout=10)
        if not (root / "models" / "shared" / "model.json").exists():
            continue  # killed before the first registration finished
        # the registry loads and every pointer leads to a complete version
        versions = {v.version for v in reg.list_versions("shared").versions}
        production = root / "models" / "shared" / "stages" / "production"
        if production.is_symlink():
            target = os.readlink(production)
            assert target.startswith("../versions/") and Path(target).name in versions
            assert (production / "version.json").is_file()
            assert reg.resolve("shared").artifact_path.is_file()
        reg.verify(repair=True)
        after = reg.verify()
        assert after.problems == [], after.problems
        assert after.versions_checked == len(versions)
    assert len(Registry(root).list_versions("shared").versions) > 0, "the workers made progress"


CRASH_AT = Path(__file__).with_name("crash_at.py")


def _crash(root: Path, point: str, artifact: Path) -> None:
    proc = subprocess.run([sys.executable, str(CRASH_AT), str(root), point, str(artifact)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 9, proc.stderr


def test_next_writer_finishes_a_stage_change_cut_after_the_swap(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    reg = Registry(root)
    for name in ("a", "b"):
        (tmp_path / name).write_text(name)
        reg.register("m", tmp_path / name)
    reg.promote("m", "1")
    _crash(root, "after-swap-promote", tmp_path / "a")
    # the swap is the commit point: readers already see version 2, the index and journal lag behind
    assert Registry(root).resolve("m").version == "2"
    assert (root / "models" / "m" / ".txn.json").exists()
    Registry(root).tag("m", "1", ["seen"])  # any later writer, no verify --repair
    assert not (root / "models" / "m" / ".txn.json").exists()
    events = [(e.kind, e.from_version, e.to_version) for e in Registry(root).events("m") if e.kind == "promote"]
    assert events == [("promote", None, "1"), ("promote", "1", "2")]
    assert Registry(root).model_summary("m").stages == {"production": "2"}
    assert Registry(root).version_info("m", "1").status == "archived"
    assert Registry(root).verify().problems == []


def test_a_register_cut_after_its_commit_point_is_a_complete_version(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    reg = Registry(root)
    (tmp_path / "a").write_text("a")
    reg.register("m", tmp_path / "a")
    (tmp_path / "b").write_text("b")
    _crash(root, "after-commit-register", tmp_path / "b")
    # version 2 is in place (the rename happened) but its digest link and journal entry are missing
    assert Registry(root).resolve("m:2").artifact_path.read_text() == "b"
    (tmp_path / "c").write_text("c")
    third = Registry(root).register("m", tmp_path / "c")  # the next writer, before any repair
    assert third.version == "3"
    rows = Registry(root).list_versions("m").versions
    assert [(r.version, r.seq) for r in rows] == [("1", 1), ("2", 2), ("3", 3)], "no sequence number reused"
    before = {p.kind for p in Registry(root).verify().problems}
    assert before == {"missing-digest-link", "missing-register-event"}
    assert Registry(root).verify(repair=True).ok and Registry(root).verify().problems == []
    again = Registry(root).register("m", tmp_path / "b")
    assert (again.created, again.version) == (False, "2"), "the repaired digest link finds the duplicate"

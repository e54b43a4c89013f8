"""A writer paused at an exact point (a real second process) while this one reads, verifies or repairs.

``crash_at.py pause`` stops the writer at a named function (it creates a flag file, sleeps, goes on),
so each test knows the writer is mid-change when it acts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mlserve.registry import Registry

CRASH_AT = Path(__file__).with_name("crash_at.py")


def paused(root: Path, spec: str, flag: Path, seconds: float, *op: str, prefix: list[str] = ()) -> subprocess.Popen:
    proc = subprocess.Popen([*prefix, sys.executable, str(CRASH_AT), "pause", str(root), spec, str(flag), str(seconds),
                             *map(str, op)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the writer never reached its pause point"
        time.sleep(0.01)
    return proc


def finished(proc: subprocess.Popen) -> None:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err


def two_versions(tmp_path: Path) -> Path:
    root = tmp_path / "reg"
    reg = Registry(root)
    for name in "ab":
        (tmp_path / name).write_text(name)
        reg.register("m", tmp_path / name)
    reg.promote("m", "1")
    return root


def test_history_at_is_stamped_at_the_commit_point(tmp_path: Path) -> None:
    root = two_versions(tmp_path)
    flag = tmp_path / "flag"
    proc = paused(root, "call:mlserve.registry.stages.swap", flag, 0.6, "promote", "m", "2")
    before_swap = datetime.now(timezone.utc)
    reader = Registry(root)
    assert reader.resolve("m").version == "1", "the write-ahead record is down, the swap is not"
    assert reader.history("m", at=datetime.now(timezone.utc)).holder_at == "1"
    finished(proc)
    promote = reader.events("m")[-1]
    assert promote.to_version == "2" and promote.at > before_swap, (promote.at, before_swap)
    assert reader.history("m", at=before_swap).holder_at == "1", "history says what readers saw at that instant"


def test_gc_empties_its_trash_under_the_lock_so_verify_never_sees_it(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    reg = Registry(root)
    for i in range(3):
        (tmp_path / f"f{i}").write_text(str(i))
        reg.register("m", tmp_path / f"f{i}")
    reg.promote("m", "3")
    flag = tmp_path / "flag"
    proc = paused(root, "call:mlserve.registry.fsio.remove_tree", flag, 1.0, "gc", "m", "1")
    assert any((root / "models" / "m" / ".trash").iterdir()), "the gc is half-way: versions are in its trash"
    verifier = Registry(root, lock_timeout=30)
    assert verifier.verify().problems == [], "verify waits for the gc's lock instead of calling its trash damage"
    finished(proc)
    assert verifier.verify(repair=True).problems == []
    assert [v.version for v in verifier.list_versions("m").versions] == ["3"]


def test_gc_and_a_concurrent_repair_both_succeed(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    reg = Registry(root)
    for i in range(3):
        (tmp_path / f"f{i}").write_text(str(i))
        reg.register("m", tmp_path / f"f{i}")
    reg.promote("m", "3")
    flag = tmp_path / "flag"
    proc = paused(root, "call:mlserve.registry.fsio.remove_tree", flag, 1.0, "gc", "m", "1")
    assert Registry(root, lock_timeout=30).verify(repair=True).problems == []
    finished(proc)  # the gc committed and finished: exit 0, never a failure after its commit point


def _unshare() -> list[str]:
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True) if shutil.which("unshare") \
        else None
    if probe is None or probe.returncode != 0:
        pytest.skip("cannot start a process in its own PID namespace here (unshare --pid)")
    return ["unshare", "--pid", "--fork"]


@pytest.mark.parametrize("namespace", ["same", "own-pid-namespace"])
def test_a_live_register_keeps_its_staging_entry_through_repair(tmp_path: Path, namespace: str) -> None:
    root = two_versions(tmp_path)
    prefix = _unshare() if namespace != "same" else []
    (tmp_path / "c").write_text("c" * 1000)
    flag = tmp_path / "flag"
    # a staging entry named by a live PID (this one) but held by nobody: dead, whatever the PID says
    stale = root / ".staging" / f"{os.getpid()}-0123456789ab"
    stale.mkdir(parents=True)
    (stale / "artifact").write_text("half a copy")
    proc = paused(root, "call:mlserve.registry.artifacts.copy_in", flag, 1.0, "register", "m", tmp_path / "c",
                  prefix=prefix)
    live = [p for p in (root / ".staging").iterdir() if p.is_dir() and p != stale]
    assert len(live) == 1, "the paused register has its staging entry"
    report = Registry(root, lock_timeout=30).verify(repair=True)
    assert [(p.kind, p.path) for p in report.problems] == [("leftover", str(stale))]
    assert live[0].is_dir() and not stale.exists()
    finished(proc)
    assert Registry(root).resolve("m:3").artifact_path.read_text() == "c" * 1000
    assert not any((root / ".staging").iterdir()), "the register removed its entry and its lock"
    assert Registry(root).verify().problems == []

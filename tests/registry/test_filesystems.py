"""A full disk and a read-only mount, for real: a size-limited tmpfs (root only; skipped elsewhere).

Under ENOSPC a command either fails with nothing changed, or reports success (with a warning when a
follow-up after its commit point failed) with the change committed: never a failure for a change
that happened. The sweeps leave 0, 1, 2, ... free pages, so the disk fills at every step of each
operation in turn.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pytest

from helpers.mounts import Tmpfs, tmpfs
from mlserve import errors
from mlserve.registry import Registry, fsio


@pytest.fixture
def small_fs(tmp_path: Path):
    with tmpfs(tmp_path / "fs", "4m") as fs:
        yield fs


def _template(tmp_path: Path, aligned: bool) -> Path:
    root = tmp_path / "template"
    reg = Registry(root, actor="setup")
    for i in range(4):
        (tmp_path / f"f{i}").write_text(f"model {i}" * 20)
        reg.register("m", tmp_path / f"f{i}", metrics={"auc": 0.5 + i / 10})
    reg.promote("m", "1")
    reg.promote("m", "2")
    if aligned:  # end the journal on a page boundary: the next append needs a new page
        journal = root / "models" / "m" / "journal.jsonl"
        before = journal.stat().st_size
        reg.journal_event("m", "note", {"pad": ""})
        line = journal.stat().st_size - before
        reg.journal_event("m", "note", {"pad": "x" * (-(journal.stat().st_size + line) % 4096)})
        assert journal.stat().st_size % 4096 == 0
    return root


OPS: dict[str, tuple[Callable[[Registry, Path], object], Callable[[Registry], bool], str]] = {
    # name: (the operation, "did it commit?" read from the truth, the event it journals)
    "promote": (lambda reg, art: reg.promote("m", "4"), lambda reg: reg.resolve("m").version == "4", "promote"),
    "rollback": (lambda reg, art: reg.rollback("m"), lambda reg: reg.resolve("m").version == "1", "rollback"),
    "tag": (lambda reg, art: reg.tag("m", "3", ["ok"]), lambda reg: reg.version_info("m", "3").tags == ["ok"], "tag"),
    "set-meta": (lambda reg, art: reg.set_meta("m", "3", {"k": "v"}, metrics={"x": 1}),
                 lambda reg: reg.version_info("m", "3").meta.get("k") == "v", "set-meta"),
    "register": (lambda reg, art: reg.register("m", art, stage="staging"),
                 lambda reg: (reg.root / "models" / "m" / "versions" / "5").is_dir(), "register"),
    "gc": (lambda reg, art: reg.gc("m", keep=0), lambda reg: not (reg.root / "models" / "m" / "versions" / "3").exists(),
           "gc"),
}


@pytest.mark.parametrize("aligned", [False, True], ids=["journal-mid-page", "journal-full-page"])
@pytest.mark.parametrize("op", sorted(OPS))
def test_a_full_disk_never_makes_a_committed_change_exit_as_a_failure(small_fs: Tmpfs, tmp_path: Path, op: str,
                                                                      aligned: bool) -> None:
    outcomes = _sweep(small_fs, tmp_path, op, aligned)
    assert outcomes[0] == "error" and outcomes[-1] == "ok", outcomes
    if aligned and op != "gc":  # gc frees space before it needs any after its commit point
        assert "warned" in outcomes, f"the sweep must reach a failure after the commit point: {outcomes}"


def _sweep(small_fs: Tmpfs, tmp_path: Path, op: str, aligned: bool) -> list[str]:
    run, committed, kind = OPS[op]
    template = _template(tmp_path, aligned)
    artifact = tmp_path / "new.bin"
    artifact.write_text("new model" * 20)
    outcomes = []
    for free in range(0, 10):
        root = small_fs.path / "reg"
        shutil.copytree(template, root, symlinks=True)
        filler = small_fs.fill(free)
        reg = Registry(root, lock_timeout=5, actor="tester")
        try:
            result = run(reg, artifact)
        except errors.MlserveError as exc:
            assert isinstance(exc, errors.StorageError), exc
            assert "no space left on device" in exc.message and "bytes needed" in exc.message, exc.message
            outcome, warnings = "error", []
        else:
            warnings = list(getattr(result, "warnings", []))
            outcome = "warned" if any("finishing the change failed" in w or "failed (" in w for w in warnings) else "ok"
        filler.unlink()
        assert committed(reg) is (outcome != "error"), (free, outcome, warnings)
        if op in {"promote", "rollback"}:  # readers agree with the link before anyone finishes the change
            assert reg.history("m", at=datetime.now(timezone.utc)).holder_at == reg.resolve("m").version, free
        reg.journal_event("m", "probe")  # with space again, the next writer finishes what was left
        events = [e for e in reg.events("m") if e.kind == kind and e.actor == "tester"]
        assert len(events) == (0 if outcome == "error" else 1), (free, outcome, events)
        reg.verify(repair=True)
        assert reg.verify().problems == [], (free, outcome)
        outcomes.append(outcome)
        fsio.remove_tree(root)
    return outcomes


def test_no_space_errors_name_the_file_and_the_space_needed(small_fs: Tmpfs, tmp_path: Path) -> None:
    root = small_fs.path / "reg"
    reg = Registry(root)
    (tmp_path / "a").write_text("a")
    reg.register("m", tmp_path / "a")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(6 * 1024 * 1024))
    env = {**os.environ, "MLSERVE_REGISTRY": str(root)}
    proc = subprocess.run([sys.executable, "-m", "mlserve", "register", "m", str(big)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 8, proc.stderr
    line = proc.stderr.strip()
    assert line.startswith(f"error: no space left on device to copy {big} into {root / '.staging'}/"), line
    assert f"({6 * 1024 * 1024} bytes needed, " in line and " bytes free)" in line, line
    assert "Traceback" not in proc.stderr and not any((root / ".staging").iterdir())
    filler = small_fs.fill(0)
    with pytest.raises(errors.NoSpaceError, match=r"writing .*\.txn\.json \(\d+ bytes needed, 0 bytes free\)"):
        reg.promote("m", "1")
    filler.unlink()
    assert reg.verify().problems == []


@pytest.fixture
def read_only_registry(tmp_path: Path):
    with tmpfs(tmp_path / "ro", "8m") as fs:
        root = fs.path / "reg"
        reg = Registry(root)
        for name in ("locked", "never-locked"):
            for i in range(3):
                (tmp_path / f"{name}{i}").write_text(f"{name} {i}")
                reg.register(name, tmp_path / f"{name}{i}")
            reg.promote(name, "3")
        (root / "models" / "never-locked" / ".lock").unlink()  # as if copied or restored without it
        fs.remount("ro")
        yield root


def test_a_read_only_registry_can_be_verified_and_gc_planned(read_only_registry: Path) -> None:
    root = read_only_registry
    env = {**os.environ, "MLSERVE_REGISTRY": str(root)}

    def mlserve(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mlserve", *args], capture_output=True, text=True, env=env,
                              timeout=120)

    verify = mlserve("verify", "--json")
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout)["result"]["versions_checked"] == 6
    for model in ("locked", "never-locked"):
        plan = mlserve("gc", model, "--keep", "1", "--dry-run", "--json")
        assert plan.returncode == 0, plan.stderr
        assert json.loads(plan.stdout)["result"]["removed"] == ["1", "2"]
    assert mlserve("list", "never-locked").returncode == 0
    assert not (root / "models" / "never-locked" / ".lock").exists()
    writing = mlserve("verify", "--repair")
    assert writing.returncode in (0, 8), writing.stderr  # nothing to repair, or the write is refused in one line
    promote = mlserve("promote", "locked", "1")
    assert promote.returncode == 8 and promote.stderr.count("\n") == 1, promote.stderr
    assert "Read-only file system" in promote.stderr

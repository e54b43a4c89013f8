"""Processes SIGKILLed at exact points leave a registry that loads, tells the truth, and heals.

``crash_at.py`` kills a real process with SIGKILL at a chosen instant (no finally block, no atexit
runs). The sweep kills one run of a fixed workload before each of its file-system calls in turn, so
every interleaving of a crash with the workload's writes is tried, deterministically.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mlserve.registry import Registry

CRASH_AT = Path(__file__).with_name("crash_at.py")
WORKLOAD = ["register", "promote", "rollback", "tag", "set-meta", "gc"]
"""What ``crash_at.py ... churn`` journals, in order, on the template below."""


def _crash(root: Path, spec: str, *op: str) -> None:
    proc = subprocess.run([sys.executable, str(CRASH_AT), "point", str(root), spec, *map(str, op)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr)


def _template(tmp_path: Path) -> Path:
    """m:1..4 registered, production 1 then 2: the churn then registers 5, promotes it, rolls back to 2
    and gc --keep 1 removes 3 and 4 (1 is the rollback target, 2 holds production, 5 held it before)."""
    root = tmp_path / "template"
    reg = Registry(root, actor="setup")
    for name in "abde":
        (tmp_path / name).write_text(name * 50)
        reg.register("m", tmp_path / name)
    reg.promote("m", "1")
    reg.promote("m", "2")
    return root


def test_sigkill_before_every_file_system_call_of_a_workload(tmp_path: Path) -> None:
    template = _template(tmp_path)
    base_events = len(Registry(template).events("m"))
    artifact = tmp_path / "c"
    artifact.write_text("c" * 50)
    out = tmp_path / "runs"
    out.mkdir()
    proc = subprocess.run([sys.executable, str(CRASH_AT), "sweep", str(template), str(out), "churn", str(artifact)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["points"] > 100, "the workload makes many file-system calls; each is a crash point"
    seen_prefixes = set()
    for n, status in result["status"].items():
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (n, status)
        root = out / n
        reg = Registry(root, lock_timeout=5, actor="next")
        on_disk = {v.version for v in reg.list_versions("m").versions}
        assert {"1", "2"} <= on_disk <= {"1", "2", "3", "4", "5"}, (n, on_disk)
        production = reg.resolve("m").version
        assert (root / "models" / "m" / "stages" / "production" / "version.json").is_file()
        # readers already report a change whose commit point passed, before any writer finishes it
        assert reg.history("m", at=datetime.now(timezone.utc)).holder_at == production, n
        reg.journal_event("m", "probe")  # the next writer: finishes or discards what was cut
        report = reg.verify()
        assert {p.kind for p in report.problems} <= {"leftover"}, (n, report.problems)
        assert reg.verify(repair=True).ok and reg.verify().problems == [], n
        events = reg.events("m")
        assert len({e.id for e in events}) == len(events), f"point {n}: an event journaled twice"
        kinds = [e.kind for e in events][base_events:-1]
        assert kinds == WORKLOAD[:len(kinds)], (n, kinds)
        seen_prefixes.add(len(kinds))
        on_disk = {v.version for v in reg.list_versions("m").versions}
        assert ("5" in on_disk) is ("register" in kinds), n
        assert ({"3", "4"} & on_disk == set()) is ("gc" in kinds), n
        assert (root / "models" / "m" / "tombstones" / "3").exists() is ("gc" in kinds), n
        expected = "5" if kinds[-1:] == ["promote"] else "2"
        assert reg.resolve("m").version == expected, (n, kinds)
        shutil.rmtree(root)
    assert seen_prefixes == set(range(len(WORKLOAD) + 1)), "crashes landed before, inside and after every operation"


def test_next_writer_finishes_a_stage_change_cut_after_the_swap(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    reg = Registry(root)
    for name in ("a", "b"):
        (tmp_path / name).write_text(name)
        reg.register("m", tmp_path / name)
    reg.promote("m", "1")
    _crash(root, "return:mlserve.registry.stages.swap", "promote", "m", "2")
    # the swap is the commit point: readers already see version 2, the index and journal lag behind
    assert Registry(root).resolve("m").version == "2"
    assert (root / "models" / "m" / ".txn.json").exists()
    assert Registry(root).history("m", at=datetime.now(timezone.utc)).holder_at == "2"
    assert Registry(root).version_info("m", "1").status == "archived"
    Registry(root).tag("m", "1", ["seen"])  # any later writer, no verify --repair
    assert not (root / "models" / "m" / ".txn.json").exists()
    events = [(e.kind, e.from_version, e.to_version) for e in Registry(root).events("m") if e.kind == "promote"]
    assert events == [("promote", None, "1"), ("promote", "1", "2")]
    assert Registry(root).model_summary("m").stages == {"production": "2"}
    assert Registry(root).version_info("m", "1").status == "archived"
    assert Registry(root).verify().problems == []


def test_a_promote_cut_after_its_journal_append_is_journaled_once(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    reg = Registry(root)
    for name in ("a", "b"):
        (tmp_path / name).write_text(name)
        reg.register("m", tmp_path / name)
    reg.promote("m", "1")
    _crash(root, "return:mlserve.registry.journal.append_once", "promote", "m", "2")
    assert (root / "models" / "m" / ".txn.json").exists(), "killed before the record was removed"
    journaled = [e for e in Registry(root).events("m") if e.kind == "promote"]
    assert [(e.from_version, e.to_version) for e in journaled] == [(None, "1"), ("1", "2")]
    Registry(root).tag("m", "1", ["seen"])  # the next writer recovers: the record's event is already there
    promotions = [e for e in Registry(root).events("m") if e.kind == "promote"]
    assert [e.id for e in promotions] == [e.id for e in journaled], "recovery must not journal the promotion again"
    assert Registry(root).verify().problems == []


def test_a_register_cut_after_its_commit_point_is_finished_by_the_next_writer(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    reg = Registry(root)
    (tmp_path / "a").write_text("a")
    reg.register("m", tmp_path / "a")
    (tmp_path / "b").write_text("b")
    _crash(root, "return:mlserve.registry.registration.commit", "register", "m", tmp_path / "b")
    # version 2 is in place (the rename happened); its digest link and journal entry follow from the record
    assert Registry(root).resolve("m:2").artifact_path.read_text() == "b"
    assert Registry(root).model_summary("m").latest == "2"
    assert [e.kind for e in Registry(root).events("m")] == ["register", "register"]
    (tmp_path / "c").write_text("c")
    third = Registry(root).register("m", tmp_path / "c")  # the next writer, before any repair
    assert third.version == "3"
    rows = Registry(root).list_versions("m").versions
    assert [(r.version, r.seq) for r in rows] == [("1", 1), ("2", 2), ("3", 3)], "no sequence number reused"
    events = Registry(root).events("m")
    assert [(e.kind, e.version, e.actor) for e in events] == [("register", "1", reg.actor),
                                                              ("register", "2", "crasher"),
                                                              ("register", "3", reg.actor)]
    assert Registry(root).verify().problems == [], "the staging entry of the killed writer is gone with its rename"
    again = Registry(root).register("m", tmp_path / "b")
    assert (again.created, again.version) == (False, "2"), "the digest link finds the duplicate"


def test_a_tag_cut_between_its_state_and_its_journal_entry_is_journaled(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    reg = Registry(root)
    (tmp_path / "a").write_text("a")
    reg.register("m", tmp_path / "a")
    _crash(root, "return:mlserve.registry.indexes.write_state_bytes", "tag", "m", "1", "reviewed")
    assert Registry(root).version_info("m", "1").tags == ["reviewed"], "the rename of state.json committed it"
    assert [e.kind for e in Registry(root).events("m")] == ["register", "tag"], "readers report the pending event"
    Registry(root).journal_event("m", "note")
    assert [e.kind for e in Registry(root).events("m")] == ["register", "tag", "note"]
    assert Registry(root).verify().problems == []


@pytest.mark.parametrize("spec, removed", [
    ("call:mlserve.registry.journal.append", False),  # before the gc event: nothing may be removed
    ("c_call:rename@mlserve.registry.retention.finish#2", True),  # one version moved to the trash, not the next
])
def test_a_gc_cut_midway_is_all_or_nothing(tmp_path: Path, spec: str, removed: bool) -> None:
    root = tmp_path / "reg"
    reg = Registry(root)
    for i in range(4):
        (tmp_path / f"f{i}").write_text(str(i))
        reg.register("m", tmp_path / f"f{i}")
    reg.promote("m", "4")
    _crash(root, spec, "gc", "m", "1")
    Registry(root).journal_event("m", "note")  # the next writer
    gone = {"1", "2", "3"} if removed else set()
    assert {v.version for v in Registry(root).list_versions("m").versions} == {"1", "2", "3", "4"} - gone
    gcs = [e for e in Registry(root).events("m") if e.kind == "gc"]
    assert [sorted(e.details["removed"]) for e in gcs] == ([sorted(gone)] if removed else [])
    assert sorted(p.name for p in (root / "models" / "m" / "tombstones").glob("*")) == sorted(gone)
    assert Registry(root).verify().problems == []

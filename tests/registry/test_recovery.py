"""verify finds what breaks a command, and verify --repair rebuilds every derived file from the truth.

The truth: the journal, the stage links, the digest links and the artifacts. Derived: model.json,
registry.json, state.json, tombstones (and a lost version.json, from its three witnesses).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mlserve import errors
from mlserve.registry import Registry


def put(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def writable(path: Path) -> Path:
    os.chmod(path, 0o644)
    return path


def kinds(report) -> list[str]:
    return sorted(p.kind for p in report.problems)


@pytest.fixture
def model(reg: Registry, tmp_path: Path) -> Path:
    """m:1..3, production 1 -> 2, staging 3, tags and metadata after registration."""
    for name in "abc":
        reg.register("m", put(tmp_path / name, name * 10), metrics={"auc": 0.5}, meta={"git": name})
    reg.promote("m", "1")
    reg.promote("m", "2")
    reg.promote("m", "3", stage="staging")
    reg.tag("m", "1", ["reviewed"])
    reg.set_meta("m", "2", {"owner": "team"}, metrics={"p50_ms": 1.5})
    return reg.root / "models" / "m"


@pytest.mark.parametrize("damage", [b"", b"{not json", b'{"schema_version": 1, "name": "m"}',
                                    b'{"schema_version": 1, "name": "m", "created_at": "2026-01-01T00:00:00Z", '
                                    b'"next_seq": "many"}'])
def test_a_damaged_model_index_is_rebuilt_from_links_versions_and_journal(reg: Registry, model: Path,
                                                                          damage: bytes) -> None:
    before = json.loads((model / "model.json").read_text())
    (model / "model.json").write_bytes(damage)
    with pytest.raises(errors.CorruptIndexError, match="verify --repair"):
        reg.model_summary("m")
    assert kinds(reg.verify()) == ["corrupt-index"]
    assert reg.verify(repair=True).ok
    after = json.loads((model / "model.json").read_text())
    assert after["stages"] == {"production": "2", "staging": "3"} == before["stages"]
    assert (after["next_seq"], after["latest"]) == (before["next_seq"], "3")
    assert reg.verify().problems == []
    assert reg.register("m", put(model.parent.parent.parent / "d", "d")).version == "4"


def test_a_damaged_registry_index_is_rebuilt(reg: Registry, model: Path) -> None:
    marker = reg.root / "registry.json"
    marker.write_text("")
    with pytest.raises(errors.CorruptIndexError, match="verify --repair"):
        reg.resolve("m")
    assert kinds(reg.verify()) == ["corrupt-index"]
    assert reg.verify(repair=True).ok and reg.verify().problems == []
    assert reg.resolve("m").version == "2"


@pytest.mark.parametrize("damage", [b"", b"[]", b'{"schema_version": 1, "tags": "reviewed"}', b"\x00" * 40])
def test_a_damaged_version_state_is_found_and_replayed_from_the_journal(reg: Registry, model: Path,
                                                                         damage: bytes) -> None:
    for version in ("1", "2"):
        (model / "versions" / version / "state.json").write_bytes(damage)
    # every reader that needs it stops (exit 5) and says what repair fixes; writers that do not need it go on
    for call in (lambda: reg.resolve("m"), lambda: reg.list_versions("m"), lambda: reg.version_info("m", "1"),
                 lambda: reg.gc("m", keep=0, dry_run=True)):
        with pytest.raises(errors.CorruptIndexError, match=r"state.json is invalid .*verify --repair"):
            call()
    assert reg.promote("m", "3").version == "3" and reg.rollback("m").version == "2"
    report = reg.verify()
    assert kinds(report) == ["corrupt-state", "corrupt-state"] and not report.ok
    assert reg.verify(repair=True).ok and reg.verify().problems == []
    one, two = reg.version_info("m", "1"), reg.version_info("m", "2")
    assert (one.tags, one.status, one.meta) == (["reviewed"], "archived", {"git": "a"})
    assert reg.version_info("m", "3").status == "staged"
    assert (two.meta, two.metrics, two.status) == ({"git": "b", "owner": "team"}, {"auc": 0.5, "p50_ms": 1.5},
                                                   "production")


def test_a_state_that_disagrees_with_the_journal_is_replayed(reg: Registry, model: Path) -> None:
    state = model / "versions" / "1" / "state.json"
    doc = json.loads(state.read_text())
    doc["tags"] = ["never-journaled"]
    state.write_text(json.dumps(doc))
    assert kinds(reg.verify()) == ["state-mismatch"]
    assert reg.verify(repair=True).ok and reg.version_info("m", "1").tags == ["reviewed"]


def test_a_lost_version_record_is_rebuilt_from_its_three_witnesses(reg: Registry, model: Path) -> None:
    record = model / "versions" / "2" / "version.json"
    original = json.loads(record.read_text())
    writable(record).unlink()
    assert reg.list_versions("m").versions[-1].version == "3"
    report = reg.verify()
    assert kinds(report) == ["lost-version-record"] and report.problems[0].repairable
    assert reg.verify(repair=True).ok and reg.verify().problems == []
    rebuilt = json.loads(record.read_text())
    for key in ("model", "version", "seq", "sha256", "size", "artifact_kind", "artifact_name", "file_count",
                "registered_by", "source", "metrics", "meta"):
        assert rebuilt[key] == original[key], key
    assert reg.promote("m", "2", stage="canary").version == "2", "the checksum holds"


def test_a_lost_record_whose_artifact_changed_is_reported_as_unrecoverable(reg: Registry, model: Path) -> None:
    writable(model / "versions" / "3" / "version.json").unlink()
    art = model / "versions" / "3" / "artifact" / "c"
    writable(art).write_text("tampered")
    report = reg.verify(repair=True)
    (problem,) = [p for p in report.problems if p.version == "3"]
    assert problem.kind == "incomplete-version" and not problem.repairable and not report.ok
    assert "m:3 does not match the sha256 of its register event" in problem.message


def test_a_record_rebuilt_from_an_old_register_event_says_what_is_lost(reg: Registry, model: Path) -> None:
    journal = model / "journal.jsonl"
    lines = journal.read_text().splitlines()
    for i, line in enumerate(lines):  # a journal written before register events carried the whole record
        event = json.loads(line)
        if event["kind"] == "register" and event["version"] == "1":
            event["details"] = {k: event["details"][k] for k in ("sha256", "size", "source")}
            lines[i] = json.dumps(event)
    journal.write_text("\n".join(lines) + "\n")
    writable(model / "versions" / "1" / "version.json").unlink()
    report = reg.verify(repair=True)
    by_kind = {p.kind: p for p in report.problems}
    assert by_kind["lost-version-record"].repaired
    assert "registration metrics and metadata" in by_kind["unrecoverable"].message
    assert "m:1" in by_kind["unrecoverable"].message and not report.ok
    info = reg.version_info("m", "1")
    assert (info.artifact_kind, info.sha256, info.tags) == ("file", reg.resolve("m:2").sha256 and info.sha256,
                                                            ["reviewed"])
    assert reg.verify().problems == []


@pytest.mark.parametrize("where", ["middle", "last"])
def test_a_damaged_journal_line_is_quarantined_and_history_keeps_working(reg: Registry, model: Path,
                                                                        where: str) -> None:
    journal = model / "journal.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    index = 2 if where == "middle" else len(lines) - 1
    offset = sum(len(line) for line in lines[:index])
    damaged = b'{"id": "x", "kind": "tag", GARBAGE\n'
    lines[index] = damaged
    journal.write_bytes(b"".join(lines))
    history = reg.history("m")
    assert len(history.events) == len(lines) - 1
    assert any(f"line {index + 1} (byte {offset})" in w for w in history.warnings), history.warnings
    rolled = reg.rollback("m")
    assert rolled.version == "1", "rollback works on the remaining events"
    assert any(f"line {index + 1} (byte {offset})" in w for w in rolled.warnings), rolled.warnings
    report = reg.verify()
    assert "corrupt-journal" in kinds(report) and not report.ok
    assert reg.verify(repair=True).ok and reg.verify().problems == []
    quarantined = [json.loads(line) for line in (model / "journal.quarantine.jsonl").read_text().splitlines()]
    assert [(q["line"], q["offset"], q["raw"].encode() + b"\n") for q in quarantined] == [(index + 1, offset, damaged)]
    assert b"GARBAGE" not in journal.read_bytes()
    warnings = reg.history("m").warnings
    assert warnings and "quarantined" in warnings[0] and "incomplete" in warnings[0]


def test_verify_finds_a_deleted_rollback_target(reg: Registry, model: Path) -> None:
    from mlserve.registry import fsio

    fsio.remove_tree(model / "versions" / "1")
    report = reg.verify()
    (problem,) = [p for p in report.problems if p.kind == "missing-version"]
    assert problem.version == "1" and "production would roll back to it" in problem.message
    assert not problem.repairable and not reg.verify(repair=True).ok


@pytest.mark.parametrize("folder", ["stages", "digests", "tombstones"])
def test_verify_finds_a_model_folder_that_is_a_file(reg: Registry, model: Path, folder: str) -> None:
    from mlserve.registry import fsio

    fsio.remove_tree(model / folder)
    put(model / folder, "in the way")
    report = reg.verify()
    assert "not-a-directory" in kinds(report) and not report.ok
    assert reg.verify(repair=True).ok and reg.verify().problems == []
    assert reg.resolve("m").version == "2" and reg.resolve("m@staging").version == "3"
    assert [p.read_text() for p in model.glob(f"{folder}.damaged-*")] == ["in the way"], "kept, never deleted"


def test_verify_finds_models_being_a_file(reg: Registry, tmp_path: Path) -> None:
    reg.register("m", put(tmp_path / "a", "a"))
    from mlserve.registry import fsio

    fsio.remove_tree(reg.root / "models")
    put(reg.root / "models", "oops")
    report = reg.verify()
    assert kinds(report) == ["not-a-directory"] and not report.ok
    with pytest.raises(errors.CorruptIndexError, match="models is a file"):
        reg.list_models()


@pytest.mark.parametrize("target", ["/elsewhere/versions/2", "../versions/9", "../../other/versions/2"])
def test_a_broken_stage_link_is_restored_from_the_journal_never_erased(reg: Registry, model: Path,
                                                                        target: str) -> None:
    link = model / "stages" / "production"
    link.unlink()
    link.symlink_to(target)
    with pytest.raises(errors.CorruptIndexError, match="verify --repair"):
        reg.resolve("m")
    report = reg.verify()
    assert [p.kind for p in report.problems if not p.kind.startswith("index")] in (
        ["foreign-stage-link"], ["dangling-stage-link"])
    assert all(p.repairable for p in report.problems)
    assert reg.verify(repair=True).ok
    assert os.readlink(link) == "../versions/2" and reg.resolve("m").version == "2"
    assert json.loads((model / "model.json").read_text())["stages"]["production"] == "2"
    assert reg.verify().problems == []


def test_a_foreign_link_that_looks_like_a_version_is_not_trusted(reg: Registry, model: Path) -> None:
    link = model / "stages" / "production"
    link.unlink()
    link.symlink_to("/x/versions/2")
    summary = reg.list_models().models[0]
    assert summary.stages == {"staging": "3"}
    assert any("points outside the model: /x/versions/2" in w for w in reg.list_models().warnings)
    assert reg.list_versions("m").versions[1].stages == [] and reg.version_info("m", "2").stages == []
    with pytest.raises(errors.ExpectationFailedError, match="cannot be compared"):
        reg.promote("m", "2", expect_current="2")
    result = reg.promote("m", "2")
    assert result.changed and result.previous == "2" and "replaced a damaged link" in result.warnings[0]
    assert os.readlink(link) == "../versions/2" and reg.verify().problems == []


def test_a_wrong_digest_link_is_not_trusted_by_register(reg: Registry, model: Path, tmp_path: Path) -> None:
    new = put(tmp_path / "new", "brand new content")
    import hashlib

    sha = hashlib.sha256(new.read_bytes()).hexdigest()
    (model / "digests" / sha).symlink_to("../versions/2")  # claims production holds this content
    assert kinds(reg.verify()) == ["stale-digest-link"]
    result = reg.register("m", new, metrics={"auc": 0.1})
    assert (result.created, result.version) == (True, "4"), "not 'already registered as m:2'"
    assert reg.resolve("m").metrics == {"auc": 0.5, "p50_ms": 1.5}, "production's metrics are untouched"
    assert os.readlink(model / "digests" / sha) == "../versions/4" and reg.verify().problems == []


def test_a_digest_link_moved_to_another_version_is_repaired(reg: Registry, model: Path) -> None:
    sha = reg.resolve("m:1").sha256
    link = model / "digests" / sha
    link.unlink()
    link.symlink_to("../versions/2")
    assert kinds(reg.verify()) == ["wrong-digest-link"]
    assert reg.verify(repair=True).ok and os.readlink(link) == "../versions/1"


def test_verify_checks_event_ids_and_the_chain_of_each_stage(reg: Registry, model: Path) -> None:
    journal = model / "journal.jsonl"
    lines = journal.read_text().splitlines()
    promote = next(line for line in lines if json.loads(line)["kind"] == "promote")
    journal.write_text("\n".join([*lines, promote]) + "\n")  # the same event journaled twice
    report = reg.verify()
    assert "duplicate-event" in kinds(report)
    assert reg.verify(repair=True).ok and reg.verify().problems == []
    event = json.loads(lines[-1])
    forged = dict(json.loads(promote), id="f" * 32, from_version="3", to_version="2")
    journal.write_text(journal.read_text() + json.dumps(forged) + "\n")
    assert "broken-stage-history" in kinds(reg.verify()), event


def test_verify_checks_gc_events_against_the_disk(reg: Registry, model: Path) -> None:
    journal = model / "journal.jsonl"
    gc_event = dict(json.loads(journal.read_text().splitlines()[-1]), id="e" * 32, kind="gc", version=None,
                    details={"removed": ["3"], "sha256": {}, "keep": 1, "freed_bytes": 0})
    journal.write_text(journal.read_text() + json.dumps(gc_event) + "\n")  # a gc that says it removed m:3
    report = reg.verify()
    (problem,) = [p for p in report.problems if p.kind == "gc-incomplete"]
    assert problem.version == "3" and "holds staging" in problem.message and not problem.repairable


def test_repair_restores_tombstones_and_removes_gc_leftovers(reg: Registry, tmp_path: Path) -> None:
    for i in range(4):
        reg.register("g", put(tmp_path / f"f{i}", str(i)))
    reg.promote("g", "4")
    assert sorted(reg.gc("g", keep=1).removed) == ["1", "2", "3"]
    tombstones = reg.root / "models" / "g" / "tombstones"
    (tombstones / "2").unlink()
    put(tombstones / ".tmp-3-abcdef", "half")
    put(reg.root / "models" / "g" / ".trash" / "dead" / "x", "left by a killed gc")
    assert kinds(reg.verify()) == ["leftover", "leftover", "missing-tombstone"]
    assert reg.verify(repair=True).ok and reg.verify().problems == []
    with pytest.raises(errors.VersionExistsError, match="removed by gc"):
        reg.register("g", put(tmp_path / "other", "other"), version="2")


def test_repair_quarantines_nothing_when_only_the_last_line_is_torn(reg: Registry, model: Path) -> None:
    with open(model / "journal.jsonl", "ab") as fh:
        fh.write(b'{"id": "torn')
    assert reg.history("m").warnings == [], "a torn last line is a killed writer's, not damage"
    assert kinds(reg.verify()) == ["torn-journal-line"]
    assert reg.verify(repair=True).ok and not (model / "journal.quarantine.jsonl").exists()

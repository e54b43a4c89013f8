"""The registry as a library: real files and symlinks in tmp_path."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mlserve import errors
from mlserve.registry import Registry


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_register_copies_hashes_and_freezes(reg: Registry, tmp_path: Path) -> None:
    import hashlib

    src = write(tmp_path / "model.onnx", b"weights" * 1000)
    result = reg.register("churn", src, metrics={"auc": 0.91}, meta={"git": "abc"})
    assert (result.version, result.created, result.size) == ("1", True, 7000)
    assert result.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert result.artifact_path.name == "model.onnx" and result.artifact_path.read_bytes() == src.read_bytes()
    assert not result.artifact_path.stat().st_mode & 0o222, "artifact must be read-only"
    src.write_bytes(b"changed")  # the source is copied, not linked
    assert result.artifact_path.read_bytes() == b"weights" * 1000
    info = reg.version_info("churn", "1")
    assert info.metrics == {"auc": 0.91} and info.meta == {"git": "abc"} and info.status == "registered"


def test_versions_are_immutable_and_auto_numbered(reg: Registry, tmp_path: Path) -> None:
    assert reg.register("m", write(tmp_path / "a", "a")).version == "1"
    assert reg.register("m", write(tmp_path / "b", "b"), version="7").version == "7"
    assert reg.register("m", write(tmp_path / "c", "c")).version == "8"
    with pytest.raises(errors.VersionExistsError, match="already exists"):
        reg.register("m", write(tmp_path / "d", "d"), version="7")


def test_identical_content_is_reported_not_duplicated(reg: Registry, tmp_path: Path) -> None:
    reg.register("m", write(tmp_path / "a", "same"))
    again = reg.register("m", write(tmp_path / "b", "same"))
    assert (again.created, again.duplicate_of, again.version) == (False, "1", "1")
    assert "identical to version 1" in again.warnings[0]
    assert [v.version for v in reg.list_versions("m").versions] == ["1"]


def test_directory_artifact_with_inner_symlink(reg: Registry, tmp_path: Path) -> None:
    d = tmp_path / "bundle"
    write(d / "weights" / "w.bin", b"\x00\x01")
    write(d / "config.json", "{}")
    os.symlink("weights/w.bin", d / "latest.bin")
    result = reg.register("bundle", d)
    art = result.artifact_path
    assert (art / "config.json").read_text() == "{}"
    assert os.readlink(art / "latest.bin") == "weights/w.bin"
    assert (art / "latest.bin").read_bytes() == b"\x00\x01"
    assert reg.verify("bundle").problems == []


def test_symlink_out_of_artifact_is_refused(reg: Registry, tmp_path: Path) -> None:
    d = tmp_path / "bundle"
    write(d / "w.bin", "x")
    write(tmp_path / "secret", "s")
    os.symlink(tmp_path / "secret", d / "escape")
    with pytest.raises(errors.UsageError, match="points outside the artifact"):
        reg.register("bundle", d)
    os.unlink(d / "escape")
    os.symlink("../secret", d / "escape")
    with pytest.raises(errors.UsageError, match="points outside the artifact"):
        reg.register("bundle", d)
    assert not any((reg.root / ".staging").iterdir()), "a refused register leaves nothing behind"


def test_promote_swaps_symlinks_archives_and_journals(reg: Registry, tmp_path: Path) -> None:
    reg.register("m", write(tmp_path / "a", "a"))
    reg.register("m", write(tmp_path / "b", "b"))
    first = reg.promote("m", "1", reason="first")
    assert (first.previous, first.version) == (None, "1")
    second = reg.promote("m", "2", reason="better")
    assert second.previous == "1"
    model_dir = reg.root / "models" / "m"
    assert os.readlink(model_dir / "stages" / "production") == "../versions/2"
    assert os.readlink(model_dir / "current") == "stages/production"
    assert (model_dir / "current" / "artifact" / "b").read_text() == "b"
    assert reg.version_info("m", "1").status == "archived"
    assert reg.version_info("m", "2").stages == ["production"]
    promote_events = [e for e in reg.events("m") if e.kind == "promote"]
    assert [(e.from_version, e.to_version, e.reason, e.actor) for e in promote_events] == [
        (None, "1", "first", reg.actor), ("1", "2", "better", reg.actor)]


def test_several_stages_per_version_one_version_per_stage(reg: Registry, tmp_path: Path) -> None:
    reg.register("m", write(tmp_path / "a", "a"))
    reg.register("m", write(tmp_path / "b", "b"))
    reg.promote("m", "1", stage="staging")
    reg.promote("m", "1", stage="production")
    assert reg.version_info("m", "1").stages == ["production", "staging"]
    reg.promote("m", "2", stage="staging")
    assert reg.model_summary("m").stages == {"production": "1", "staging": "2"}


def test_expect_current_is_compare_and_swap(reg: Registry, tmp_path: Path) -> None:
    reg.register("m", write(tmp_path / "a", "a"))
    reg.register("m", write(tmp_path / "b", "b"))
    with pytest.raises(errors.ExpectationFailedError, match="holds nothing, not 1"):
        reg.promote("m", "1", expect_current="1")
    reg.promote("m", "1", expect_current="none")
    with pytest.raises(errors.ExpectationFailedError):
        reg.promote("m", "2", expect_current="2")
    reg.promote("m", "2", expect_current="1")
    assert reg.resolve("m@production").version == "2"


def test_require_gates_on_recorded_metrics(reg: Registry, tmp_path: Path) -> None:
    reg.register("m", write(tmp_path / "a", "a"), metrics={"auc": 0.8})
    with pytest.raises(errors.GateFailedError, match=r"auc=0.8 is not >= 0.9; latency is not recorded"):
        reg.promote("m", "1", require=["auc>=0.9", "latency<5"])
    reg.record_metrics("m", "1", {"auc": 0.95, "latency": 3})
    assert reg.promote("m", "1", require=["auc>=0.9", "latency<5"]).version == "1"
    with pytest.raises(errors.UsageError, match="bad requirement"):
        reg.promote("m", "1", require=["auc is big"])


def test_rollback_walks_back_through_previous_holders(reg: Registry, tmp_path: Path) -> None:
    for name in "abc":
        reg.register("m", write(tmp_path / name, name))
    for v in ("1", "2", "3"):
        reg.promote("m", v)
    assert reg.rollback("m").version == "2"
    assert reg.rollback("m").version == "1"
    with pytest.raises(errors.NotFoundError, match="no earlier version"):
        reg.rollback("m")
    assert reg.rollback("m", to="3").version == "3"
    assert reg.rollback("m").version == "1", "an explicit rollback is undone like a promotion"


def test_rollback_refuses_damaged_target(reg: Registry, tmp_path: Path) -> None:
    a = reg.register("m", write(tmp_path / "a", "a"))
    reg.register("m", write(tmp_path / "b", "b"))
    reg.promote("m", "1")
    reg.promote("m", "2")
    os.chmod(a.artifact_path, 0o644)
    a.artifact_path.write_text("tampered")
    with pytest.raises(errors.ChecksumMismatchError, match="m:1 is damaged"):
        reg.rollback("m")
    assert reg.resolve("m").version == "2", "nothing changed"
    report = reg.verify("m")
    assert [p.kind for p in report.problems] == ["checksum-mismatch"] and not report.ok


def test_history_answers_what_was_in_production_at_time_t(reg: Registry, tmp_path: Path) -> None:
    reg.register("m", write(tmp_path / "a", "a"))
    reg.register("m", write(tmp_path / "b", "b"))
    before = datetime.now(timezone.utc)
    reg.promote("m", "1")
    middle = datetime.now(timezone.utc)
    reg.promote("m", "2")
    after = datetime.now(timezone.utc)
    assert reg.history("m", at=before - timedelta(seconds=1)).holder_at is None
    assert reg.history("m", at=middle).holder_at == "1"
    assert reg.history("m", at=after).holder_at == "2"
    assert [e.kind for e in reg.history("m", stage="production").events] == ["promote", "promote"]


def test_gc_keeps_stage_holders_and_rollback_target(reg: Registry, tmp_path: Path) -> None:
    for i in range(6):
        reg.register("m", write(tmp_path / f"f{i}", str(i)))
    reg.promote("m", "2")
    reg.promote("m", "3")
    reg.promote("m", "1", stage="staging")
    plan = reg.gc("m", keep=1, dry_run=True)
    assert sorted(plan.removed) == ["4", "5"]
    assert plan.protected == {"1": "holds staging", "3": "holds production",
                              "2": "held production before the current version"}
    assert len(reg.list_versions("m").versions) == 6, "dry run removes nothing"
    done = reg.gc("m", keep=1)
    assert sorted(done.removed) == ["4", "5"]
    assert [v.version for v in reg.list_versions("m").versions] == ["1", "2", "3", "6"]
    assert not any((reg.root / "models" / "m" / ".trash").iterdir()), "the trash is emptied under the lock"
    assert reg.verify("m").problems == []


def test_tags_and_metadata_after_registration(reg: Registry, tmp_path: Path) -> None:
    reg.register("m", write(tmp_path / "a", "a"), meta={"owner": "x"})
    reg.tag("m", "1", ["reviewed", "gdpr"])
    info = reg.set_meta("m", "1", {"owner": "y", "ticket": 12}, unset=[])
    assert info.tags == ["reviewed", "gdpr"] and info.meta == {"owner": "y", "ticket": 12}
    info = reg.tag("m", "1", ["gdpr"], remove=True)
    assert info.tags == ["reviewed"]
    with pytest.raises(errors.NotFoundError, match="has no tag nope"):
        reg.tag("m", "1", ["nope"], remove=True)
    assert [e.kind for e in reg.events("m")] == ["register", "tag", "set-meta", "untag"]


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "a..b", "x" * 200, "sp ace", "-dash"])
def test_bad_names_are_refused_before_touching_disk(reg: Registry, tmp_path: Path, bad: str) -> None:
    src = write(tmp_path / "a", "a")
    with pytest.raises(errors.InvalidNameError):
        reg.register(bad, src)
    with pytest.raises(errors.InvalidNameError):
        reg.register("ok", src, version=bad)
    assert not (reg.root / "models" / "ok").exists() or not any((reg.root / "models" / "ok" / "versions").iterdir())


def test_corrupt_index_names_file_and_field(reg: Registry, tmp_path: Path) -> None:
    reg.register("m", write(tmp_path / "a", "a"))
    index = reg.root / "models" / "m" / "model.json"
    doc = json.loads(index.read_text())
    doc["next_seq"] = "many"
    index.write_text(json.dumps(doc))
    with pytest.raises(errors.CorruptIndexError, match=r"model.json is invalid at next_seq"):
        reg.model_summary("m")
    index.write_text("{not json")
    with pytest.raises(errors.CorruptIndexError, match=r"model index .*model.json is invalid at \(document\): Invalid JSON"):
        reg.model_summary("m")
    # model.json is derived: a write does not need it, and repair rebuilds it from the links and the journal
    assert reg.promote("m", "1").version == "1"
    assert [p.kind for p in reg.verify().problems] == ["corrupt-index"]
    assert reg.verify(repair=True).ok and reg.model_summary("m").stages == {"production": "1"}


def test_not_a_registry_directory_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write(home / "notes.txt", "precious")
    with pytest.raises(errors.UsageError, match="is not an mlserve registry"):
        Registry(home).register("m", write(tmp_path / "a", "a"))
    assert sorted(p.name for p in home.iterdir()) == ["notes.txt"]


def test_dangling_stage_link_is_reported(reg: Registry, tmp_path: Path) -> None:
    reg.register("m", write(tmp_path / "a", "a"))
    reg.promote("m", "1")
    link = reg.root / "models" / "m" / "stages" / "production"
    os.unlink(link)
    os.symlink("../versions/99", link)
    with pytest.raises(errors.CorruptIndexError, match="points at version '99', which is missing"):
        reg.resolve("m@production")
    os.unlink(link)
    os.symlink("/etc", link)
    with pytest.raises(errors.CorruptIndexError, match="points outside the model: /etc"):
        reg.resolve("m@production")
    assert reg.promote("m", "1").version == "1", "a promotion replaces a broken link"
    assert reg.resolve("m@production").version == "1" and reg.verify("m").problems == []


def test_verify_repair_fixes_index_and_leftovers(reg: Registry, tmp_path: Path) -> None:
    reg.register("m", write(tmp_path / "a", "a"))
    reg.promote("m", "1")
    model_dir = reg.root / "models" / "m"
    index = json.loads((model_dir / "model.json").read_text())
    index["stages"] = {}
    (model_dir / "model.json").write_text(json.dumps(index))
    write(model_dir / ".tmp-model.json-123", "partial")
    (reg.root / ".staging" / "999999999-dead").mkdir()
    with open(model_dir / "journal.jsonl", "ab") as fh:
        fh.write(b'{"id": "torn')
    report = reg.verify()
    assert sorted(p.kind for p in report.problems) == [
        "index-mismatch", "leftover", "leftover", "torn-journal-line"]
    assert not report.ok
    assert reg.verify(repair=True).ok
    assert reg.verify().problems == []
    assert reg.model_summary("m").stages == {"production": "1"}
    reg.promote("m", "1", stage="staging")  # the journal is appendable again
    assert reg.events("m")[-1].stage == "staging"


def test_resolve_forms(reg: Registry, tmp_path: Path) -> None:
    reg.register("m", write(tmp_path / "a", "a"))
    assert reg.resolve("m:1").version == "1"
    with pytest.raises(errors.EmptyStageError):
        reg.resolve("m")
    reg.promote("m", "1")
    assert reg.resolve("m").artifact_path.read_text() == "a"
    with pytest.raises(errors.NotFoundError, match="model 'nope' not found"):
        reg.resolve("nope@production")
    with pytest.raises(errors.NotFoundError, match="version '9'"):
        reg.resolve("m:9")


def test_lock_timeout_is_a_conflict(reg: Registry, tmp_path: Path) -> None:
    from filelock import FileLock

    reg.register("m", write(tmp_path / "a", "a"))
    quick = Registry(reg.root, lock_timeout=0.2)
    with FileLock(str(reg.root / "models" / "m" / ".lock")):
        with pytest.raises(errors.LockTimeoutError, match="could not lock model 'm' within 0.2s"):
            quick.promote("m", "1")
    assert quick.resolve("m:1").version == "1", "reads never need the lock"


def test_non_finite_or_ungateable_metrics_are_refused(reg: Registry, tmp_path: Path) -> None:
    src = write(tmp_path / "a", "a")
    for bad in ({"auc": float("nan")}, {"auc": float("inf")}, {"p99 ms": 1.0}):
        with pytest.raises(errors.UsageError):
            reg.register("m", src, metrics=bad)
    reg.register("m", src)
    with pytest.raises(errors.UsageError, match="not a finite number"):
        reg.record_metrics("m", "1", {"auc": float("nan")})
    assert reg.verify().problems == [] and reg.version_info("m", "1").metrics == {}


def test_duplicate_register_still_applies_stage_and_metrics(reg: Registry, tmp_path: Path) -> None:
    reg.register("m", write(tmp_path / "a", "same"))
    again = reg.register("m", write(tmp_path / "b", "same"), stage="production", metrics={"auc": 0.5})
    assert (again.created, again.version, again.stage) == (False, "1", "production")
    assert reg.resolve("m").version == "1" and reg.resolve("m").metrics == {"auc": 0.5}
    with pytest.raises(errors.VersionExistsError, match="identical to m:1; version '9' was not created"):
        reg.register("m", write(tmp_path / "c", "same"), version="9")


def test_version_names_are_never_reused_after_gc(reg: Registry, tmp_path: Path) -> None:
    for i in range(4):
        reg.register("g", write(tmp_path / f"f{i}", str(i)))
    reg.promote("g", "1")
    assert sorted(reg.gc("g", keep=0).removed) == ["2", "3", "4"]
    assert reg.register("g", write(tmp_path / "new", "new")).version == "5"
    with pytest.raises(errors.VersionExistsError, match="was removed by gc"):
        reg.register("g", write(tmp_path / "other", "other"), version="3")
    assert reg.verify().problems == []


def test_gc_protects_the_previous_production_holder(reg: Registry, tmp_path: Path) -> None:
    for i in range(3):
        reg.register("m", write(tmp_path / f"f{i}", str(i)))
    for v in ("1", "2", "3"):
        reg.promote("m", v)
    reg.rollback("m")
    reg.rollback("m")  # production = 1, no default rollback target left
    plan = reg.gc("m", keep=1, dry_run=True)
    assert "2" not in plan.removed and plan.protected["2"] == "held production before the current version"


def test_gc_handles_the_longest_names(reg: Registry, tmp_path: Path) -> None:
    name, version = "n" * 128, "v" * 120
    reg.register(name, write(tmp_path / "a", "a"), version=version + "1")
    reg.register(name, write(tmp_path / "b", "b"), version=version + "2")
    assert reg.gc(name, keep=1).removed == [version + "1"]


def test_commands_on_unknown_models_leave_no_directory(reg: Registry, tmp_path: Path) -> None:
    reg.register("m", write(tmp_path / "a", "a"))
    with pytest.raises(errors.NotFoundError):
        reg.journal_event("ghost", "note", {})
    assert not (reg.root / "models" / "ghost").exists()


def test_repair_rebuilds_a_lost_index_from_the_versions(reg: Registry, tmp_path: Path) -> None:
    reg.register("n", write(tmp_path / "a", "a"))
    reg.register("n", write(tmp_path / "b", "b"))
    model_dir = reg.root / "models" / "n"
    (model_dir / "model.json").unlink()
    (model_dir / "journal.jsonl").unlink()
    assert reg.verify(repair=True).ok
    assert reg.verify().problems == []
    summary = reg.model_summary("n")
    assert (summary.latest, summary.versions) == ("2", 2)
    assert reg.register("n", write(tmp_path / "c", "c")).version == "3"
    assert [v.seq for v in reg.list_versions("n").versions] == [1, 2, 3]


def test_verify_flags_versions_sharing_a_sequence_number(reg: Registry, tmp_path: Path) -> None:
    reg.register("s", write(tmp_path / "a", "a"))
    reg.register("s", write(tmp_path / "b", "b"))
    record = reg.root / "models" / "s" / "versions" / "2" / "version.json"
    doc = json.loads(record.read_text())
    doc["seq"] = 1
    os.chmod(record, 0o644)
    record.write_text(json.dumps(doc))
    assert "duplicate-sequence" in [p.kind for p in reg.verify().problems]

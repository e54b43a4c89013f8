"""One grammar for references: NAME:VERSION and NAME@STAGE work the same way on every command."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlserve import exitcodes


@pytest.fixture
def reg3(cli, registry_dir: Path, tmp_path: Path) -> None:
    for i in range(1, 4):
        art = tmp_path / f"a{i}.onnx"
        art.write_bytes(f"model {i}".encode())
        assert cli("register", "churn", art, "-m", f"auc=0.{i}").exit_code == 0
    assert cli("promote", "churn", "1").exit_code == 0
    assert cli("promote", "churn:2", "--stage", "staging").exit_code == 0


def _prod(cli) -> str:
    return cli.json("show", "churn@production")[1]["result"]["version"]


def test_promote_accepts_all_three_forms(cli, reg3) -> None:
    assert cli("promote", "churn:3").stdout == "churn@production: 1 -> 3\n"
    assert cli("promote", "churn@staging").stdout == "churn@production: 3 -> 2\n"  # what staging holds
    assert cli("promote", "churn", "1").stdout == "churn@production: 2 -> 1\n"  # the positional form still works


def test_rollback_accepts_stage_and_version_references(cli, reg3) -> None:
    cli("promote", "churn:3")
    assert cli("rollback", "churn@production").stdout == "churn@production: 3 -> 1\n"
    assert cli("rollback", "churn:3").stdout == "churn@production: 1 -> 3\n"  # back to an explicit version
    cli("promote", "churn:3", "--stage", "staging")
    assert cli("rollback", "churn@staging").stdout == "churn@staging: 3 -> 2\n"


def test_tag_untag_set_meta_show_accept_stage_references(cli, reg3) -> None:
    _, doc = cli.json("tag", "churn@production", "audited")
    assert (doc["result"]["version"], doc["result"]["tags"]) == ("1", ["audited"])
    _, doc = cli.json("untag", "churn@production", "audited")
    assert doc["result"]["tags"] == []
    _, doc = cli.json("set-meta", "churn@staging", "owner=ml", "--metric", "p50=1.5")
    assert (doc["result"]["version"], doc["result"]["meta"]["owner"], doc["result"]["metrics"]["p50"]) == ("2", "ml", 1.5)
    assert cli("show", "churn@staging", "--field", "version").stdout == "2\n"
    assert cli("show", "churn:2", "--field", "meta.owner").stdout == "ml\n"
    sha = cli("show", "churn:1", "--field", "sha256").stdout.strip()
    assert len(sha) == 64 and cli("show", "churn@production", "--field", "sha256").stdout.strip() == sha
    assert cli("show", "churn:1", "--field", "stages").stdout == "production\n"


def test_set_meta_and_metric_are_one_journal_event(cli, reg3) -> None:
    before = len(cli.json("history", "churn")[1]["result"]["events"])
    cli("set-meta", "churn:3", "k=v", "--metric", "x=1")
    events = cli.json("history", "churn")[1]["result"]["events"]
    assert len(events) == before + 1 and events[-1]["details"] == {"meta": {"k": "v"}, "metrics": {"x": 1.0}}


def test_register_and_history_references(cli, reg3, tmp_path: Path) -> None:
    art = tmp_path / "b.onnx"
    art.write_bytes(b"brand new")
    assert cli("register", "churn:2026.12", art).stdout.startswith("registered churn:2026.12 ")
    art.write_bytes(b"newer still")
    assert cli("register", "churn@canary", art).stdout.endswith("(stage canary)\n")
    rows = [line.split("\t") for line in cli("history", "churn@staging").stdout.splitlines()[1:]]
    assert [(r[1], r[2], r[4]) for r in rows] == [("promote", "staging", "2")]
    rows = [line.split("\t") for line in cli("history", "churn:2").stdout.splitlines()[1:]]
    assert [r[1] for r in rows] == ["register", "promote"]


@pytest.mark.parametrize("args, message", [
    (["promote", "churn:3", "2"], "error: 'churn:3' already names a version; drop the extra '2'"),
    (["promote", "churn"], "error: 'churn' names no version (use churn:VERSION or churn@STAGE)"),
    (["rollback", "churn@staging", "--stage", "production"], "error: 'churn@staging' says 'staging' but --stage says"),
    (["rollback", "churn:2", "--to", "3"], "error: 'churn:2' says '2' but --to says '3'"),
    (["register", "churn:9", "{art}", "--version", "8"], "error: 'churn:9' says '9' but --version says '8'"),
    (["gc", "churn@production", "--keep", "1"], "error: 'mlserve gc' takes a model name, not 'churn@production'"),
    (["list", "churn:1"], "error: 'mlserve list' takes a model name, not 'churn:1'"),
    (["show", "churn:1", "--field", "nope"], "error: no field 'nope' (fields: "),
    (["tag", "churn:1", "bad tag"], "error: tag 'bad tag' is not valid"),
])
def test_contradictions_are_usage_errors(cli, reg3, tmp_path: Path, args, message) -> None:
    art = tmp_path / "a1.onnx"
    r = cli(*[a.replace("{art}", str(art)) for a in args])
    assert r.exit_code == exitcodes.USAGE, r.output
    assert r.stderr.startswith(message) and r.stderr.count("\n") == 1, r.stderr


def test_promote_of_an_empty_stage_is_not_found(cli, reg3) -> None:
    r = cli("promote", "churn@canary")
    assert r.exit_code == exitcodes.NOT_FOUND and r.stderr.startswith("error: churn@canary is empty")
    assert _prod(cli) == "1"


def test_a_bad_requirement_is_refused_before_the_registry_is_touched(cli, tmp_path: Path) -> None:
    r = cli("promote", "m:1", "--require", "auc>>1", "--registry", tmp_path / "absent")
    assert r.exit_code == exitcodes.USAGE and r.stderr.startswith("error: bad requirement 'auc>>1'")
    assert not (tmp_path / "absent").exists()

"""Registry commands through Typer's runner: exact outputs, JSON documents, exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mlserve import exitcodes


@pytest.fixture
def artifacts(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, body in {"a": b"alpha", "b": b"bravo", "c": b"charlie"}.items():
        out[name] = tmp_path / f"{name}.onnx"
        out[name].write_bytes(body)
    return out


def test_register_promote_rollback_text(cli, registry_dir: Path, artifacts) -> None:
    r = cli("register", "churn", artifacts["a"], "--metric", "auc=0.9", "--meta", "git=abc")
    assert r.exit_code == 0, r.output
    assert r.stdout == "registered churn:1 sha256:8ed3f6ad685b959ead7022518e1af76cd816f8e8ec7ccdda1ed4018e8f2223f8 5 bytes\n"
    assert cli("register", "churn", artifacts["b"], "-m", "auc=0.95").exit_code == 0
    r = cli("promote", "churn", "1", "--reason", "first")
    assert (r.exit_code, r.stdout) == (0, "churn@production: (empty) -> 1\n")
    r = cli("promote", "churn", "2")
    assert (r.exit_code, r.stdout) == (0, "churn@production: 1 -> 2\n")
    r = cli("rollback", "churn")
    assert (r.exit_code, r.stdout) == (0, "churn@production: 2 -> 1\n")
    r = cli("resolve", "churn@production")
    assert r.exit_code == 0
    assert r.stdout == f"{registry_dir.absolute()}/models/churn/versions/1/artifact/a.onnx\n"


def test_json_documents_are_versioned_sorted_and_alone(cli, registry_dir: Path, artifacts) -> None:
    _, doc = cli.json("register", "churn", artifacts["a"], "--stage", "staging")
    assert list(doc) == ["kind", "result", "schema_version"]
    assert (doc["kind"], doc["schema_version"]) == ("register", 1)
    result = doc["result"]
    assert (result["version"], result["created"], result["stage"], result["size"]) == ("1", True, "staging", 5)
    assert result["sha256"] == "8ed3f6ad685b959ead7022518e1af76cd816f8e8ec7ccdda1ed4018e8f2223f8"
    _, doc = cli.json("promote", "churn", "1")
    assert doc["result"] == {"changed": True, "event_id": doc["result"]["event_id"], "model": "churn",
                             "previous": None, "stage": "production", "version": "1", "warnings": []}
    _, doc = cli.json("list")
    assert [(m["name"], m["versions"], m["stages"]) for m in doc["result"]["models"]] == [
        ("churn", 1, {"production": "1", "staging": "1"})]
    _, doc = cli.json("list", "churn")
    assert [(v["version"], v["status"], v["stages"]) for v in doc["result"]["versions"]] == [
        ("1", "production", ["production", "staging"])]
    _, doc = cli.json("show", "churn:1")
    assert doc["kind"] == "version" and doc["result"]["stages"] == ["production", "staging"]
    _, doc = cli.json("history", "churn")
    assert [e["kind"] for e in doc["result"]["events"]] == ["register", "promote", "promote"]
    _, doc = cli.json("verify")
    assert doc["result"]["problems"] == [] and doc["result"]["versions_checked"] == 1
    for text in (json.dumps(doc, sort_keys=True, indent=2),):
        assert cli("verify", "--json").stdout == text + "\n"


def test_list_show_history_tables(cli, registry_dir: Path, artifacts) -> None:
    cli("register", "churn", artifacts["a"], "-m", "auc=0.9")
    cli("promote", "churn", "1")
    # stdout is not a terminal here: plain tab-separated lines, a header first, nothing cut or decorated
    assert cli("list").stdout.splitlines() == ["model\tversions\tlatest\tstages", "churn\t1\t1\tproduction=1"]
    show = cli("show", "churn@production").stdout.splitlines()
    assert show[0] == "field\tvalue" and "status\tproduction" in show and "metric auc\t0.9" in show
    assert cli("show", "churn").stdout.splitlines()[:4] == ["field\tvalue", "model\tchurn", "versions\t1", "latest\t1"]
    history = [line.split("\t") for line in cli("history", "churn").stdout.splitlines()]
    assert history[0] == ["when", "event", "stage", "from", "to", "version", "who", "reason"]
    assert [(row[1], row[6]) for row in history[1:]] == [("register", "tester"), ("promote", "tester")]


def test_history_at_time(cli, registry_dir: Path, artifacts) -> None:
    cli("register", "m", artifacts["a"])
    r = cli("history", "m", "--at", "2000-01-01T00:00:00")
    assert (r.exit_code, r.stdout) == (0, "m@production at 2000-01-01T00:00:00Z: (empty)\n")
    cli("promote", "m", "1")
    _, doc = cli.json("history", "m", "--at", "2999-01-01T00:00:00")
    assert doc["result"]["holder_at"] == "1"


def test_gate_conflict_and_integrity_exit_codes(cli, registry_dir: Path, artifacts) -> None:
    cli("register", "m", artifacts["a"], "-m", "auc=0.8")
    cli("register", "m", artifacts["b"])
    r = cli("promote", "m", "1", "--require", "auc>=0.9")
    assert r.exit_code == exitcodes.GATE_FAILED
    assert r.stderr == "error: m:1 fails the promotion gate: auc=0.8 is not >= 0.9\n" and r.stdout == ""
    cli("promote", "m", "1")
    r = cli("promote", "m", "2", "--expect-current", "2")
    assert r.exit_code == exitcodes.CONFLICT
    assert r.stderr == "error: m@production holds 1, not 2 as expected\n"
    art = registry_dir / "models" / "m" / "versions" / "2" / "artifact" / "b.onnx"
    os.chmod(art, 0o644)
    art.write_bytes(b"tampered")
    r = cli("promote", "m", "2")
    assert r.exit_code == exitcodes.INTEGRITY and r.stderr.startswith("error: m:2 is damaged: sha256 ")
    r = cli("verify")
    assert r.exit_code == exitcodes.INTEGRITY
    assert "m:2: checksum-mismatch" in r.stdout and "NOT repairable" in r.stdout
    r = cli("resolve", "m")
    assert r.exit_code == 0, "production (version 1) is untouched"


def test_error_json_document_under_json(cli, registry_dir: Path) -> None:
    registry_dir.mkdir()  # an empty registry: the model is what is missing
    r = cli("show", "nope:1", "--json")
    assert r.exit_code == exitcodes.NOT_FOUND
    doc = json.loads(r.stdout)
    assert doc["kind"] == "error" and doc["error"]["code"] == "not_found"
    assert r.stderr.startswith("error: model 'nope' not found")


@pytest.mark.parametrize("args, code, message", [
    (["register", "m", "missing.onnx"], exitcodes.NOT_FOUND, "error: artifact missing.onnx does not exist"),
    (["register", "../evil", "{a}"], exitcodes.USAGE, "error: model name '../evil' must not contain '/', '\\' or '..'"),
    (["register", "m", "{a}", "--version", ".hidden"], exitcodes.USAGE, "error: version '.hidden' is not valid"),
    (["register", "m", "{a}", "--metric", "auc"], exitcodes.USAGE, "error: bad metric 'auc': use KEY=VALUE"),
    (["register", "m", "{a}", "--metric", "auc=high"], exitcodes.USAGE, "error: bad metric 'auc=high'"),
    (["promote", "nope", "1"], exitcodes.NOT_FOUND, "error: model 'nope' not found"),
    (["promote", "m", "9"], exitcodes.NOT_FOUND, "error: version '9' of model 'm' not found"),
    (["promote", "m", "1", "--stage", "archived"], exitcodes.USAGE, "error: stage 'archived' is reserved"),
    (["promote", "m", "1", "--require", "auc>>1"], exitcodes.USAGE, "error: bad requirement 'auc>>1'"),
    (["rollback", "m"], exitcodes.NOT_FOUND, "error: m@production has no earlier version"),
    (["rollback", "m", "--to", "5"], exitcodes.NOT_FOUND, "error: version '5' of model 'm' not found"),
    (["show", "m:7"], exitcodes.NOT_FOUND, "error: version '7' of model 'm' not found"),
    (["show", "m@canary"], exitcodes.NOT_FOUND, "error: m@canary is empty"),
    (["history", "nope"], exitcodes.NOT_FOUND, "error: model 'nope' not found"),
    (["resolve", "m@staging"], exitcodes.NOT_FOUND, "error: m@staging is empty"),
    (["resolve", "a/b:1"], exitcodes.USAGE, "error: model name 'a/b' must not contain"),
    (["verify", "nope"], exitcodes.NOT_FOUND, "error: model 'nope' not found"),
    (["gc", "m", "--keep", "-1"], exitcodes.USAGE, "error: Invalid value for '--keep': Input should be greater than or equal to 0"),
    (["gc", "nope", "--keep", "1"], exitcodes.NOT_FOUND, "error: model 'nope' not found"),
    (["tag", "m", "x"], exitcodes.USAGE, "error: 'm' names no version (use m:VERSION or m@STAGE)"),
    (["untag", "m:1", "x"], exitcodes.NOT_FOUND, "error: m:1 has no tag x"),
    (["set-meta", "m:1", "novalue"], exitcodes.USAGE, "error: bad metadata 'novalue': use KEY=VALUE"),
    (["history", "m", "--at", "yesterday"], exitcodes.USAGE, "Invalid value for '--at'"),
])
def test_bad_input_gives_one_line_and_exit_code(cli, registry_dir: Path, artifacts, monkeypatch, args, code,
                                                message) -> None:
    monkeypatch.chdir(artifacts["a"].parent)
    assert cli("register", "m", artifacts["c"]).exit_code == 0
    r = cli(*[a.replace("{a}", str(artifacts["a"])) for a in args])
    assert r.exit_code == code, (r.stdout, r.stderr)
    assert message in r.stderr
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    if code != exitcodes.USAGE or message.startswith("error:"):
        assert r.stderr.count("\n") == 1, "one line"


def test_corrupt_index_is_one_line_naming_the_file(cli, registry_dir: Path, artifacts) -> None:
    cli("register", "m", artifacts["a"])
    index = registry_dir / "models" / "m" / "model.json"
    index.write_text('{"schema_version": 1, "name": "m"}')
    r = cli("show", "m")
    assert r.exit_code == exitcodes.INTEGRITY
    assert r.stderr == (f"error: model index {index} is invalid at created_at: Field required "
                        "(run 'mlserve verify --repair' or restore the file from a backup)\n")


def test_traceback_flag_shows_the_stack(cli, registry_dir: Path) -> None:
    registry_dir.mkdir()
    r = cli("--traceback", "show", "nope:1")
    assert r.exit_code == exitcodes.NOT_FOUND
    assert "Traceback (most recent call last)" in r.stderr and r.stderr.rstrip().endswith("(mlserve list nope' shows its versions)") is False
    assert r.stderr.splitlines()[-1].startswith("error: model 'nope' not found")


def test_registry_flag_beats_env(cli, registry_dir: Path, tmp_path: Path, artifacts) -> None:
    other = tmp_path / "other"
    assert cli("register", "m", artifacts["a"], "--registry", other).exit_code == 0
    assert (other / "models" / "m").is_dir() and not registry_dir.exists()


def test_config_file_is_used_below_env(cli, tmp_path: Path, artifacts, monkeypatch) -> None:
    conf = tmp_path / "mlserve.toml"
    monkeypatch.setenv("MLSERVE_CONFIG", str(conf))
    conf.write_text(f'registry = "{tmp_path / "from-config"}"\n')
    assert cli("register", "m", artifacts["a"]).exit_code == 0
    assert (tmp_path / "from-config" / "models" / "m").is_dir()
    monkeypatch.setenv("MLSERVE_REGISTRY", str(tmp_path / "from-env"))
    assert cli("register", "m", artifacts["b"]).exit_code == 0
    assert (tmp_path / "from-env" / "models" / "m").is_dir()


def test_tag_set_meta_gc(cli, registry_dir: Path, artifacts) -> None:
    for key in "abc":
        cli("register", "m", artifacts[key])
    cli("promote", "m", "3")
    _, doc = cli.json("tag", "m:1", "reviewed")
    assert doc["result"]["tags"] == ["reviewed"]
    _, doc = cli.json("set-meta", "m:1", "owner=team-a", "ticket=42", "--metric", "p50_ms=1.5")
    assert doc["result"]["meta"] == {"owner": "team-a", "ticket": 42} and doc["result"]["metrics"] == {"p50_ms": 1.5}
    r = cli("gc", "m", "--keep", "1", "--dry-run")
    assert r.stdout.splitlines() == ["would remove 2 version(s) of m: 1, 2 (10 bytes)", "kept 3: holds production"]
    r = cli("gc", "m", "--keep", "1")
    assert r.exit_code == 0 and r.stdout.startswith("removed 2 version(s) of m: 1, 2")
    assert cli("verify").stdout == "verified 1 model(s), 1 version(s): clean\n"


def test_registry_path_problems_are_one_line_errors(cli, tmp_path: Path, artifacts) -> None:
    a_file = tmp_path / "plain-file"
    a_file.write_text("not a registry")
    # one rule for every command: a registry path that exists but is no directory is exit 8, saying what it is
    for args in (["list"], ["verify"], ["register", "m", artifacts["a"]]):
        r = cli(*args, "--registry", a_file)
        assert (r.exit_code, r.stderr) == (exitcodes.IO_ERROR, f"error: registry path {a_file} is a file, not a "
                                           "directory (point --registry / MLSERVE_REGISTRY at a directory)\n"), args
    r = cli("register", "m", artifacts["a"], "--registry", a_file / "below")
    assert r.exit_code == exitcodes.IO_ERROR
    assert r.stderr == (f"error: registry path {a_file / 'below'} is below {a_file}, which is a file, not a directory "
                        "(point --registry / MLSERVE_REGISTRY at a directory)\n")
    dangling = tmp_path / "gone-link"
    os.symlink(tmp_path / "gone", dangling)
    for args in (["list"], ["register", "m", artifacts["a"]]):
        r = cli(*args, "--registry", dangling)
        assert r.exit_code == exitcodes.IO_ERROR, args
        assert r.stderr.startswith(f"error: registry path {dangling} is a symlink to {tmp_path / 'gone'}, which does "
                                   "not exist"), r.stderr
    assert a_file.read_text() == "not a registry"


def test_a_missing_registry_is_not_found_for_every_command_but_register(cli, tmp_path: Path, artifacts) -> None:
    typo = tmp_path / "typo"
    for args in (["verify"], ["list"], ["list", "m"], ["show", "m"], ["resolve", "m@production"], ["history", "m"],
                 ["gc", "m", "--keep", "1", "--dry-run"], ["promote", "m", "1"]):
        r = cli(*args, "--registry", typo)
        assert r.exit_code == exitcodes.NOT_FOUND, (args, r.stderr)
        assert r.stderr.startswith(f"error: registry {typo} does not exist"), (args, r.stderr)
    assert not typo.exists(), "nothing was created"
    assert cli("register", "m", artifacts["a"], "--registry", typo).exit_code == 0
    assert cli("list", "--registry", typo).exit_code == 0


@pytest.mark.parametrize("args, message", [
    (["register"], "error: Missing argument 'NAME'. (see 'mlserve register -h')"),
    (["bogus"], "error: no such command 'bogus' (see 'mlserve -h')"),
    (["registr"], "error: no such command 'registr'; did you mean 'register'? (see 'mlserve -h')"),
    (["list", "--bogus"], "error: No such option: --bogus (see 'mlserve list -h')"),
])
def test_usage_errors_are_one_line_too(cli, registry_dir: Path, args, message) -> None:
    r = cli(*args)
    assert (r.exit_code, r.stderr) == (exitcodes.USAGE, message + "\n")
    r = cli(*args, "--json")
    assert r.exit_code == exitcodes.USAGE
    if args[0] != "bogus":
        assert json.loads(r.stdout)["error"]["code"] == "usage"

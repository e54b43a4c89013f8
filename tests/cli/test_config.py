"""Configuration mistakes are errors, and `mlserve config` says where every setting comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlserve import exitcodes


def test_an_unknown_key_in_the_config_file_is_a_usage_error(cli, tmp_path: Path, monkeypatch) -> None:
    conf = tmp_path / "mlserve.toml"
    conf.write_text('registy = "/srv/models"\n')
    monkeypatch.setenv("MLSERVE_CONFIG", str(conf))
    r = cli("list")
    assert r.exit_code == exitcodes.USAGE
    assert r.stderr.startswith(f"error: config file {conf} has unknown key 'registy' (did you mean 'registry'?)")
    conf.write_text('[rollout]\nprometheus = "x"\n')
    r = cli("list")
    assert r.exit_code == exitcodes.USAGE and "'rollout.prometheus'" in r.stderr


def test_a_missing_explicit_config_file_is_a_usage_error(cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLSERVE_CONFIG", str(tmp_path / "typo.toml"))
    r = cli("list")
    assert r.exit_code == exitcodes.USAGE
    assert r.stderr.startswith(f"error: config file {tmp_path / 'typo.toml'} (from MLSERVE_CONFIG) does not exist")


def test_a_missing_default_config_file_is_fine(cli, registry_dir: Path) -> None:
    r = cli("config")
    assert r.exit_code == 0 and "(not present; defaults apply)" in r.stdout


def test_bad_values_name_the_file_and_key(cli, tmp_path: Path, monkeypatch) -> None:
    conf = tmp_path / "mlserve.toml"
    conf.write_text('lock_timeout = "soon"\n')
    monkeypatch.setenv("MLSERVE_CONFIG", str(conf))
    r = cli("list")
    assert r.exit_code == exitcodes.USAGE and r.stderr.startswith(f"error: bad value for lock_timeout in {conf}")


def test_config_shows_each_setting_and_its_source(cli, tmp_path: Path, monkeypatch) -> None:
    conf = tmp_path / "mlserve.toml"
    conf.write_text('lock_timeout = 12\n[rollout]\nnamespace = "ml"\n')
    monkeypatch.setenv("MLSERVE_CONFIG", str(conf))
    monkeypatch.setenv("MLSERVE_PROMETHEUS_URL", "http://prom:9090")
    _, doc = cli.json("config", "--registry", tmp_path / "flagged")
    settings = {s["key"]: (s["value"], s["source"]) for s in doc["result"]["settings"]}
    assert settings["registry"] == (str(tmp_path / "flagged"), "flag")
    assert settings["lock_timeout"] == ("12.0", f"file {conf}")
    assert settings["rollout.namespace"] == ("ml", f"file {conf}")
    assert settings["rollout.prometheus_url"] == ("http://prom:9090", "env MLSERVE_PROMETHEUS_URL")
    assert settings["traceback"] == ("False", "default")
    result = doc["result"]
    assert result["registry"] == str(tmp_path / "flagged") and result["registry_state"].startswith("does not exist")
    extras = {e["name"]: e for e in result["extras"]}
    assert {"onnx", "kubernetes", "test", "all"} <= set(extras)
    assert extras["onnx"]["installed"] is True  # the test environment installs .[all,test]
    deps = {d["distribution"]: d for d in result["dependencies"]}
    assert deps["typer"]["extras"] == [] and deps["typer"]["version"]
    text = cli("config").stdout
    assert "registry\t" in text and "MLSERVE_REGISTRY" in text


@pytest.mark.parametrize("env, message", [
    ({"MLSERVE_LOCK_TIMEOUT": "nan"}, "error: bad value for MLSERVE_LOCK_TIMEOUT: 'nan' (nan is not a finite number"),
    ({"MLSERVE_TRACEBACK": "maybe"}, "error: bad value for MLSERVE_TRACEBACK: 'maybe' (not a boolean"),
    ({"MLSERVE_REGISTRY": "~nouser-at-all/x"}, "error: bad value for MLSERVE_REGISTRY: '~nouser-at-all/x' (cannot expand"),
    ({"MLSERVE_SERVE_HTTP_PORT": "eighty"}, "error: bad value for MLSERVE_SERVE_HTTP_PORT: 'eighty' (not an integer"),
])
@pytest.mark.parametrize("args", [["list"], ["resolve", "m@production"], ["promote", "m:1"]])
def test_a_bad_setting_is_exit_2_for_every_command(cli, registry_dir: Path, monkeypatch, env, message, args) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    r = cli(*args)
    assert r.exit_code == exitcodes.USAGE and r.stderr.startswith(message), r.stderr


def test_the_fast_path_refuses_a_bad_setting_like_the_full_parser(registry_dir: Path, monkeypatch, capsys) -> None:
    from mlserve.cli import _fast
    from mlserve.cli.app import run

    monkeypatch.setenv("MLSERVE_TRACEBACK", "maybe")
    fast = _fast.run(["resolve", "m@production"]), capsys.readouterr()
    full = run(["resolve", "m@production", "--plain"]), capsys.readouterr()
    assert fast[0] == full[0] == exitcodes.USAGE and fast[1].err == full[1].err


@pytest.mark.parametrize("body, message", [
    ("registry = 5\n", "(not a string: 5)"),
    ("registry = {a = 1}\n", "(a table where a value belongs)"),
    ("[registry]\npath = '/x'\n", "(a table where a value belongs)"),
    ("lock_timeout = -3\n", "(-3 is not a finite number of 0 or more)"),
    ("traceback = 'maybe'\n", "(not a boolean: 'maybe')"),
])
def test_bad_values_in_the_file_are_errors_and_config_still_reports(cli, tmp_path: Path, monkeypatch, body,
                                                                    message) -> None:
    conf = tmp_path / "mlserve.toml"
    conf.write_text(body)
    monkeypatch.setenv("MLSERVE_CONFIG", str(conf))
    r = cli("register", "m", conf)
    assert r.exit_code == exitcodes.USAGE and message in r.stderr, r.stderr
    assert not list(tmp_path.glob("*{*")), "nothing was created from a bad value"
    r = cli("config")
    assert r.exit_code == exitcodes.USAGE and message in r.stdout and message in r.stderr


def test_config_names_a_registry_from_the_environment_as_such(cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLSERVE_REGISTRY", str(tmp_path / "from-env"))
    _, doc = cli.json("config")
    entry = next(s for s in doc["result"]["settings"] if s["key"] == "registry")
    assert (entry["value"], entry["source"]) == (str(tmp_path / "from-env"), "env MLSERVE_REGISTRY")


def test_a_relative_path_in_the_file_is_relative_to_the_file(cli, tmp_path: Path, monkeypatch) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    (conf_dir / "mlserve.toml").write_text('registry = "models"\n')
    monkeypatch.setenv("MLSERVE_CONFIG", str(conf_dir / "mlserve.toml"))
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    _, doc = cli.json("config")
    assert doc["result"]["registry"] == str(conf_dir / "models")

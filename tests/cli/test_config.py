"""Configuration mistakes are errors, and `mlserve config` says where every setting comes from."""

from __future__ import annotations

from pathlib import Path

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
    assert settings["lock_timeout"] == ("12", f"file {conf}")
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

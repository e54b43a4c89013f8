"""Fixtures shared by every test: an isolated environment and a CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's config, registry or colours."""
    for var in list(os.environ):
        # MLSERVE_REQUIRE_* / MLSERVE_TEST_* steer the test run itself (CI sets MLSERVE_REQUIRE_PROMETHEUS=1 so that a
        # missing Prometheus fails instead of skipping): they stay; every setting of mlserve's goes.
        if var.startswith("MLSERVE_") and not var.startswith(("MLSERVE_REQUIRE_", "MLSERVE_TEST_")):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("MLSERVE_CONFIG", raising=False)  # the default file, under XDG_CONFIG_HOME below, is absent
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("MLSERVE_ACTOR", "tester")


@pytest.fixture
def registry_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "registry"
    monkeypatch.setenv("MLSERVE_REGISTRY", str(path))
    return path


@pytest.fixture
def reg(registry_dir: Path):
    """The registry at ``registry_dir``: the same one the CLI sees (MLSERVE_REGISTRY), with a short lock timeout
    so that a test that deadlocks fails in seconds."""
    from mlserve.registry import Registry

    return Registry(registry_dir, lock_timeout=5)


class Cli:
    """Runs ``mlserve`` in-process through Typer's runner with a fixed terminal width."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None):  # noqa: A002
        from mlserve.cli.app import app

        return self.runner.invoke(app, [str(a) for a in args], input=input,
                                  env={"NO_COLOR": "1", "COLUMNS": "120", "TERM": "dumb"})

    def json(self, *args: str):
        import json

        result = self(*args, "--json")
        assert result.stderr == "", result.stderr
        return result, json.loads(result.stdout)


@pytest.fixture
def cli() -> Cli:
    return Cli()

"""Fixtures of the ``rollout --target local`` tests: a real registry of ONNX versions and a real ``mlserve serve``."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout.local.local_support import ANALYSIS, make_registry, start_server


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    return make_registry(tmp_path)


@pytest.fixture
def server(tmp_path: Path, registry: Path):
    """``mlserve serve churn@production`` with an admin token, on free loopback ports."""
    srv = start_server(tmp_path, registry)
    yield srv
    srv.kill()


@pytest.fixture
def analysis(tmp_path: Path) -> Path:
    path = tmp_path / "analysis.yaml"
    path.write_text(ANALYSIS)
    return path

"""Fixtures for manifest-mode tests: a private copy of a small GitOps repository per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A writable copy of fixtures/gitops (churn/deployment.yaml, ingress-canary.yaml, httproute.yaml)."""
    target = tmp_path / "repo"
    shutil.copytree(FIXTURES / "gitops", target)
    return target


@pytest.fixture
def expected() -> Path:
    return FIXTURES / "expected"


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def snapshot():
    """``snapshot(dir)``: every file under ``dir`` (hidden ones included) with its exact bytes."""
    return _snapshot

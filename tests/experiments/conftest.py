"""Fixtures of the experiment tests."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from experiments.abdata import Columns, write_table


@pytest.fixture
def table(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str, columns: Columns) -> Path:
        return write_table(tmp_path / name, columns)

    return make

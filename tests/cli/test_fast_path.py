"""The fast path answers exactly as the full parser does: same stdout, stderr and exit code, shape by shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlserve.cli import _fast
from mlserve.cli.app import run


@pytest.fixture
def populated(registry_dir: Path, tmp_path: Path) -> Path:
    from mlserve.registry import Registry

    art = tmp_path / "m.onnx"
    art.write_bytes(b"weights")
    reg = Registry(registry_dir)
    reg.register("churn", art, metrics={"auc": 0.9}, meta={"git": "abc"}, stage="production")
    return registry_dir


FAST = [
    ["resolve", "churn@production"], ["resolve", "churn"], ["resolve", "churn:1"], ["resolve", "churn@production", "--json"],
    ["resolve", "churn@staging"], ["resolve", "nope:1", "--json"], ["resolve", "a/b:1"], ["resolve", "churn:9"],
    ["show", "churn@production", "--field", "sha256"], ["show", "churn:1", "--field=metrics.auc"],
    ["show", "churn:1", "--field", "meta.git"], ["show", "churn:1", "--field", "nope"], ["show", "churn"],
    ["show", "churn:1"], ["show", "churn:1", "--json"], ["show", "churn@production", "--field", "version", "--json"],
    ["resolve", "churn@production", "--registry", "{other}"], ["show", "churn:1", "--registry={other}"],
]
FULL_ONLY = [["resolve"], ["resolve", "a", "b"], ["resolve", "x", "--help"], ["resolve", "--json"],
             ["show", "x", "--field"], ["resolve", "x", "--traceback"], ["resolve", "x", "--registry", "--json"],
             ["list"], ["show", "x", "--field", "a", "--field", "b"], []]


@pytest.mark.parametrize("argv", FAST, ids=" ".join)
def test_fast_shapes_answer_like_the_full_parser(populated: Path, tmp_path: Path, capsys, argv: list[str]) -> None:
    argv = [a.replace("{other}", str(tmp_path / "other")) for a in argv]
    assert _fast.parse(argv) is not None
    fast_code = _fast.run(argv)
    fast = capsys.readouterr()
    full_code = run(argv)
    full = capsys.readouterr()
    assert (fast_code, fast.out, fast.err) == (full_code, full.out, full.err)


@pytest.mark.parametrize("argv", FULL_ONLY, ids=" ".join)
def test_every_other_shape_goes_to_the_full_parser(argv: list[str]) -> None:
    assert _fast.parse(argv) is None

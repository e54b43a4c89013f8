"""Fixtures of the serve tests: real ONNX models built once per session, a real registry per test."""

from __future__ import annotations

from pathlib import Path

import pytest




@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from serve import models

    root = tmp_path_factory.mktemp("serve-models")
    return {
        "mlp": models.mlp(root / "mlp.onnx"),
        "mlp_b": models.mlp(root / "mlp-b" / "mlp.onnx", seed=7),
        "cnn": models.cnn(root / "cnn.onnx"),
        "gather": models.gather(root / "gather.onnx"),
        "two_inputs": models.two_inputs(root / "two_inputs.onnx"),
        "ragged": models.ragged(root / "ragged.onnx"),
        "fixed": models.fixed_batch(root / "fixed.onnx"),
        "slow": models.slow(root / "slow.onnx"),
    }

"""Tiny real models for the optimize tests, written once per session as a factory module on sys.path.

The ``cli`` fixture is the one of tests/conftest.py (stdout is not a terminal there: tables are tab-separated)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from helpers.optimize_models import FACTORY_MODULE, MODELS_SOURCE  # noqa: E402


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the factory module (importable) and model files made from it."""
    directory = tmp_path_factory.mktemp("optimize-models")
    (directory / f"{FACTORY_MODULE}.py").write_text(MODELS_SOURCE, encoding="utf-8")
    sys.path.insert(0, str(directory))
    return directory


@pytest.fixture(scope="session")
def factory(model_dir: Path) -> Any:
    import importlib

    return importlib.import_module(FACTORY_MODULE)


@pytest.fixture(scope="session")
def mlp_onnx(model_dir: Path, factory: Any) -> Path:
    """The MLP exported to ONNX with a dynamic batch (the legacy exporter: quick and deterministic)."""
    import torch

    net, (example,) = factory.mlp()
    path = model_dir / "mlp.onnx"
    with warnings.catch_warnings():  # the legacy exporter warns that it is legacy
        warnings.simplefilter("ignore", DeprecationWarning)
        _export(torch, net, path)
    return path


def _export(torch: Any, net: Any, path: Path) -> None:
    torch.onnx.export(
        net, (torch.randn(2, 32),), str(path), dynamo=False, input_names=["x"], output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17,
    )


@pytest.fixture(scope="session")
def broken_mlp_onnx(model_dir: Path, mlp_onnx: Path) -> Path:
    """The same MLP with one weight matrix perturbed: runs fine, computes something else."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(mlp_onnx))
    biggest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    weights = numpy_helper.to_array(biggest).copy()
    weights += np.random.default_rng(1).normal(0, 0.05, size=weights.shape).astype(weights.dtype)
    biggest.CopyFrom(numpy_helper.from_array(weights, biggest.name))
    path = model_dir / "mlp-broken.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def sklearn_joblib(model_dir: Path) -> Path:
    import joblib
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=300, n_features=12, n_informative=6, n_classes=3, random_state=0)
    clf = LogisticRegression(max_iter=500).fit(X, y)
    path = model_dir / "clf.joblib"
    joblib.dump(clf, path)
    return path

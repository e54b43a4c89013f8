"""Tiny real models for the optimize tests, written once per session as a factory module on sys.path."""

from __future__ import annotations

import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest

FACTORY_MODULE = "mlserve_optimize_test_models"

MODELS_SOURCE = textwrap.dedent(
    '''
    import torch
    from torch import nn


    def mlp():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 5))
        return net.eval(), (torch.randn(1, 32),)


    class TinyCNN(nn.Module):
        def __init__(self):
            super().__init__()
            layers, channels = [], 3
            for out in (8, 16, 16):
                layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
                channels = out
            self.features = nn.Sequential(*layers)
            self.head = nn.Linear(16, 4)

        def forward(self, image):
            return self.head(self.features(image).mean(dim=(2, 3)))


    def cnn():
        torch.manual_seed(0)
        net = TinyCNN()
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):  # non-trivial statistics so folding BN matters
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
        return net.eval(), (torch.randn(1, 3, 16, 16),)


    class TinyEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
            self.head = nn.Linear(16, 3)

        def forward(self, tokens):
            return self.head(self.encoder(tokens).mean(dim=1))


    def encoder():
        torch.manual_seed(0)
        return TinyEncoder().eval(), (torch.randn(1, 8, 16),)


    class Branchy(nn.Module):
        def forward(self, x):
            if x.sum() > 0:  # data-dependent branch: torch.export refuses it, tracing bakes in one side
                return x * 2
            return x - 1


    def branchy():
        return Branchy(), (torch.randn(1, 4),)


    def not_a_model():
        return 42


    def raises():
        raise RuntimeError("weights file missing")


    class BatchOfOne(nn.Module):
        """Computes something else at batch 1; the dynamo exporter keeps only the batch > 1 branch."""

        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(8, 3)

        def forward(self, x):
            h = self.linear(x)
            if h.shape[0] == 1:
                return h * 0.0
            return h


    def batch_of_one():
        torch.manual_seed(0)
        return BatchOfOne().eval(), (torch.randn(2, 8),)
    '''
)


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


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run ``mlserve ...`` in-process; returns the click Result."""
    from typer.testing import CliRunner

    from mlserve.cli.app import app

    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("MLSERVE_NO_PROGRESS", "1")
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(app, [str(a) for a in args])

    return run

"""Small real models for the benchmark tests, built once per session with onnx.helper and torch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

WIDTH = 256


def _save_onnx(path: Path, nodes: list, initializers: list, dynamic_dims: list) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dynamic_dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dynamic_dims)],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def bench_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-models")


@pytest.fixture(scope="session")
def tiny_onnx(bench_models: Path) -> Path:
    """y = relu(x) on [batch, 256]: a few microseconds per call."""
    from onnx import helper

    return _save_onnx(bench_models / "tiny.onnx", [helper.make_node("Relu", ["x"], ["y"])], [], ["batch", WIDTH])


@pytest.fixture(scope="session")
def matmul_onnx(bench_models: Path) -> tuple[Path, np.ndarray]:
    """y = x @ W on [batch, 256], with W returned so tests can check the computed values."""
    from onnx import helper, numpy_helper

    w = np.random.default_rng(1).standard_normal((WIDTH, WIDTH)).astype(np.float32)
    path = _save_onnx(bench_models / "matmul.onnx", [helper.make_node("MatMul", ["x", "W"], ["y"])],
                      [numpy_helper.from_array(w, "W")], ["batch", WIDTH])
    return path, w


@pytest.fixture(scope="session")
def slow_onnx(bench_models: Path) -> Path:
    """Forty chained 256x256 MatMul+Tanh layers: hundreds of times the work of ``tiny_onnx``."""
    from onnx import helper, numpy_helper

    w = (np.random.default_rng(2).standard_normal((WIDTH, WIDTH)) / 16).astype(np.float32)
    nodes, prev = [], "x"
    for i in range(40):
        nodes.append(helper.make_node("MatMul", [prev, "W"], [f"m{i}"]))
        out = "y" if i == 39 else f"t{i}"
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [out]))
        prev = out
    return _save_onnx(bench_models / "slow.onnx", nodes, [numpy_helper.from_array(w, "W")], ["batch", WIDTH])


@pytest.fixture(scope="session")
def seq_onnx(bench_models: Path) -> Path:
    """An input with a dynamic non-batch dimension [batch, seq, 8]: needs --input to be benchmarked."""
    from onnx import helper

    return _save_onnx(bench_models / "seq.onnx", [helper.make_node("Relu", ["x"], ["y"])], [], ["batch", "seq", 8])


@pytest.fixture(scope="session")
def linear_torchscript(bench_models: Path, matmul_onnx: tuple[Path, np.ndarray]) -> Path:
    """The same function as ``matmul_onnx`` as a TorchScript file."""
    import torch

    _, w = matmul_onnx
    layer = torch.nn.Linear(WIDTH, WIDTH, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w.T.copy()))
    path = bench_models / "linear.pt"
    with warnings.catch_warnings():  # TorchScript is deprecated upstream, but users still bring .pt files
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.trace(layer.eval(), torch.zeros(1, WIDTH)), str(path))
    return path


@pytest.fixture(scope="session")
def linear_exported(bench_models: Path, matmul_onnx: tuple[Path, np.ndarray]) -> Path:
    """The same function as ``matmul_onnx`` as a torch.export program (.pt2)."""
    import torch

    _, w = matmul_onnx
    layer = torch.nn.Linear(WIDTH, WIDTH, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w.T.copy()))
    path = bench_models / "linear.pt2"
    program = torch.export.export(layer.eval(), (torch.zeros(2, WIDTH),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(path))
    return path


QUICK = ("--iterations", "5", "--duration", "0.05", "--warmup", "0.01")
"""Tiny iteration counts for CLI runs: the figures are not looked at, only the shape of the output."""


@pytest.fixture
def quick() -> tuple[str, ...]:
    return QUICK

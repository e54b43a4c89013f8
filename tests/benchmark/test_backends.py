"""Backends run real sessions on identical seeded inputs; unavailable hardware is refused clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlserve.benchmark import backends as bk
from mlserve.errors import CapabilityUnavailableError, NotFoundError, UsageError
from mlserve.inputs import InputSpec, parse_input, resolve


def parse_input_override(text: str) -> InputSpec:
    return parse_input(text, static_batch=True)  # as benchmark parses --input: a number fixes the shape


def test_onnx_input_specs_read_declared_shapes(matmul_onnx: tuple[Path, np.ndarray], seq_onnx: Path) -> None:
    path, _ = matmul_onnx
    (spec,) = bk.onnx_input_specs(path)  # W is an initializer
    assert (spec.name, spec.shape, spec.dim_names, spec.dtype, spec.dynamic_batch) == ("x", [None, 256], ["batch", None], "float32", True)
    assert bk.onnx_input_specs(seq_onnx)[0].dim_names == ["batch", "seq", None]


def test_make_inputs_is_seeded_and_uses_the_batch_size() -> None:
    specs = [InputSpec(name="x", shape=[None, 4], dtype="float32"), InputSpec(name="ids", shape=[None, 3], dtype="int64")]
    first = bk.make_inputs(specs, 8, seed=5)
    again = bk.make_inputs(specs, 8, seed=5)
    other = bk.make_inputs(specs, 8, seed=6)
    assert first["x"].shape == (8, 4) and first["x"].dtype == np.float32
    assert first["ids"].shape == (8, 3) and first["ids"].dtype == np.int64
    assert set(np.unique(first["ids"])) <= {0, 1}
    np.testing.assert_array_equal(first["x"], again["x"])
    assert not np.array_equal(first["x"], other["x"])


def test_dynamic_inner_dimension_needs_an_override(seq_onnx: Path) -> None:
    specs = bk.onnx_input_specs(seq_onnx)
    with pytest.raises(UsageError, match=r"unknown size at axis 1 \(seq\)") as caught:
        bk.make_inputs(specs, 1, seed=0)
    assert "--input x:Nx<seq>x8:float32, a number in place of each <...> (N: the batch size)" in str(caught.value)
    resolved = resolve(specs, [parse_input_override("x:2x5x8")])
    assert bk.make_inputs(resolved, None, seed=0)["x"].shape == (2, 5, 8)


def test_a_fixed_first_dimension_is_used_as_is() -> None:
    spec = InputSpec(name="x", shape=[4, 16], dtype="float32", dynamic_batch=False)
    assert spec.concrete_shape(8) == [4, 16]  # the model has no batch axis: its shape wins, whatever the batch size


@pytest.mark.parametrize(
    ("text", "message"),
    [("x", "give dimensions"), ("x:1x0:float32", "not a positive integer"), ("x:1xa", "neither dimensions"),
     ("x:1x2:complex", "neither dimensions"), ("x:1x2:float32:int64", "given twice"), ("x:5..2", "empty"), ("x=abc", "not a number")],
)
def test_bad_input_overrides(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_input_override(text)


def test_override_naming_an_unknown_input_is_refused(matmul_onnx: tuple[Path, np.ndarray]) -> None:
    with pytest.raises(UsageError, match="tokens, which is not an input of"):
        resolve(bk.onnx_input_specs(matmul_onnx[0]), [parse_input_override("tokens:1x8:int64")])


def test_ort_cpu_runner_computes_the_model(matmul_onnx: tuple[Path, np.ndarray]) -> None:
    path, w = matmul_onnx
    inputs = bk.make_inputs(bk.onnx_input_specs(path), 3, seed=0)
    runner = bk.make_runner("ort-cpu", path, inputs, threads=1)
    assert runner.provider == "CPUExecutionProvider"
    assert runner.threads == 1
    (y,) = runner.call()
    np.testing.assert_allclose(y, inputs["x"] @ w, rtol=1e-4, atol=1e-4)


def test_torch_runners_compute_the_same_function(matmul_onnx: tuple[Path, np.ndarray], linear_torchscript: Path, linear_exported: Path) -> None:
    path, w = matmul_onnx
    inputs = bk.make_inputs(bk.onnx_input_specs(path), 2, seed=0)
    expected = inputs["x"] @ w
    for model in (linear_torchscript, linear_exported):
        runner = bk.make_runner("torch", model, inputs)
        assert runner.backend == "torch" and runner.threads >= 1
        np.testing.assert_allclose(runner.call().numpy(), expected, rtol=1e-4, atol=1e-4)


def test_torch_runner_accepts_a_module_object(matmul_onnx: tuple[Path, np.ndarray]) -> None:
    import torch

    inputs = bk.make_inputs(bk.onnx_input_specs(matmul_onnx[0]), 1, seed=0)
    runner = bk.make_runner("torch", torch.nn.ReLU(), inputs)
    np.testing.assert_array_equal(runner.call().numpy(), np.maximum(inputs["x"], 0))


def test_wrong_model_for_backend_is_a_usage_error(matmul_onnx: tuple[Path, np.ndarray], linear_torchscript: Path) -> None:
    inputs = bk.make_inputs(bk.onnx_input_specs(matmul_onnx[0]), 1, seed=0)
    with pytest.raises(UsageError, match="ONNX file: use an ONNX backend"):
        bk.make_runner("torch", matmul_onnx[0], inputs)
    with pytest.raises(UsageError, match="ONNX Runtime cannot load"):
        bk.make_runner("ort-cpu", linear_torchscript, inputs)


def test_inputs_that_do_not_fit_fail_before_timing(matmul_onnx: tuple[Path, np.ndarray]) -> None:
    wrong = {"x": np.zeros((1, 3), dtype=np.float32)}
    with pytest.raises(UsageError, match="cannot run on the generated inputs"):
        bk.make_runner("ort-cpu", matmul_onnx[0], wrong)


def test_unknown_backend_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown backend 'onnx-gpu'"):
        bk.make_runner("onnx-gpu", tmp_path / "m.onnx", {})
    with pytest.raises(NotFoundError, match="model file not found"):
        bk.make_runner("ort-cpu", tmp_path / "missing.onnx", {})


@pytest.mark.parametrize("backend", ["ort-cuda", "ort-trt", "tensorrt"])
def test_gpu_backends_are_refused_without_a_gpu(backend: str, tiny_onnx: Path) -> None:
    available, why = bk.backend_available(backend)
    if available:
        pytest.skip(f"{backend} is available here")
    assert why
    inputs = bk.make_inputs(bk.onnx_input_specs(tiny_onnx), 1, seed=0)
    with pytest.raises(CapabilityUnavailableError, match=f"backend {backend} is not available on this machine"):
        bk.make_runner(backend, tiny_onnx, inputs)


@pytest.mark.cuda
def test_ort_cuda_runner(matmul_onnx: tuple[Path, np.ndarray]) -> None:
    if not bk.backend_available("ort-cuda")[0]:
        pytest.skip("no CUDAExecutionProvider here")
    path, w = matmul_onnx
    inputs = bk.make_inputs(bk.onnx_input_specs(path), 4, seed=0)
    runner = bk.make_runner("ort-cuda", path, inputs)
    assert runner.provider == "CUDAExecutionProvider"
    np.testing.assert_allclose(runner.call()[0], inputs["x"] @ w, rtol=1e-2, atol=1e-2)


@pytest.mark.tensorrt
def test_tensorrt_runner(matmul_onnx: tuple[Path, np.ndarray]) -> None:
    if not bk.backend_available("tensorrt")[0]:
        pytest.skip("TensorRT or CUDA is not available here")
    path, w = matmul_onnx
    inputs = bk.make_inputs(bk.onnx_input_specs(path), 4, seed=0)
    runner = bk.make_runner("tensorrt", path, inputs)
    assert runner.provider.startswith("TensorRT")
    (y,) = runner.call()
    np.testing.assert_allclose(y.cpu().numpy(), inputs["x"] @ w, rtol=1e-2, atol=1e-2)


def test_n_as_the_first_dimension_is_the_batch_size() -> None:
    spec = parse_input_override("x:Nx4:int64")
    assert spec.shape == [None, 4] and spec.dtype == "int64"
    assert bk.make_inputs([spec], 6, seed=0)["x"].shape == (6, 4)
    assert bk.make_inputs([spec], None, seed=0)["x"].shape == (1, 4)

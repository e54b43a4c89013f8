"""Every variant built for real from small models, run in ONNX Runtime and checked against the source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlserve.errors import CapabilityUnavailableError, ParityError
from mlserve.optimize import OptimizeOptions, optimize
from mlserve.inputs import parse_input as parse_input_spec
from mlserve.optimize.tensorrt import tensorrt_unavailable_reason

FACTORY = "mlserve_optimize_test_models"


def _by_name(result: Any) -> dict[str, Any]:
    return {c.name: c for c in result.candidates}


def test_mlp_every_cpu_variant_passes_parity(model_dir: Path, tmp_path: Path) -> None:
    result = optimize(
        f"{FACTORY}:mlp",
        OptimizeOptions(variants=["fp32", "fp16", "int8-dynamic", "int8-static"], benchmark=False, output_dir=tmp_path),
    )
    assert result.source.exporter == "dynamo"
    assert result.source.inputs[0].describe() == "input:Nx32:float32"
    got = _by_name(result)
    for name in ("fp32", "fp16", "int8-dynamic", "int8-static"):
        c = got[name]
        assert c.verdict == "passed", (name, c.reason)
        assert c.parity is not None and c.parity.samples == 4 * 8 + 1 + 3  # plus a batch of 1 and an odd batch
        assert c.parity.outputs[0].top1_agreement is not None
        assert Path(c.path).is_file()
    # fp32 is tight, quantized ones differ measurably but within their tolerance
    assert got["fp32"].parity.outputs[0].max_abs_err < 1e-4
    assert 0 < got["int8-dynamic"].parity.outputs[0].max_abs_err < 5e-2
    assert got["int8-static"].recipe["calibration"]["origin"] == "generated N(0,1) data"
    assert any("calibrated on generated random data" in w for w in result.warnings)
    # the written artifacts are valid ONNX with the batch still dynamic
    import onnx
    import onnxruntime as ort

    for c in got.values():
        model = onnx.load(c.path)
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param
        session = ort.InferenceSession(c.path, providers=["CPUExecutionProvider"])
        assert session.run(None, {"input": np.zeros((5, 32), np.float32)})[0].shape == (5, 5)


def test_cnn_static_int8_calibrated_on_user_data(model_dir: Path, tmp_path: Path) -> None:
    samples = tmp_path / "images.npz"
    np.savez(samples, image=np.random.default_rng(3).standard_normal((12, 3, 16, 16)).astype(np.float32))
    result = optimize(
        f"{FACTORY}:cnn",
        OptimizeOptions(variants=["fp32", "int8-static"], benchmark=False, data=samples, parity_batches=2),
    )
    got = _by_name(result)
    assert got["fp32"].verdict == "passed" and got["int8-static"].verdict == "passed", got["int8-static"].reason
    assert got["int8-static"].recipe["calibration"]["origin"] == "user data"
    assert got["int8-static"].recipe["calibration"]["batches"] == 12
    assert got["int8-static"].parity.user_samples == 12  # a batch of 8 and a final partial batch of 4: no row dropped
    assert got["int8-static"].parity.samples == 4 * 8 + 1 + 3 + 12  # random batches (32 rows at least), batches of 1 and 3, user rows
    assert not any("generated random data" in w for w in result.warnings)


def test_transformer_encoder_fp32_and_dynamic_int8(model_dir: Path) -> None:
    result = optimize(f"{FACTORY}:encoder", OptimizeOptions(variants=["fp32", "int8-dynamic"], benchmark=False, parity_batches=2))
    got = _by_name(result)
    assert got["fp32"].verdict == "passed", got["fp32"].reason
    assert got["int8-dynamic"].verdict == "passed", got["int8-dynamic"].reason
    assert got["fp32"].parity.outputs[0].max_abs_err < 1e-4


@pytest.mark.parametrize("model, variants", [("cnn", ["fp16", "int8-dynamic"]), ("encoder", ["fp16", "int8-static"])])
def test_the_rest_of_the_variant_matrix(model_dir: Path, model: str, variants: list[str]) -> None:
    """Every CPU variant of every reference model is built and checked against the PyTorch source."""
    result = optimize(f"{FACTORY}:{model}", OptimizeOptions(variants=variants, benchmark=False, parity_batches=2))
    for name, c in _by_name(result).items():
        assert c.verdict == "passed", (model, name, c.reason)
        assert c.parity is not None and c.parity.outputs[0].cosine is not None and c.parity.outputs[0].cosine > 0.99


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_falls_back_to_the_torchscript_exporter(model_dir: Path, factory: Any, tmp_path: Path) -> None:
    import torch

    net, _ = factory.mlp()
    path = tmp_path / "mlp.ts"
    torch.jit.save(torch.jit.script(net), str(path))
    result = optimize(str(path), OptimizeOptions(variants=["fp32"], benchmark=False, inputs=[parse_input_spec("x:1x32:float32")]))
    assert result.source.kind == "torchscript"
    assert result.source.exporter == "torchscript"
    assert result.candidates[0].verdict == "chosen"  # a single variant that passes is the one written


def test_torch_export_program_keeps_its_dynamic_batch(model_dir: Path, factory: Any, tmp_path: Path) -> None:
    import torch

    net, _ = factory.mlp()
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(net, (torch.randn(2, 32),), dynamic_shapes=({0: batch},))
    path = tmp_path / "mlp.pt2"
    torch.export.save(program, str(path))
    result = optimize(str(path), OptimizeOptions(variants=["fp32"], benchmark=False, output=tmp_path / "out.onnx"))
    assert (result.source.kind, result.source.exporter) == ("torch-export", "dynamo")
    import onnx

    assert onnx.load(str(tmp_path / "out.onnx")).graph.input[0].type.tensor_type.shape.dim[0].dim_param


def test_sklearn_classifier_labels_and_probabilities(sklearn_joblib: Path) -> None:
    result = optimize(str(sklearn_joblib), OptimizeOptions(variants=["fp32", "int8-dynamic"], benchmark=False, trust_pickle=True))
    assert (result.source.kind, result.source.exporter) == ("sklearn", "skl2onnx")
    got = _by_name(result)
    fp32 = got["fp32"]
    assert fp32.verdict == "chosen", fp32.reason  # the only variant built
    outputs = {o.name: o for o in fp32.parity.outputs}
    assert outputs["label"].top1_agreement == 1.0
    assert outputs["probabilities"].max_abs_err < 1e-4
    # a LinearClassifier has nothing ONNX Runtime can quantize: skipped with the reason, not faked
    assert got["int8-dynamic"].verdict == "skipped" and "quantized" in got["int8-dynamic"].reason


def test_broken_candidate_raises_parity_error_naming_output(mlp_onnx: Path, broken_mlp_onnx: Path) -> None:
    with pytest.raises(ParityError) as caught:
        optimize(str(mlp_onnx), OptimizeOptions(candidates=[broken_mlp_onnx], benchmark=False))
    message = str(caught.value)
    assert "file:mlp-broken.onnx" in message and "logits" in message and "max abs err" in message
    assert caught.value.details["parity"]["passed"] is False


def test_tensorrt_variant_without_gpu_is_a_clear_capability_error(mlp_onnx: Path) -> None:
    if tensorrt_unavailable_reason() is None:
        pytest.skip("TensorRT is usable here; the CPU-only behaviour cannot be observed")
    with pytest.raises(CapabilityUnavailableError, match="trt-fp16: "):
        optimize(str(mlp_onnx), OptimizeOptions(variants=["trt-fp16"], benchmark=False))


@pytest.mark.tensorrt
@pytest.mark.cuda
def test_tensorrt_fp16_engine_passes_parity(mlp_onnx: Path, tmp_path: Path) -> None:
    reason = tensorrt_unavailable_reason()
    if reason:
        pytest.skip(reason)
    result = optimize(str(mlp_onnx), OptimizeOptions(variants=["trt-fp16"], benchmark=False, output=tmp_path / "mlp.engine"))
    assert result.candidates[0].verdict == "chosen"
    assert (tmp_path / "mlp.engine").stat().st_size > 0


def test_onnx_source_with_external_weights_and_an_unknown_sequence_length(factory: Any, tmp_path: Path) -> None:
    import warnings

    import onnx
    import torch

    from mlserve.errors import UsageError

    net, _ = factory.encoder()
    exported = tmp_path / "encoder-inline.onnx"
    with warnings.catch_warnings():  # the legacy exporter's deprecation and tracer warnings
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, (torch.randn(2, 8, 16),), str(exported), dynamo=False, input_names=["tokens"], output_names=["scores"],
            dynamic_axes={"tokens": {0: "batch", 1: "seq"}, "scores": {0: "batch"}}, opset_version=17,
        )
    path = tmp_path / "encoder.onnx"
    onnx.save(onnx.load(str(exported)), str(path), save_as_external_data=True, location="encoder.weights", size_threshold=0)
    assert (tmp_path / "encoder.weights").stat().st_size > 1000
    with pytest.raises(UsageError, match="unknown size at axis 1") as caught:
        optimize(str(path), OptimizeOptions(variants=["fp32"], benchmark=False))
    assert str(caught.value).endswith("(give its size with --input tokens:Nx<seq>x16:float32, a number in place of each <...> (N: the batch size))")
    result = optimize(str(path), OptimizeOptions(variants=["fp32"], benchmark=False, inputs=[parse_input_spec("tokens:1x8x16")]))
    assert result.source.inputs[0].describe() == "tokens:Nx8x16:float32"
    assert result.candidates[0].verdict == "chosen" and result.candidates[0].parity.outputs[0].max_abs_err < 1e-4

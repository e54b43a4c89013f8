"""Building the candidate artifacts from the FP32 ONNX export.

Each builder takes the exported FP32 model and writes one file; a builder that does not apply to
this model or this machine raises :class:`VariantSkipped` with the reason (shown in the table).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from mlserve._deps import require
from mlserve.errors import UsageError
from mlserve.optimize._quiet import quiet
from mlserve.inputs import InputSpec
from mlserve.progress import NULL_PROGRESS, Progress


class VariantSkipped(Exception):
    """This variant does not apply here (no CUDA, nothing to quantize...)."""


class VariantBuildError(UsageError):
    """The tool that builds a variant failed on this model (the message carries its reason)."""

    code = "variant_build_failed"


@dataclass
class BuildContext:
    source_onnx: Path
    """The FP32 export (checked, shapes inferred)."""
    workdir: Path
    specs: list[InputSpec]
    calibration: list[dict[str, Any]] | None = None
    calibration_origin: str = "user data"
    """User feeds for static quantization; None means generated data (with a warning)."""
    calibration_batches: int = 16
    progress: Progress = NULL_PROGRESS
    warnings: list[str] = field(default_factory=list)
    fusion_export: Callable[[Path], None] | None = None
    """Writes an export whose attention ONNX Runtime's transformer optimizer can match (a Hugging Face model with
    eager attention through the TorchScript exporter); None: fuse the main export."""
    fusion_hints: dict[str, int] = field(default_factory=dict)
    """num_heads and hidden_size, where the source knows them (the optimizer cannot always tell)."""
    _preprocessed: Path | None = None

    def preprocessed(self) -> Path:
        """The model after ORT's recommended quantization pre-processing (falls back to the export)."""
        if self._preprocessed is None:
            out = self.workdir / "preprocessed.onnx"
            from onnxruntime.quantization.shape_inference import quant_pre_process

            self._preprocessed = self.source_onnx
            # symbolic shape inference fails on some graphs (contrib ops): retry without it
            for skip_symbolic in (False, True):
                # ORT's symbolic shape inference dumps sym_shape_infer_temp.onnx (+ .data files) into the
                # current directory when it gives up: keep that inside our work directory
                with quiet(), contextlib.chdir(self.workdir):
                    try:
                        quant_pre_process(str(self.source_onnx), str(out), skip_symbolic_shape=skip_symbolic)
                    except Exception:  # noqa: BLE001 - pre-processing is an optimization, not a requirement
                        continue
                self._preprocessed = out
                break
        return self._preprocessed


@dataclass
class Built:
    path: Path
    recipe: dict[str, Any]


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def has_vnni() -> bool:
    flags = cpu_flags()
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & flags)


def build_fp32(ctx: BuildContext) -> Built:
    ort = require("onnxruntime")
    out = ctx.workdir / "fp32.onnx"
    with ctx.progress.task("fp32: ONNX Runtime offline graph optimization"), quiet():
        options = ort.SessionOptions()
        # EXTENDED fusions stay valid on any CPU; ALL would add layout changes tied to this machine
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(out)
        options.log_severity_level = 3
        try:
            ort.InferenceSession(str(ctx.source_onnx), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT reports bad models with its own exception types
            raise VariantBuildError(f"fp32: ONNX Runtime cannot optimize the export: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}") from None
    return Built(out, {"variant": "fp32", "graph_optimization_level": "ORT_ENABLE_EXTENDED", "tool": "onnxruntime"})


def looks_like_transformer(path: Path) -> bool:
    """Attention is there: a Softmax fed by a MatMul (scores), plus a layer normalization (fused or not)."""
    onnx = require("onnx")
    graph = onnx.load(str(path), load_external_data=False).graph
    ops = {node.op_type for node in graph.node}
    producers = {out: node.op_type for node in graph.node for out in node.output}
    softmax_after_matmul = any(
        node.op_type == "Softmax" and _upstream_has(node.input[0], producers, graph, {"MatMul", "Einsum"}) for node in graph.node
    )
    layer_norm = bool(ops & {"LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization"}) or (
        "ReduceMean" in ops and "Sqrt" in ops)
    return softmax_after_matmul and layer_norm


def _upstream_has(name: str, producers: dict[str, str], graph: Any, wanted: set[str], depth: int = 4) -> bool:
    by_output = {out: node for node in graph.node for out in node.output}
    frontier = [name]
    for _ in range(depth):
        nxt = []
        for item in frontier:
            node = by_output.get(item)
            if node is None:
                continue
            if node.op_type in wanted:
                return True
            nxt.extend(node.input)
        frontier = nxt
    return False


def build_fp32_fused(ctx: BuildContext) -> Built:
    """ONNX Runtime's transformer optimizer: Attention, SkipLayerNormalization, BiasGelu ... fused (fp32, lossless)."""
    require("onnxruntime")
    if not looks_like_transformer(ctx.source_onnx):
        raise VariantSkipped("the graph has no attention (Softmax after MatMul with layer normalization): nothing to fuse")
    from onnxruntime.transformers.optimizer import optimize_model

    out = ctx.workdir / "fp32-fused.onnx"
    heads, hidden = ctx.fusion_hints.get("num_heads", 0), ctx.fusion_hints.get("hidden_size", 0)
    wanted = {"Attention", "MultiHeadAttention", "SkipLayerNormalization", "LayerNormalization", "EmbedLayerNormalization",
              "BiasGelu", "FastGelu", "Gelu", "SkipSimplifiedLayerNormalization"}
    tries: list[tuple[str, Path]] = []
    if ctx.fusion_export is not None:
        fusable = ctx.workdir / "fusion-export.onnx"
        with ctx.progress.task("fp32-fused: exporting with eager attention for the fusions"), quiet():
            try:
                ctx.fusion_export(fusable)
                tries.append(("eager attention, TorchScript exporter", fusable))
            except Exception:  # noqa: BLE001 - the main export is fused instead
                pass
    tries.append(("the main export", ctx.source_onnx))
    best: tuple[dict[str, int], Any, str] | None = None
    errors = []
    with ctx.progress.task("fp32-fused: ONNX Runtime transformer fusions"), quiet() as log:
        for what, path in tries:
            try:
                model = optimize_model(str(path), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0, use_gpu=False)
                fused = {op: n for op, n in (model.get_fused_operator_statistics() or {}).items() if n and op in wanted}
            except Exception as exc:  # noqa: BLE001 - the optimizer's pattern matchers fail in many ways on unusual graphs
                errors.append(f"{what}: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            # attention fused is what pays; otherwise the graph with most fusions
            score = (fused.get("Attention", 0) + fused.get("MultiHeadAttention", 0), sum(fused.values()))
            if best is None or score > (best[0].get("Attention", 0) + best[0].get("MultiHeadAttention", 0), sum(best[0].values())):
                best = (fused, model, what)
        if best is None:
            raise VariantBuildError(f"fp32-fused: the transformer optimizer failed: {'; '.join(errors)} {log.tail(100)}".strip())
        fused, model, what = best
        if not fused:
            raise VariantSkipped("ONNX Runtime's transformer optimizer found no pattern to fuse in this graph")
        model.save_model_to_file(str(out))
    return Built(out, {"variant": "fp32-fused", "tool": "onnxruntime.transformers.optimizer.optimize_model", "model_type": "bert",
                       "opt_level": 0, "num_heads": heads, "hidden_size": hidden, "from": what, "fused": fused})


def build_fp16(ctx: BuildContext) -> Built:
    onnx = require("onnx")
    require("onnxruntime")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out = ctx.workdir / "fp16.onnx"
    with ctx.progress.task("fp16: converting weights and activations"), quiet():
        model = onnx.load(str(ctx.source_onnx))
        converted = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
        onnx.save(converted, str(out))
    return Built(
        out,
        {"variant": "fp16", "tool": "onnxruntime.transformers.float16.convert_float_to_float16", "keep_io_types": True},
    )


def _quantized_ops(path: Path) -> int:
    onnx = require("onnx")
    quantized = {"DynamicQuantizeLinear", "QuantizeLinear", "MatMulInteger", "ConvInteger", "QLinearConv", "QLinearMatMul", "DynamicQuantizeMatMul", "QAttention"}
    return sum(1 for node in onnx.load(str(path)).graph.node if node.op_type in quantized)


_QUANTIZABLE = {"MatMul", "Gemm", "Conv", "ConvTranspose", "Attention", "LSTM", "GRU", "Gather", "EmbedLayerNormalization"}


def _require_quantizable(path: Path, how: str) -> None:
    onnx = require("onnx")
    ops = {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}
    if not ops & _QUANTIZABLE:
        raise VariantSkipped(f"no operator in this model can be quantized {how} (it has no MatMul, Gemm, Conv or Attention)")


def build_int8_dynamic(ctx: BuildContext) -> Built:
    require("onnxruntime.quantization", purpose="INT8 quantization")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _require_quantizable(ctx.source_onnx, "dynamically")
    out = ctx.workdir / "int8-dynamic.onnx"
    reduce_range = not has_vnni()
    with ctx.progress.task("int8-dynamic: quantizing weights"), quiet() as log:
        try:
            quantize_dynamic(str(ctx.preprocessed()), str(out), weight_type=QuantType.QInt8, reduce_range=reduce_range)
        except Exception as exc:  # noqa: BLE001
            raise VariantBuildError(f"int8-dynamic: quantize_dynamic failed: {type(exc).__name__}: {str(exc)[:200]} {log.tail(100)}".strip()) from None
    if not out.exists() or _quantized_ops(out) == 0:
        raise VariantSkipped("no operator in this model can be quantized dynamically")
    return Built(
        out,
        {"variant": "int8-dynamic", "tool": "onnxruntime.quantization.quantize_dynamic", "weight_type": "QInt8", "reduce_range": reduce_range},
    )


class _Reader:
    """A CalibrationDataReader over a list of feeds (the ORT quantizer pulls them one by one)."""

    def __init__(self, feeds: list[dict[str, Any]], advance: Callable[[], None] | None = None) -> None:
        self._iter: Iterator[dict[str, Any]] = iter(feeds)
        self._feeds = feeds
        self._advance = advance
        self.served = 0

    def get_next(self) -> dict[str, Any] | None:
        item = next(self._iter, None)
        if item is not None:
            self.served += 1
            if self._advance is not None:
                self._advance()  # the calibration progress bar moves with each batch the quantizer pulls
        return item

    def rewind(self) -> None:
        self._iter = iter(self._feeds)


def build_int8_static(ctx: BuildContext) -> Built:
    require("onnxruntime.quantization", purpose="INT8 quantization")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from mlserve.optimize.feeds import make_feeds

    _require_quantizable(ctx.source_onnx, "statically")
    if ctx.calibration:
        feeds, origin = ctx.calibration, ctx.calibration_origin
    else:
        feeds = [make_feeds(ctx.specs, batch=1, seed=1000 + i) for i in range(ctx.calibration_batches)]
        origin = "generated N(0,1) data"
        ctx.warnings.append(
            "int8-static was calibrated on generated random data: activation ranges may not match real inputs; "
            "give real samples with --calibration-data FILE.npz"
        )
    out = ctx.workdir / "int8-static.onnx"
    with ctx.progress.task(f"int8-static: calibrating on {len(feeds)} batches", total=len(feeds)) as task, quiet() as log:
        try:
            quantize_static(
                str(ctx.preprocessed()),
                str(out),
                _Reader(feeds, task.advance),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=not has_vnni(),
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
        except Exception as exc:  # noqa: BLE001
            raise VariantBuildError(f"int8-static: quantize_static failed: {type(exc).__name__}: {str(exc)[:200]} {log.tail(100)}".strip()) from None
    if not out.exists() or _quantized_ops(out) == 0:
        raise VariantSkipped("no operator in this model can be quantized statically")
    return Built(
        out,
        {
            "variant": "int8-static",
            "tool": "onnxruntime.quantization.quantize_static",
            "format": "QDQ",
            "activation_type": "QInt8",
            "weight_type": "QInt8",
            "per_channel": True,
            "calibration": {"method": "MinMax", "batches": len(feeds), "origin": origin},
        },
    )


def build_tensorrt(precision: str) -> Callable[[BuildContext], Built]:
    def build(ctx: BuildContext) -> Built:
        from mlserve.optimize.tensorrt import build_engine, tensorrt_unavailable_reason

        reason = tensorrt_unavailable_reason()
        if reason:
            raise VariantSkipped(reason)
        source = ctx.source_onnx
        if precision == "int8":
            # TensorRT 10 takes INT8 through explicit quantization: feed it the QDQ model
            source = build_int8_static(ctx).path
        out = ctx.workdir / f"trt-{precision}.engine"
        recipe = build_engine(source, out, precision=precision, specs=ctx.specs, progress=ctx.progress)
        return Built(out, recipe)

    return build


BUILDERS: dict[str, Callable[[BuildContext], Built]] = {
    "fp32": build_fp32,
    "fp32-fused": build_fp32_fused,
    "fp16": build_fp16,
    "int8-dynamic": build_int8_dynamic,
    "int8-static": build_int8_static,
    "trt-fp32": build_tensorrt("fp32"),
    "trt-fp16": build_tensorrt("fp16"),
    "trt-int8": build_tensorrt("int8"),
}


def cuda_available() -> bool:
    try:
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            return True
    except ImportError:
        pass
    return os.path.exists("/proc/driver/nvidia/version")


def auto_variants(export: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """The candidates worth building for this model on this machine, and the reason each other one is not built."""
    from mlserve.optimize.tensorrt import tensorrt_unavailable_reason

    chosen = ["fp32", "int8-dynamic", "int8-static"]
    skipped: dict[str, str] = {}
    if export is not None and looks_like_transformer(export):
        chosen.insert(1, "fp32-fused")
    else:
        skipped["fp32-fused"] = "not a transformer graph (no attention to fuse)"
    if cuda_available():
        chosen.append("fp16")
    else:
        skipped["fp16"] = "no CUDA here; ONNX Runtime's CPU provider has no fast FP16 kernels (build it with --variant fp16)"
    reason = tensorrt_unavailable_reason()
    if reason:
        for name in ("trt-fp32", "trt-fp16", "trt-int8"):
            skipped[name] = reason
    else:
        chosen += ["trt-fp32", "trt-fp16", "trt-int8"]
    return chosen, skipped


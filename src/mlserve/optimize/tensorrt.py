"""TensorRT engines (TensorRT 10+ API), behind a capability check.

TensorRT 10 removed ``build_engine``, ``max_workspace_size`` and implicit batch: engines are built
with ``build_serialized_network``, the workspace is a memory-pool limit, dynamic batch needs an
optimization profile, and INT8 comes from Q/DQ nodes in the ONNX graph (explicit quantization).

NOTE: this module has not been exercised on a GPU in this project's CI (no CUDA machine); its
tests are marked ``tensorrt`` and skip without one.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable

from mlserve.errors import UsageError
from mlserve.inputs import InputSpec
from mlserve.progress import NULL_PROGRESS, Progress

WORKSPACE_BYTES = 2 << 30


def tensorrt_unavailable_reason() -> str | None:
    """None when TensorRT 10+ and a CUDA device are usable here, else why not (one line)."""
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError:
        return "TensorRT is not installed (pip install 'mlserve[tensorrt]' on a machine with an NVIDIA GPU)"
    major = int(str(getattr(trt, "__version__", "0")).split(".")[0] or 0)
    if major < 10:
        return f"TensorRT {trt.__version__} is too old: 10 or newer is needed"
    try:
        torch = importlib.import_module("torch")
        if not torch.cuda.is_available():
            return "no CUDA device is visible (TensorRT engines need an NVIDIA GPU)"
    except ImportError:
        return "TensorRT engines are run through torch CUDA buffers, and torch is not installed"
    return None


def build_engine(onnx_path: Path, out: Path, *, precision: str, specs: list[InputSpec], progress: Progress = NULL_PROGRESS, max_batch: int = 64) -> dict[str, Any]:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UsageError(f"TensorRT cannot parse the ONNX model: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        # TensorRT enables TF32 by default on Ampere and later: a "fp32" engine would not be FP32
        config.clear_flag(trt.BuilderFlag.TF32)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # scales come from the Q/DQ nodes
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for spec in specs:
        if spec.dynamic_batch:
            opt = spec.concrete_shape(1)
            profile.set_shape(spec.name, min=spec.concrete_shape(1), opt=opt, max=spec.concrete_shape(max_batch))
    config.add_optimization_profile(profile)
    with progress.task(f"building TensorRT {precision} engine"):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UsageError(f"TensorRT could not build a {precision} engine for this model")
    out.write_bytes(bytes(serialized))
    return {
        "variant": f"trt-{precision}",
        "tool": f"tensorrt {trt.__version__}",
        "workspace_bytes": WORKSPACE_BYTES,
        "profile": {"min_batch": 1, "opt_batch": 1, "max_batch": max_batch},
    }


def engine_runner(engine_path: Path, output_names: list[str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A callable that runs a serialized engine on numpy feeds (through torch CUDA tensors)."""
    import numpy as np
    import tensorrt as trt
    import torch

    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    context = engine.create_execution_context()
    stream = torch.cuda.Stream()

    def run(feeds: dict[str, Any]) -> dict[str, Any]:
        keep = []
        for name, array in feeds.items():
            tensor = torch.from_numpy(np.ascontiguousarray(array)).cuda()
            keep.append(tensor)
            context.set_input_shape(name, tuple(array.shape))
            context.set_tensor_address(name, tensor.data_ptr())
        results = {}
        for name in output_names:
            shape = tuple(context.get_tensor_shape(name))
            dtype = torch.from_numpy(np.zeros(0, dtype=trt.nptype(engine.get_tensor_dtype(name)))).dtype
            tensor = torch.empty(shape, dtype=dtype, device="cuda")
            context.set_tensor_address(name, tensor.data_ptr())
            results[name] = tensor
        context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return {name: t.cpu().numpy() for name, t in results.items()}

    return run

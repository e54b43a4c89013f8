"""Backends that run a model: a session is built once, outside the timed region, then called.

``make_runner(backend, model, inputs)`` returns a :class:`Runner` whose ``call()`` runs one inference
on the prepared inputs. Every backend receives the same arrays from :func:`make_inputs`, so their
figures are comparable. Backends that need hardware we do not have raise
:class:`~mlserve.errors.CapabilityUnavailableError` (exit code 7) before doing any work.
"""

from __future__ import annotations

import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from pydantic import BaseModel

from mlserve._deps import require
from mlserve.errors import CapabilityUnavailableError, NotFoundError, UsageError

BACKENDS: dict[str, str] = {
    "ort-cpu": "ONNX Runtime, CPUExecutionProvider",
    "ort-cuda": "ONNX Runtime, CUDAExecutionProvider",
    "ort-trt": "ONNX Runtime, TensorrtExecutionProvider",
    "tensorrt": "a TensorRT engine built from the ONNX file (TensorRT 10+)",
    "torch": "PyTorch eager (TorchScript .pt, torch.export .pt2 or an nn.Module)",
    "torch-compile": "torch.compile of the same module (compiled before timing)",
}
ONNX_BACKENDS = ("ort-cpu", "ort-cuda", "ort-trt", "tensorrt")
TORCH_BACKENDS = ("torch", "torch-compile")
ENGINE_BACKENDS = ("tensorrt",)
ENGINE_SUFFIXES = (".engine", ".plan")

DTYPES: dict[str, str] = {
    "float32": "float32", "float": "float32", "fp32": "float32",
    "float16": "float16", "half": "float16", "fp16": "float16",
    "float64": "float64", "double": "float64",
    "int64": "int64", "int32": "int32", "int16": "int16", "int8": "int8", "uint8": "uint8",
    "bool": "bool",
}
_ONNX_ELEM = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64"}


class InputSpec(BaseModel):
    """A model input: ``shape`` entries are ints, or None/a name for a dynamic dimension."""

    name: str
    shape: list[int | str | None]
    dtype: str


def parse_input_override(text: str) -> InputSpec:
    """``name:1x3x224x224:float32`` (dtype optional, default float32) -> InputSpec.

    ``N`` as the first dimension (``x:Nx32``) stands for the batch size of each run, as in ``optimize --input``."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise UsageError(f"bad --input {text!r}: expected NAME:DIMS[:DTYPE], e.g. input:1x3x224x224:float32")
    name, dims = parts[0], parts[1]
    dtype = DTYPES.get(parts[2].lower()) if len(parts) == 3 else "float32"
    if dtype is None:
        raise UsageError(f"bad --input {text!r}: unknown dtype {parts[2]!r} (one of {', '.join(sorted(set(DTYPES.values())))})")
    if not re.fullmatch(r"(\d+|N)(x\d+)*", dims):
        if re.fullmatch(r"(\d+|N)(x(\d+|N))*", dims):
            raise UsageError(f"bad --input {text!r}: only the first (batch) dimension may be N; give the others as numbers")
        raise UsageError(f"bad --input {text!r}: dimensions must be positive integers joined by 'x' (the first may be N"
                         " for the batch size), e.g. 1x3x224x224 or Nx3x224x224")
    shape: list[int | str | None] = [None if d == "N" else int(d) for d in dims.split("x")]
    if any(isinstance(d, int) and d <= 0 for d in shape):
        raise UsageError(f"bad --input {text!r}: dimensions must be positive")
    return InputSpec(name=name, shape=shape, dtype=dtype)


def onnx_input_specs(path: Path) -> list[InputSpec]:
    """The graph inputs an ONNX file declares (initializers excluded), without loading its weights."""
    onnx = require("onnx", purpose="reading ONNX input shapes")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError and friends
        raise UsageError(f"{path} is not a readable ONNX model: {exc}") from exc
    initializers = {init.name for init in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dtype = _ONNX_ELEM.get(tensor.elem_type)
        if dtype is None:
            raise UsageError(f"{path}: input {value.name!r} has an element type mlserve cannot generate data for ({tensor.elem_type})")
        shape: list[int | str | None] = []
        for dim in tensor.shape.dim:
            if dim.HasField("dim_value") and dim.dim_value > 0:
                shape.append(int(dim.dim_value))
            else:
                shape.append(dim.dim_param or None)
        specs.append(InputSpec(name=value.name, shape=shape, dtype=dtype))
    return specs


def resolve_specs(declared: list[InputSpec], overrides: list[InputSpec]) -> list[InputSpec]:
    """Declared inputs with ``--input`` overrides applied (an override may also name a new input)."""
    by_name = {o.name: o for o in overrides}
    out = [by_name.pop(spec.name, spec) for spec in declared]
    if declared and by_name:
        raise UsageError(
            f"--input names {', '.join(sorted(by_name))} but the model's inputs are {', '.join(s.name for s in declared)}"
        )
    return out + list(by_name.values())


def concrete_shape(spec: InputSpec, batch_size: int | None) -> tuple[int, ...]:
    """The shape to generate: a dynamic first dimension becomes the batch size; others must be known."""
    shape: list[int] = []
    for i, dim in enumerate(spec.shape):
        if isinstance(dim, int):
            if i == 0 and batch_size is not None and dim != batch_size and len(spec.shape) > 1:
                raise UsageError(
                    f"input {spec.name!r} has a fixed batch dimension of {dim}; cannot run batch size {batch_size}"
                    f" (use --batch-size {dim} or export the model with a dynamic batch)"
                )
            shape.append(dim)
        elif i == 0:
            shape.append(batch_size or 1)
        else:
            example = "x".join(str(d) if isinstance(d, int) else "N" if j == 0 else f"<{d or f'dim{j}'}>" for j, d in enumerate(spec.shape))
            raise UsageError(
                f"input {spec.name!r} has a dynamic dimension {i} ({dim or '?'}); give its size with"
                f" --input {spec.name}:{example}:{spec.dtype}, a number in place of each <...> (N: the batch size)"
            )
    return tuple(shape)


def make_inputs(specs: list[InputSpec], batch_size: int | None, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random arrays for ``specs``: floats ~ N(0, 1); integers in {0, 1} (valid ids and masks)."""
    if not specs:
        raise UsageError("the model declares no inputs; describe them with --input NAME:DIMS:DTYPE")
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = concrete_shape(spec, batch_size)
        if spec.dtype.startswith("float"):
            arrays[spec.name] = rng.standard_normal(shape, dtype=np.float32).astype(spec.dtype)
        elif spec.dtype == "bool":
            arrays[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            arrays[spec.name] = rng.integers(0, 2, size=shape).astype(spec.dtype)
    return arrays


@dataclass
class Runner:
    """One ready-to-call inference: ``call()`` is what the harness times."""

    backend: str
    call: Callable[[], object]
    provider: str
    threads: int | None
    details: dict[str, Any] = field(default_factory=dict)
    close: Callable[[], None] = lambda: None


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}: choose from {', '.join(BACKENDS)}")


def _ort_providers() -> list[str]:
    ort = require("onnxruntime", purpose="ONNX Runtime backends")
    return list(ort.get_available_providers())


def backend_available(backend: str) -> tuple[bool, str]:
    """Whether ``backend`` can run here, and why not."""
    _check_backend(backend)
    try:
        if backend == "ort-cpu":
            ok = "CPUExecutionProvider" in _ort_providers()
            return ok, "" if ok else "onnxruntime has no CPUExecutionProvider"
        if backend == "ort-cuda":
            ok = "CUDAExecutionProvider" in _ort_providers()
            return ok, "" if ok else "onnxruntime has no CUDAExecutionProvider here (needs an NVIDIA GPU and onnxruntime-gpu)"
        if backend == "ort-trt":
            ok = "TensorrtExecutionProvider" in _ort_providers()
            return ok, "" if ok else "onnxruntime has no TensorrtExecutionProvider here (needs a GPU, TensorRT and onnxruntime-gpu)"
        if backend == "tensorrt":
            try:
                import tensorrt  # noqa: F401
            except ImportError:
                return False, "tensorrt is not installed (pip install 'mlserve[tensorrt]'; needs an NVIDIA GPU)"
            torch = require("torch", purpose="CUDA buffers for TensorRT")
            ok = bool(torch.cuda.is_available())
            return ok, "" if ok else "no CUDA device is visible to PyTorch"
        require("torch", purpose=f"the {backend} backend")
        return True, ""
    except Exception as exc:  # noqa: BLE001 - a missing dependency means "not available"
        return False, str(exc)


def _unavailable(backend: str, why: str) -> CapabilityUnavailableError:
    return CapabilityUnavailableError(f"backend {backend} is not available on this machine: {why}")


def make_runner(backend: str, model: Any, inputs: dict[str, np.ndarray], *, threads: int | None = None) -> Runner:
    """Build the session for ``backend`` once and return a runner calling it on ``inputs``.

    ``model`` is a path to an ONNX file for the ort-*/tensorrt backends, and a TorchScript ``.pt``,
    a ``torch.export`` ``.pt2`` or an ``nn.Module`` for torch/torch-compile (inputs passed
    positionally in the order of ``inputs``). ``threads`` sets intra-op threads (None: the library's default).
    """
    _check_backend(backend)
    ok, why = backend_available(backend)
    if not ok:
        raise _unavailable(backend, why)
    if isinstance(model, (str, Path)):
        model = Path(model)
        if not model.exists():
            raise NotFoundError(f"model file not found: {model}")
    if backend in ("ort-cpu", "ort-cuda", "ort-trt"):
        return _ort_runner(backend, model, inputs, threads)
    if backend == "tensorrt":
        return _tensorrt_runner(model, inputs)
    return _torch_runner(backend, model, inputs, threads)


_ORT_PROVIDER = {"ort-cpu": "CPUExecutionProvider", "ort-cuda": "CUDAExecutionProvider", "ort-trt": "TensorrtExecutionProvider"}


def _ort_runner(backend: str, model: Any, inputs: dict[str, np.ndarray], threads: int | None) -> Runner:
    ort = require("onnxruntime", purpose="ONNX Runtime backends")
    if not isinstance(model, Path):
        raise UsageError(f"backend {backend} needs an ONNX file, got {type(model).__name__}")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    provider = _ORT_PROVIDER[backend]
    providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
    try:
        session = ort.InferenceSession(str(model), sess_options=options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types (Fail, InvalidGraph ...)
        raise UsageError(f"ONNX Runtime cannot load {model}: {str(exc).splitlines()[0]}") from exc
    names = {i.name for i in session.get_inputs()}
    missing = names - set(inputs)
    if missing:
        raise UsageError(f"{model} needs inputs {', '.join(sorted(missing))} that were not provided")
    feed = {k: v for k, v in inputs.items() if k in names}
    run = session.run
    try:
        run(None, feed)  # fail here, not in the timed loop, if shapes or dtypes do not fit
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"{model} cannot run on the generated inputs: {str(exc).splitlines()[0]} (set shapes with --input)") from exc
    used = session.get_providers()[0]
    return Runner(
        backend=backend,
        call=lambda: run(None, feed),
        provider=used,
        threads=threads,
        details={"ort_version": ort.__version__, "providers": session.get_providers()},
    )


def _load_torch_module(torch: Any, model: Any) -> Any:
    if not isinstance(model, Path):
        if isinstance(model, torch.nn.Module):
            return model.eval()
        raise UsageError(f"torch backends need a TorchScript/.pt2 file or an nn.Module, got {type(model).__name__}")
    if model.suffix == ".onnx":
        raise UsageError(f"{model} is an ONNX file: use an ONNX backend (ort-cpu, ort-cuda, ort-trt, tensorrt)")
    if model.suffix == ".pt2":
        try:
            return torch.export.load(str(model)).module()
        except Exception as exc:  # noqa: BLE001
            raise UsageError(f"cannot load {model} as a torch.export program: {str(exc).splitlines()[0]}") from exc
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated upstream but still what users have
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(model), map_location="cpu").eval()
    except Exception as exc:  # noqa: BLE001
        raise UsageError(
            f"cannot load {model} as TorchScript: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            " (pickled nn.Modules are not loaded: save with torch.jit.save or torch.export.save)"
        ) from exc


def _torch_runner(backend: str, model: Any, inputs: dict[str, np.ndarray], threads: int | None) -> Runner:
    torch = require("torch", purpose=f"the {backend} backend")
    if threads:
        torch.set_num_threads(threads)
    module = _load_torch_module(torch, model)
    args = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in inputs.values())
    if backend == "torch-compile":
        if shutil.which("cc") is None and shutil.which("gcc") is None:
            raise _unavailable(backend, "torch.compile needs a C compiler (cc/gcc) on this machine")
        with warnings.catch_warnings():  # importing dynamo warns about torch's own deprecated APIs
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.compile(module)
    inference_mode = torch.inference_mode

    def call() -> object:
        with inference_mode():
            return module(*args)

    try:
        with warnings.catch_warnings():  # likewise while compiling
            warnings.simplefilter("ignore", DeprecationWarning)
            call()  # the first call compiles (torch-compile) and checks the inputs fit
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"the torch model cannot run on the generated inputs: {str(exc).splitlines()[0]} (set shapes with --input)") from exc
    return Runner(
        backend=backend,
        call=call,
        provider="cpu",
        threads=threads or torch.get_num_threads(),
        details={"torch_version": torch.__version__},
    )


def _tensorrt_runner(model: Any, inputs: dict[str, np.ndarray]) -> Runner:  # pragma: no cover - needs a GPU
    """Build an engine from the ONNX file with the TensorRT 10 API; buffers live on the GPU via torch."""
    trt = require("tensorrt", purpose="the tensorrt backend")
    torch = require("torch", purpose="CUDA buffers for TensorRT")
    if not isinstance(model, Path):
        raise UsageError("backend tensorrt needs an ONNX file or a serialized engine (.engine, .plan)")
    logger = trt.Logger(trt.Logger.ERROR)
    if model.suffix.lower() in ENGINE_SUFFIXES:  # built by `mlserve optimize --variant trt-*` or trtexec
        engine = trt.Runtime(logger).deserialize_cuda_engine(model.read_bytes())
        if engine is None:
            raise UsageError(f"TensorRT cannot load the engine {model} (built by another TensorRT version or for another GPU?)")
        return _engine_runner(trt, torch, engine, inputs)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UsageError(f"TensorRT cannot parse {model}: {errors}")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = tuple(inputs[tensor.name].shape)
        profile.set_shape(tensor.name, shape, shape, shape)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UsageError(f"TensorRT could not build an engine for {model}")
    engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
    return _engine_runner(trt, torch, engine, inputs)


def _engine_runner(trt: Any, torch: Any, engine: Any, inputs: dict[str, np.ndarray]) -> Runner:  # pragma: no cover - needs a GPU
    context = engine.create_execution_context()
    missing = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)
               if engine.get_tensor_mode(engine.get_tensor_name(i)) == trt.TensorIOMode.INPUT and engine.get_tensor_name(i) not in inputs]
    if missing:
        raise UsageError(f"the TensorRT engine needs inputs {', '.join(missing)} that were not provided (describe them with --input)")
    buffers = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            buffers[name] = torch.from_numpy(np.ascontiguousarray(inputs[name])).cuda()
            context.set_input_shape(name, tuple(inputs[name].shape))
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
            shape = tuple(context.get_tensor_shape(name))
            dtype = torch.from_numpy(np.empty(0, dtype=trt.nptype(engine.get_tensor_dtype(name)))).dtype
            buffers[name] = torch.empty(shape, dtype=dtype, device="cuda")
    for name, buf in buffers.items():
        context.set_tensor_address(name, buf.data_ptr())
    if not context.all_binding_shapes_specified:
        raise UsageError("the TensorRT engine does not accept the input shapes given (outside its optimization profile?)")
    stream = torch.cuda.Stream()
    outputs = [buf for name, buf in buffers.items() if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT]

    def call() -> object:  # returns the output buffers (on the GPU); copying them back is not timed
        context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return outputs

    call()
    return Runner(
        backend="tensorrt",
        call=call,
        provider=f"TensorRT {trt.__version__}",
        threads=None,
        details={"tensorrt_version": trt.__version__, "gpu": torch.cuda.get_device_name(0)},
    )


def engine_input_specs(path: Path) -> list[InputSpec]:  # pragma: no cover - needs a GPU
    """The inputs a serialized TensorRT engine declares (dynamic dimensions as None)."""
    trt = require("tensorrt", purpose="reading TensorRT engines")
    engine = trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise UsageError(f"TensorRT cannot load the engine {path} (built by another TensorRT version or for another GPU?)")
    specs = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) != trt.TensorIOMode.INPUT:
            continue
        dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name
        shape: list[int | str | None] = [int(d) if d >= 0 else None for d in engine.get_tensor_shape(name)]
        specs.append(InputSpec(name=name, shape=shape, dtype=dtype))
    return specs

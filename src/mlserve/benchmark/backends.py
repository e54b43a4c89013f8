"""Backends that run a model: a session is built once, outside the timed region, then called.

Each backend is one class, registered by name in :data:`REGISTRY` (``@register``): it says which model
kinds it runs, whether it can run here, and builds a :class:`Runner` whose ``call()`` runs one
inference on the prepared inputs. Adding a backend is one class in this module. Every backend
receives the same arrays (``mlserve.inputs.make_feeds``), so their figures are comparable. Backends
that need hardware we do not have raise :class:`~mlserve.errors.CapabilityUnavailableError` (exit
code 7) before doing any work.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from mlserve._deps import require
from mlserve.errors import CapabilityUnavailableError, NotFoundError, UsageError
from mlserve.inputs import InputSpec, make_feeds, onnx_inputs

ENGINE_SUFFIXES = (".engine", ".plan")


def onnx_input_specs(path: Path) -> list[InputSpec]:
    """The graph inputs an ONNX file declares (initializers excluded), without loading its weights."""
    onnx = require("onnx", purpose="reading ONNX input shapes")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError and friends
        raise UsageError(f"{path} is not a readable ONNX model: {exc}") from exc
    specs = onnx_inputs(model)
    for spec in specs:
        if spec.dtype.startswith("onnx-type"):
            raise UsageError(f"{path}: input {spec.name!r} has an element type mlserve cannot generate data for ({spec.dtype})")
    return specs


def make_inputs(specs: list[InputSpec], batch_size: int | None, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded example arrays for ``specs`` (``mlserve.inputs.make_feeds``): a dynamic batch becomes ``batch_size``."""
    if not specs:
        raise UsageError("the model declares no inputs; describe them with --input NAME:DIMS:DTYPE")
    return make_feeds(specs, batch=batch_size, seed=seed)


@dataclass
class Runner:
    """One ready-to-call inference: ``call()`` is what the harness times."""

    backend: str
    call: Callable[[], object]
    provider: str
    threads: int | None
    details: dict[str, Any] = field(default_factory=dict)
    close: Callable[[], None] = lambda: None


class Backend:
    """One way of running a model. Subclasses set the class attributes and implement ``available`` and ``runner``."""

    name: ClassVar[str]
    description: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]] = ()
    """Model kinds it runs: onnx, torchscript, torch-export, module, tensorrt-engine."""

    def available(self) -> tuple[bool, str]:
        return True, ""

    def runner(self, model: Any, inputs: dict[str, np.ndarray], threads: int | None) -> Runner:
        raise NotImplementedError


REGISTRY: dict[str, Backend] = {}
"""Backend name -> implementation, in the order of registration (the first for a kind is its default)."""


def register(cls: type[Backend]) -> type[Backend]:
    REGISTRY[cls.name] = cls()
    return cls


def get_backend(name: str) -> Backend:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown backend {name!r}: choose from {', '.join(REGISTRY)}") from None


def backends_for_kind(kind: str) -> list[str]:
    """The backends that run this kind of model file; the first is the default."""
    return [name for name, b in REGISTRY.items() if kind in b.kinds]


def backend_available(backend: str) -> tuple[bool, str]:
    """Whether ``backend`` can run here, and why not."""
    impl = get_backend(backend)
    try:
        return impl.available()
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
    impl = get_backend(backend)
    ok, why = backend_available(backend)
    if not ok:
        raise _unavailable(backend, why)
    if isinstance(model, (str, Path)):
        model = Path(model)
        if not model.exists():
            raise NotFoundError(f"model file not found: {model}")
    return impl.runner(model, inputs, threads)


def _ort_providers() -> list[str]:
    ort = require("onnxruntime", purpose="ONNX Runtime backends")
    return list(ort.get_available_providers())


class _OrtBackend(Backend):
    provider: ClassVar[str]
    kinds = ("onnx",)
    missing: ClassVar[str]

    def available(self) -> tuple[bool, str]:
        ok = self.provider in _ort_providers()
        return ok, "" if ok else self.missing

    def runner(self, model: Any, inputs: dict[str, np.ndarray], threads: int | None) -> Runner:
        return _ort_runner(self.name, self.provider, model, inputs, threads)


@register
class OrtCpu(_OrtBackend):
    name = "ort-cpu"
    description = "ONNX Runtime, CPUExecutionProvider"
    provider = "CPUExecutionProvider"
    missing = "onnxruntime has no CPUExecutionProvider"


@register
class OrtCuda(_OrtBackend):
    name = "ort-cuda"
    description = "ONNX Runtime, CUDAExecutionProvider"
    provider = "CUDAExecutionProvider"
    missing = "onnxruntime has no CUDAExecutionProvider here (needs an NVIDIA GPU and onnxruntime-gpu)"


@register
class OrtTrt(_OrtBackend):
    name = "ort-trt"
    description = "ONNX Runtime, TensorrtExecutionProvider"
    provider = "TensorrtExecutionProvider"
    missing = "onnxruntime has no TensorrtExecutionProvider here (needs a GPU, TensorRT and onnxruntime-gpu)"


@register
class TensorRT(Backend):
    name = "tensorrt"
    description = "a TensorRT engine built from the ONNX file (TensorRT 10+)"
    kinds = ("onnx", "tensorrt-engine")

    def available(self) -> tuple[bool, str]:
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return False, "tensorrt is not installed (pip install 'mlserve[tensorrt]'; needs an NVIDIA GPU)"
        torch = require("torch", purpose="CUDA buffers for TensorRT")
        ok = bool(torch.cuda.is_available())
        return ok, "" if ok else "no CUDA device is visible to PyTorch"

    def runner(self, model: Any, inputs: dict[str, np.ndarray], threads: int | None) -> Runner:
        return _tensorrt_runner(model, inputs)


class _TorchBackend(Backend):
    kinds = ("torchscript", "torch-export", "module")
    compile: ClassVar[bool] = False

    def available(self) -> tuple[bool, str]:
        require("torch", purpose=f"the {self.name} backend")
        return True, ""

    def runner(self, model: Any, inputs: dict[str, np.ndarray], threads: int | None) -> Runner:
        return _torch_runner(self.name, model, inputs, threads, compile=self.compile)


@register
class Torch(_TorchBackend):
    name = "torch"
    description = "PyTorch eager (TorchScript .pt, torch.export .pt2 or an nn.Module)"


@register
class TorchCompile(_TorchBackend):
    name = "torch-compile"
    description = "torch.compile of the same module (compiled before timing)"
    compile = True


BACKENDS: dict[str, str] = {name: b.description for name, b in REGISTRY.items()}
"""Name -> description of every registered backend (for help texts)."""


def _ort_runner(backend: str, provider: str, model: Any, inputs: dict[str, np.ndarray], threads: int | None) -> Runner:
    ort = require("onnxruntime", purpose="ONNX Runtime backends")
    if not isinstance(model, Path):
        raise UsageError(f"backend {backend} needs an ONNX file, got {type(model).__name__}")
    options = ort.SessionOptions()
    options.log_severity_level = 4  # failures come back as exceptions; ORT's own log lines stay off stderr
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
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


def _torch_runner(backend: str, model: Any, inputs: dict[str, np.ndarray], threads: int | None, *, compile: bool = False) -> Runner:
    torch = require("torch", purpose=f"the {backend} backend")
    if threads:
        torch.set_num_threads(threads)
    module = _load_torch_module(torch, model)
    args = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in inputs.values())
    if compile:
        if shutil.which("cc") is None and shutil.which("gcc") is None:
            raise _unavailable(backend, "torch.compile needs a C compiler (cc/gcc) on this machine")
        with warnings.catch_warnings():  # importing dynamo warns about torch's own deprecated APIs
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.compile(module)
    inference_mode = torch.inference_mode
    set_threads, wanted = torch.set_num_threads, threads or torch.get_num_threads()

    def call() -> object:
        set_threads(wanted)  # process-wide: runs interleaved with other torch runs keep their own count
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

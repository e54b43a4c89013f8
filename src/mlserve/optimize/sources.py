"""Load what the user points at (a file, a factory, a registry reference) into one shape.

A :class:`LoadedSource` knows its inputs, can run the *original* model (PyTorch, scikit-learn or
the ONNX file as given) on numpy feeds for parity, can be timed as the user would run it today,
and can write itself as ONNX.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from mlserve._deps import require
from mlserve.errors import MlserveError, NotFoundError, UsageError
from mlserve.optimize.specs import InputSpec
from mlserve.progress import NULL_PROGRESS, Progress

PICKLE_SUFFIXES = {".joblib", ".pkl", ".pickle"}
TORCHSCRIPT_SUFFIXES = {".pt", ".pth", ".ts", ".torchscript", ".jit"}
MODEL_SUFFIXES = {".onnx", ".pt2", *PICKLE_SUFFIXES, *TORCHSCRIPT_SUFFIXES}
_FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

Feeds = dict[str, Any]  # input name -> numpy array


@dataclass
class LoadedSource:
    kind: str
    location: str
    inputs: list[InputSpec]
    output_names: list[str]
    reference: Callable[[Feeds], dict[str, Any]]
    """Runs the original model on numpy feeds; returns output name -> numpy array."""
    make_timed_call: Callable[[Feeds], Callable[[], Any]]
    """Returns a zero-argument call that runs the original model as its users do (for latency)."""
    write_onnx: Callable[[Path, Progress], str]
    """Writes the model as ONNX to the path; returns the exporter that produced it."""
    path: Optional[Path] = None
    sha256: Optional[str] = None
    registry_model: Optional[str] = None
    registry_version: Optional[str] = None
    warnings: list[str] = field(default_factory=list)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    if path.is_dir():
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(item.relative_to(path)).encode())
            digest.update(sha256_of(item).encode())
        return digest.hexdigest()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_source(
    location: str,
    *,
    inputs: list[InputSpec] | None = None,
    trust_pickle: bool = False,
    registry_root: Path | None = None,
    lock_timeout: float | None = None,
    progress: Progress = NULL_PROGRESS,
) -> LoadedSource:
    """Resolve ``location``: an existing path is a file; else a ``module:function`` factory; else a registry ref."""
    user_inputs = list(inputs or [])
    path = Path(location).expanduser()
    if path.exists():
        return _load_path(path, location, user_inputs, trust_pickle, progress)
    ref = _parse_registry_ref(location)
    # NAME:VERSION reads like module:function too: a model that exists in the registry wins
    in_registry = ref is not None and _registry_has_model(ref.model, registry_root)
    if in_registry:
        return _load_registry(location, user_inputs, trust_pickle, registry_root, lock_timeout, progress)
    if _FACTORY_RE.match(location) and _factory_module_exists(location.split(":")[0]):
        registry_note = (
            f"; it is not a registry reference either (no model {ref.model!r} in the registry at {_registry_root(registry_root)})"
            if ref is not None else ""
        )
        return _load_factory(location, user_inputs, progress, registry_note=registry_note)
    if path.suffix.lower() in MODEL_SUFFIXES or os.sep in location:
        raise NotFoundError(f"model file {location} does not exist")
    if ref is not None:
        return _load_registry(location, user_inputs, trust_pickle, registry_root, lock_timeout, progress)
    raise NotFoundError(
        f"{location!r} is not an existing file, an importable module:function factory, or a registry reference",
        hint="check the path; registry references look like NAME:VERSION or NAME@STAGE",
    )


# --- registry -------------------------------------------------------------------------------


def _parse_registry_ref(text: str) -> Any:
    try:
        from mlserve.registry import parse_ref
    except ImportError:
        return None
    return parse_ref(text)


def _registry_root(registry_root: Path | None) -> Path:
    from mlserve.registry import Registry

    return Registry(root=registry_root).root


def _registry_has_model(name: str, registry_root: Path | None) -> bool:
    """Cheap: the model's index file exists (nothing is locked, loaded or created)."""
    try:
        from mlserve.registry import Registry

        return (Registry(root=registry_root).model_dir(name) / "model.json").is_file()
    except (MlserveError, OSError):
        return False


def _load_registry(location, user_inputs, trust_pickle, registry_root, lock_timeout, progress) -> LoadedSource:
    from mlserve.registry import Registry

    resolved = Registry(root=registry_root, lock_timeout=lock_timeout).resolve(location)
    artifact = Path(resolved.artifact_path)
    if artifact.is_dir():
        found = sorted(p for p in artifact.rglob("*") if p.is_file() and p.suffix.lower() in MODEL_SUFFIXES)
        if len(found) != 1:
            raise UsageError(
                f"{location} resolves to a directory with {len(found)} model files; cannot tell which one to optimize",
                hint=f"optimize the file directly: {artifact}",
            )
        artifact = found[0]
    source = _load_path(artifact, location, user_inputs, trust_pickle, progress)
    source.registry_model, source.registry_version = resolved.model, resolved.version
    source.sha256 = resolved.sha256
    return source


# --- files ----------------------------------------------------------------------------------


def _load_path(path: Path, location: str, user_inputs: list[InputSpec], trust_pickle: bool, progress: Progress) -> LoadedSource:
    if path.is_dir():
        raise UsageError(f"{path} is a directory", hint="point at the model file inside it")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        source = _load_onnx(path, location, user_inputs)
    elif suffix in PICKLE_SUFFIXES:
        if not trust_pickle:
            raise UsageError(
                f"refusing to load {path.name}: unpickling runs any code the file contains",
                hint="pass --trust-pickle only if you trust where the file comes from",
            )
        source = _load_sklearn(path, location)
    elif suffix == ".pt2":
        source = _load_torch_export(path, location, user_inputs)
    elif suffix in TORCHSCRIPT_SUFFIXES:
        source = _load_torchscript(path, location, user_inputs)
    else:
        raise UsageError(
            f"cannot tell what kind of model {path.name} is from its suffix {suffix or '(none)'}",
            hint="use .onnx, .pt2 (torch.export), .pt/.ts (TorchScript), .joblib/.pkl (scikit-learn)",
        )
    source.path = path
    source.sha256 = sha256_of(path)
    return source


def _numpy_dtype_of_onnx(elem_type: int) -> str:
    onnx = require("onnx")
    import numpy as np

    return str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)))


def _load_onnx(path: Path, location: str, user_inputs: list[InputSpec]) -> LoadedSource:
    onnx = require("onnx", purpose="reading ONNX models")
    ort = require("onnxruntime", purpose="running ONNX models")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure means the file is not ONNX
        raise UsageError(f"cannot read {path.name} as an ONNX model: {exc}") from None
    initializers = {init.name for init in model.graph.initializer}
    by_name = {spec.name: spec for spec in user_inputs}
    specs: list[InputSpec] = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim]
        declared = InputSpec(name=value.name, shape=dims, dtype=_numpy_dtype_of_onnx(tensor.elem_type), dynamic_batch=bool(dims) and dims[0] is None)
        if value.name in by_name:
            given = by_name.pop(value.name)
            if len(given.shape) != len(dims):
                raise UsageError(f"--input {given.describe()} has rank {len(given.shape)} but the model's input has rank {len(dims)}")
            merged = [g if d is None else d for g, d in zip(given.shape, dims)]
            declared = InputSpec(name=value.name, shape=merged, dtype=declared.dtype, dynamic_batch=declared.dynamic_batch and given.dynamic_batch)
        specs.append(declared)
    if by_name:
        raise UsageError(f"--input names {sorted(by_name)} are not inputs of {path.name}", hint=f"its inputs: {[s.name for s in specs]}")
    not_tensors = [(o.name, o.type.WhichOneof("value")) for o in model.graph.output if o.type.WhichOneof("value") != "tensor_type"]
    if not_tensors:
        kinds = ", ".join(f"{name!r} ({(kind or 'unknown').replace('_type', '')})" for name, kind in not_tensors)
        raise UsageError(
            f"{path.name} has outputs that are not tensors: {kinds}; parity and benchmarks compare tensors only",
            hint="a scikit-learn classifier converted with a ZipMap: re-export with skl2onnx options={id(model): {'zipmap': False}} "
            "(to_onnx(..., options={'zipmap': False})), or optimize the .joblib/.pkl itself with --trust-pickle",
        )
    outputs = [o.name for o in model.graph.output]
    session_box: dict[str, Any] = {}

    def session() -> Any:
        if "s" not in session_box:
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            options.log_severity_level = 3
            try:
                session_box["s"] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001 - ORT reports bad models with its own exception types
                raise UsageError(f"ONNX Runtime cannot load {path.name}: {str(exc).splitlines()[0][:300]}") from None
        return session_box["s"]

    def reference(feeds: Feeds) -> dict[str, Any]:
        return dict(zip(outputs, session().run(outputs, feeds)))

    def timed(feeds: Feeds) -> Callable[[], Any]:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda: sess.run(None, feeds)

    def write_onnx(target: Path, progress: Progress) -> str:
        from mlserve.optimize.export import check_and_infer

        # one self-contained file (weights kept in external .data files are pulled in)
        full = onnx.load(str(path))
        onnx.save(full, str(target))
        check_and_infer(target)
        return "none (ONNX source)"

    return LoadedSource("onnx", location, specs, outputs, reference, timed, write_onnx)


def _load_sklearn(path: Path, location: str) -> LoadedSource:
    joblib = require("joblib", purpose="loading scikit-learn models")
    require("sklearn", purpose="scikit-learn models")
    from sklearn.base import is_classifier

    try:
        model = joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - unpickling fails in many ways
        raise UsageError(f"cannot load {path.name} with joblib: {type(exc).__name__}: {exc}") from None
    if not hasattr(model, "predict"):
        raise UsageError(f"{path.name} holds a {type(model).__name__}, not a scikit-learn estimator")
    n_features = getattr(model, "n_features_in_", None)
    if n_features is None:
        raise UsageError(f"{type(model).__name__} in {path.name} is not fitted (no n_features_in_)")
    classifier = bool(is_classifier(model))
    spec = InputSpec(name="X", shape=[None, int(n_features)], dtype="float32", dynamic_batch=True)
    if not classifier:
        outputs = ["variable"]
    elif hasattr(model, "predict_proba"):
        outputs = ["label", "probabilities"]
    elif hasattr(model, "decision_function"):
        outputs = ["label", "scores"]
    else:
        outputs = ["label"]
    return _sklearn_source(model, location, spec, outputs, classifier)


# skl2onnx's output names (zipmap off) -> the reference's: matched by name, never by position
_SKL2ONNX_OUTPUTS = {"label": "label", "output_label": "label", "probabilities": "probabilities", "output_probability": "probabilities", "variable": "variable"}


def _sklearn_source(model: Any, location: str, spec: InputSpec, outputs: list[str], classifier: bool) -> LoadedSource:
    import numpy as np

    def reference(feeds: Feeds) -> dict[str, Any]:
        x = feeds[spec.name]
        if outputs == ["variable"]:
            return {"variable": np.asarray(model.predict(x), dtype=np.float32).reshape(len(x), -1)}
        result: dict[str, Any] = {"label": np.asarray(model.predict(x))}
        if "probabilities" in outputs:
            result["probabilities"] = np.asarray(model.predict_proba(x), dtype=np.float32)
        if "scores" in outputs:
            scores = np.asarray(model.decision_function(x), dtype=np.float32)
            if scores.ndim == 1:  # binary: one score per row, a column in the ONNX graph
                scores = scores.reshape(-1, 1)
            result["scores"] = scores
        return result

    def timed(feeds: Feeds) -> Callable[[], Any]:
        x = feeds[spec.name]
        method = model.predict_proba if classifier and hasattr(model, "predict_proba") else model.predict
        return lambda: method(x)

    def write_onnx(target: Path, progress: Progress) -> str:
        skl2onnx = require("skl2onnx", purpose="converting scikit-learn models to ONNX")
        from skl2onnx.common.data_types import FloatTensorType

        from mlserve.optimize._quiet import quiet

        def convert(options: Any) -> Any:
            return skl2onnx.convert_sklearn(
                model, initial_types=[(spec.name, FloatTensorType([None, spec.shape[1]]))], options=options, target_opset=17
            )

        with progress.task("converting with skl2onnx"), quiet() as log:
            try:
                if classifier:
                    try:
                        onx = convert({id(model): {"zipmap": False}})  # tensors, not a list of dicts
                    except Exception as exc:  # noqa: BLE001 - converters without the option (LinearSVC...) refuse it
                        if "zipmap" not in str(exc):
                            raise
                        onx = convert(None)
                else:
                    onx = convert(None)
            except Exception as exc:  # noqa: BLE001 - converter errors are diverse
                raise UsageError(f"skl2onnx cannot convert {type(model).__name__}: {exc} {log.tail()}".strip()) from None
        not_tensors = [o.name for o in onx.graph.output if o.type.WhichOneof("value") != "tensor_type"]
        if not_tensors:
            raise UsageError(f"skl2onnx converted {type(model).__name__} with non-tensor outputs {not_tensors}, which cannot be compared")
        # the second output of a classifier without predict_proba holds decision scores, whatever skl2onnx calls it
        wanted = {**_SKL2ONNX_OUTPUTS, **({"probabilities": "scores"} if "scores" in outputs else {})}
        renames = {o.name: wanted.get(o.name, o.name) for o in onx.graph.output}
        produced = [renames[o.name] for o in onx.graph.output]
        missing = [name for name in outputs if name not in produced]
        if missing:
            raise UsageError(
                f"skl2onnx converted {type(model).__name__} with outputs {[o.name for o in onx.graph.output]}; "
                f"missing {missing}, which the scikit-learn model computes"
            )
        for old, new in renames.items():
            if old == new:
                continue
            for o in onx.graph.output:
                if o.name == old:
                    o.name = new
            for node in onx.graph.node:
                node.output[:] = [new if n == old else n for n in node.output]
                node.input[:] = [new if n == old else n for n in node.input]
        target.write_bytes(onx.SerializeToString())
        return "skl2onnx"

    return LoadedSource("sklearn", location, [spec], outputs, reference, timed, write_onnx)


# --- torch ----------------------------------------------------------------------------------


def _torch_dtype(torch: Any, name: str) -> Any:
    return getattr(torch, {"bool": "bool"}.get(name, name))


def _factory_module_exists(module: str) -> bool:
    cwd = os.getcwd()
    if cwd not in sys.path:  # like uvicorn and gunicorn: factories are found relative to the working directory
        sys.path.insert(0, cwd)
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _load_factory(location: str, user_inputs: list[InputSpec], progress: Progress, *, registry_note: str = "") -> LoadedSource:
    torch = require("torch", purpose="PyTorch factories")
    module_name, func_name = location.split(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - the user's module failed to import
        raise UsageError(f"cannot import {module_name}: {type(exc).__name__}: {exc}") from None
    factory = getattr(module, func_name, None)
    if not callable(factory):
        raise NotFoundError(f"{location!r} is not a factory: module {module_name} has no callable {func_name!r}{registry_note}")
    try:
        made = factory()
    except Exception as exc:  # noqa: BLE001 - the user's factory failed: their error, not mlserve's
        raise UsageError(f"factory {location} raised {type(exc).__name__}: {str(exc).strip()[:300]}", hint="fix the factory (run it in Python to see the traceback)") from None
    if not (isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], torch.nn.Module)):
        raise UsageError(f"{location} must return (torch.nn.Module, example_inputs); it returned {type(made).__name__}")
    net, example = made
    if isinstance(example, torch.Tensor):
        example = (example,)
    if not isinstance(example, (tuple, list)) or not all(isinstance(t, torch.Tensor) for t in example):
        raise UsageError(f"{location}: example_inputs must be a tensor or a tuple of tensors")
    names = _forward_names(net, len(example))
    specs = _specs_from_examples(names, example, user_inputs)
    return _torch_source("factory", location, net, specs, list(example))


def _forward_names(net: Any, count: int) -> list[str]:
    try:
        params = [
            p.name
            for p in inspect.signature(net.forward).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"
        ]
    except (TypeError, ValueError):
        params = []
    if len(params) >= count:
        return params[:count]
    return [f"input_{i}" for i in range(count)]


def _specs_from_examples(names: list[str], example: list[Any], user_inputs: list[InputSpec]) -> list[InputSpec]:
    if user_inputs:
        if len(user_inputs) != len(example):
            raise UsageError(f"{len(user_inputs)} --input given but the model takes {len(example)} inputs")
        return user_inputs
    specs = []
    for name, tensor in zip(names, example):
        dims = list(tensor.shape)
        specs.append(InputSpec(name=name, shape=[int(d) for d in dims], dtype=str(tensor.dtype).replace("torch.", ""), dynamic_batch=bool(dims)))
    return specs


def _load_torchscript(path: Path, location: str, user_inputs: list[InputSpec]) -> LoadedSource:
    torch = require("torch", purpose="TorchScript models")
    from mlserve.optimize._quiet import quiet

    try:
        with quiet():  # torch.jit.load warns that TorchScript is deprecated
            net = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001
        raise UsageError(
            f"{path.name} is not a TorchScript archive ({type(exc).__name__})",
            hint="save with torch.jit.save, or torch.export.save to a .pt2 file; pickled modules are not loaded",
        ) from None
    if not user_inputs:
        raise UsageError(
            f"TorchScript file {path.name} does not declare its input shapes",
            hint="give each input with --input NAME:DIMS:DTYPE, e.g. --input x:1x3x64x64:float32",
        )
    return _torch_source("torchscript", location, net, user_inputs, None)


def _load_torch_export(path: Path, location: str, user_inputs: list[InputSpec]) -> LoadedSource:
    torch = require("torch", purpose="torch.export programs")
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"cannot load {path.name} with torch.export.load: {type(exc).__name__}: {exc}") from None
    example = None
    if getattr(program, "example_inputs", None):
        args, _kwargs = program.example_inputs
        example = list(args)
    names = [spec.arg.name for spec in program.graph_signature.input_specs if spec.kind.name == "USER_INPUT"]
    if user_inputs:
        specs = user_inputs
    elif example:
        specs = _specs_from_examples(names, example, [])
    else:
        raise UsageError(f"{path.name} stores no example inputs", hint="give each input with --input NAME:DIMS:DTYPE")
    return _torch_source("torch-export", location, program.module(), specs, example, program=program)


def _torch_source(kind: str, location: str, net: Any, specs: list[InputSpec], example: list[Any] | None, program: Any = None) -> LoadedSource:
    torch = require("torch")
    import numpy as np

    from mlserve.optimize.feeds import make_feeds

    if hasattr(net, "eval") and not isinstance(net, torch.fx.GraphModule):
        net.eval()

    def to_tensors(feeds: Feeds) -> list[Any]:
        return [torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in specs]

    def flatten(out: Any) -> list[Any]:
        if isinstance(out, torch.Tensor):
            return [out]
        if isinstance(out, (tuple, list)):
            return [t for item in out for t in flatten(item)]
        if isinstance(out, dict):
            return [t for key in sorted(out) for t in flatten(out[key])]
        raise UsageError(f"model output of type {type(out).__name__} is not supported (tensors, tuples, lists, dicts only)")

    probe = make_feeds(specs, batch=2, seed=0)
    with torch.inference_mode():
        try:
            count = len(flatten(net(*to_tensors(probe))))
        except MlserveError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's forward failed on the declared inputs
            shapes = ", ".join(s.describe() for s in specs)
            raise UsageError(
                f"the model fails on inputs {shapes} (probed at batch 2): {type(exc).__name__}: {str(exc)[:200]}",
                hint="if the model only takes a fixed batch or has no batch dimension, give its exact shapes with "
                     "--input NAME:1x32:float32 --static-batch") from None
    outputs = ["output"] if count == 1 else [f"output_{i}" for i in range(count)]

    def reference(feeds: Feeds) -> dict[str, Any]:
        with torch.inference_mode():
            result = flatten(net(*to_tensors(feeds)))
        return {name: t.detach().cpu().numpy() for name, t in zip(outputs, result)}

    def timed(feeds: Feeds) -> Callable[[], Any]:
        tensors = to_tensors(feeds)

        def call() -> Any:
            with torch.inference_mode():
                return net(*tensors)

        return call

    def write_onnx(target: Path, progress: Progress) -> str:
        from mlserve.optimize.export import export_torch

        return export_torch(net, specs, outputs, target, progress=progress, program=program, notes=notes)

    notes: list[str] = []
    return LoadedSource(kind, location, specs, outputs, reference, timed, write_onnx, warnings=notes)

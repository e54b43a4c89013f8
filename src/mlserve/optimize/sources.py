"""Load what the user points at (a file, a factory, a registry reference) into one shape.

A :class:`LoadedSource` knows its inputs, can run the *original* model (PyTorch, scikit-learn or
the ONNX file as given) on numpy feeds for parity, can be timed as the user would run it today,
and can write itself as ONNX.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from mlserve._deps import require
from mlserve.errors import MlserveError, NotFoundError, UsageError
from mlserve.inputs import InputSpec, onnx_inputs, resolve
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
    make_timed_call: Callable[[Feeds, int], Callable[[], Any]]
    """Returns a zero-argument call that runs the original model as its users do (for latency), with
    this many intra-op threads (torch.set_num_threads, ONNX Runtime's intra_op_num_threads)."""
    write_onnx: Callable[[Path, Progress], str]
    """Writes the model as ONNX to the path; returns the exporter that produced it."""
    path: Optional[Path] = None
    sha256: Optional[str] = None
    registry_model: Optional[str] = None
    registry_version: Optional[str] = None
    warnings: list[str] = field(default_factory=list)
    threads_apply: bool = True
    """False where the source's runtime has no intra-op thread setting (scikit-learn)."""
    example_feeds: list[Feeds] = field(default_factory=list)
    """Inputs the source brings itself (tokenized text of a Hugging Face model), used for parity."""
    fusion_export: Optional[Callable[[Path], None]] = None
    """A second export meant for ONNX Runtime's transformer fusions (see variants.build_fp32_fused)."""
    fusion_hints: dict[str, int] = field(default_factory=dict)


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
    texts: list[str] | None = None,
    progress: Progress = NULL_PROGRESS,
) -> LoadedSource:
    """Resolve ``location``: an existing path is a file; else a ``module:function`` factory; else a registry ref."""
    user_inputs = list(inputs or [])
    path = Path(location).expanduser()
    if path.exists():
        from mlserve.optimize.source_hf import is_hf_directory, load_hf_directory

        if is_hf_directory(path):
            source = load_hf_directory(path, location, user_inputs, list(texts or []))
            source.sha256 = sha256_of(path)
            return source
        if texts:
            raise UsageError("--text makes inputs for a Hugging Face model directory; this source is not one")
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
        raise UsageError(f"{path} is a directory", hint="point at the model file inside it (a Hugging Face model directory has a config.json)")
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


def _load_onnx(path: Path, location: str, user_inputs: list[InputSpec]) -> LoadedSource:
    onnx = require("onnx", purpose="reading ONNX models")
    ort = require("onnxruntime", purpose="running ONNX models")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure means the file is not ONNX
        raise UsageError(f"cannot read {path.name} as an ONNX model: {exc}") from None
    specs = resolve(onnx_inputs(model), user_inputs, model=path.name)
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
            options.log_severity_level = 4  # failures come back as exceptions; ORT's own log lines stay off stderr
            try:
                session_box["s"] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001 - ORT reports bad models with its own exception types
                raise UsageError(f"ONNX Runtime cannot load {path.name}: {str(exc).splitlines()[0][:300]}") from None
        return session_box["s"]

    def reference(feeds: Feeds) -> dict[str, Any]:
        return dict(zip(outputs, session().run(outputs, feeds)))

    def timed(feeds: Feeds, threads: int) -> Callable[[], Any]:
        options = ort.SessionOptions()  # as users run it: ONNX Runtime's default optimizations
        options.log_severity_level = 4
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda: sess.run(None, feeds)

    def write_onnx(target: Path, progress: Progress) -> str:
        from mlserve.optimize.export import check_and_infer

        # one self-contained file (weights kept in external .data files are pulled in)
        full = onnx.load(str(path))
        onnx.save(full, str(target))
        check_and_infer(target)
        return "none"

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

    def timed(feeds: Feeds, threads: int) -> Callable[[], Any]:
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

    return LoadedSource("sklearn", location, [spec], outputs, reference, timed, write_onnx, threads_apply=False)


# --- torch (loaders in source_torch.py) ------------------------------------------------------


def _load_factory(location: str, user_inputs: list[InputSpec], progress: Progress, *, registry_note: str = "") -> LoadedSource:
    from mlserve.optimize.source_torch import load_factory

    return load_factory(location, user_inputs, registry_note=registry_note)


def _load_torchscript(path: Path, location: str, user_inputs: list[InputSpec]) -> LoadedSource:
    from mlserve.optimize.source_torch import load_torchscript

    return load_torchscript(path, location, user_inputs)


def _load_torch_export(path: Path, location: str, user_inputs: list[InputSpec]) -> LoadedSource:
    from mlserve.optimize.source_torch import load_torch_export

    return load_torch_export(path, location, user_inputs)


def _factory_module_exists(module: str) -> bool:
    cwd = os.getcwd()
    if cwd not in sys.path:  # like uvicorn and gunicorn: factories are found relative to the working directory
        sys.path.insert(0, cwd)
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False

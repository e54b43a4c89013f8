"""PyTorch -> ONNX: the dynamo exporter first, the TorchScript exporter as the fallback.

Whichever produced the file is returned and recorded in the lineage; the result always passes
``onnx.checker.check_model`` and carries inferred shapes (quantizers and TensorRT need them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlserve._deps import require
from mlserve.errors import MissingDependencyError, UsageError
from mlserve.optimize._quiet import quiet
from mlserve.inputs import InputSpec
from mlserve.progress import NULL_PROGRESS, Progress

OPSET = 18
"""Opset for both exporters: the dynamo exporter's native one, accepted by ORT's quantizers and TensorRT 10."""


def export_torch(
    net: Any,
    specs: list[InputSpec],
    outputs: list[str],
    target: Path,
    *,
    progress: Progress = NULL_PROGRESS,
    program: Any = None,
    notes: list[str] | None = None,
) -> str:
    """Write ``net`` as ONNX with a dynamic batch where the specs allow it; return "dynamo" or "torchscript".

    When the dynamo exporter was tried and failed, why is appended to ``notes``."""
    torch = require("torch", purpose="exporting PyTorch models")
    from mlserve.inputs import make_feeds

    # an example batch of 1 would be specialised by torch.export (a size-1 dimension cannot be dynamic)
    dynamic = any(s.dynamic_batch for s in specs if not s.python_arg)
    feeds = make_feeds(specs, batch=2 if dynamic else None, seed=0)
    # Python arguments (a TorchScript forward's ``sr: int``) are passed as values: the export fixes them
    args = tuple(s.value if s.python_arg else torch.from_numpy(feeds[s.name]) for s in specs)
    tensors = [s for s in specs if not s.python_arg]
    names = [s.name for s in tensors]
    errors: list[str] = []
    try:
        require("onnxscript", purpose="the dynamo ONNX exporter")
        dynamo_ok = not isinstance(net, torch.jit.ScriptModule)
        if not dynamo_ok:
            errors.append("dynamo: skipped (TorchScript modules cannot be traced by torch.export)")
    except MissingDependencyError as exc:
        dynamo_ok = False
        errors.append(f"dynamo: skipped ({exc})")
    if dynamo_ok:
        with progress.task("exporting to ONNX (dynamo exporter)"), quiet() as log:
            try:
                batch = torch.export.Dim("batch", min=1)
                extra = {axis: torch.export.Dim(f"dim{axis}", min=1) for s in specs for axis in s.dynamic_axes}  # shared
                shapes = tuple(
                    None if s.python_arg else ({0: batch} if s.dynamic_batch else {}) | {a: extra[a] for a in s.dynamic_axes} or None
                    for s in specs
                )
                torch.onnx.export(
                    program if program is not None else net,
                    args if program is None else (),
                    str(target),
                    dynamo=True,
                    input_names=names,
                    output_names=outputs,
                    dynamic_shapes=shapes if dynamic and program is None else None,
                    opset_version=OPSET,
                    external_data=False,
                    optimize=True,
                )
                check_and_infer(target)
                return "dynamo"
            except Exception as exc:  # noqa: BLE001 - any failure means: try the other exporter
                errors.append(_ANSI.sub("", f"dynamo: {type(exc).__name__}: {_first_line(exc)} {log.tail(120)}").strip())
    with progress.task("exporting to ONNX (TorchScript exporter)"), quiet() as log:
        try:
            axes = {s.name: ({0: "batch"} if s.dynamic_batch else {}) | {a: f"dim{a}" for a in s.dynamic_axes}
                    for s in tensors if s.dynamic_batch or s.dynamic_axes}
            if dynamic:
                axes.update({name: {0: "batch"} for name in outputs})
            torch.onnx.export(
                net,
                args,
                str(target),
                dynamo=False,
                input_names=names,
                output_names=outputs,
                dynamic_axes=axes or None,
                opset_version=OPSET,
                do_constant_folding=True,
            )
            _freeze_python_args(target, specs, names)
            check_and_infer(target)
            if dynamo_ok and notes is not None:
                notes.append(f"the dynamo exporter failed, the TorchScript exporter was used instead ({errors[0][:300]})")
            return "torchscript"
        except Exception as exc:  # noqa: BLE001
            errors.append(f"torchscript: {type(exc).__name__}: {_first_line(exc)}")
    raise UsageError("neither ONNX exporter could export the model: " + "; ".join(errors))


_ANSI = __import__("re").compile(r"\x1b\[[0-9;]*m")


def _first_line(exc: BaseException) -> str:
    text = _ANSI.sub("", str(exc)).strip().splitlines()
    return text[0][:300] if text else ""


def _freeze_python_args(path: Path, specs: list[InputSpec], names: list[str]) -> None:
    """The TorchScript exporter keeps a scripted forward's ``sr: int`` as a graph input: make each such input
    a constant holding the value given (``--input sr=16000``), in the order of the Python arguments."""
    python_args = [s for s in specs if s.python_arg]
    if not python_args:
        return
    onnx = require("onnx")
    import numpy as np
    from onnx import numpy_helper

    model = onnx.load(str(path))
    initializers = {i.name for i in model.graph.initializer}
    extra = [i for i in model.graph.input if i.name not in names and i.name not in initializers]
    for value_info, spec in zip(extra, python_args):
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value_info.type.tensor_type.elem_type)
        model.graph.initializer.append(numpy_helper.from_array(np.array(spec.value, dtype=dtype), value_info.name))
        model.graph.input.remove(value_info)
    onnx.save(model, str(path))


def check_and_infer(path: Path) -> None:
    """Run the ONNX checker and save the model with inferred shapes (in place)."""
    onnx = require("onnx")
    try:
        onnx.checker.check_model(str(path))
        model = onnx.shape_inference.infer_shapes(onnx.load(str(path)), check_type=True)
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"the exported ONNX model is invalid: {type(exc).__name__}: {_first_line(exc)}") from None
    onnx.save(model, str(path))

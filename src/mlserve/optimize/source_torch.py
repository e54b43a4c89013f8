"""PyTorch sources: a ``module:function`` factory, a TorchScript archive, a torch.export program.

Each becomes a :class:`~mlserve.optimize.sources.LoadedSource` that runs the module itself (eager)
for parity and latency, and exports it to ONNX.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any, Callable

from mlserve._deps import require
from mlserve.errors import MlserveError, NotFoundError, UsageError
from mlserve.inputs import InputSpec, batch_axis, make_feeds, merge, resolve
from mlserve.optimize.sources import Feeds, LoadedSource
from mlserve.progress import Progress

_IDS_NAMES = ("ids", "token", "index", "indices")


def load_factory(location: str, user_inputs: list[InputSpec], *, registry_note: str = "") -> LoadedSource:
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
        raise UsageError(f"factory {location} raised {type(exc).__name__}: {str(exc).strip()[:300]}",
                         hint="fix the factory (run it in Python to see the traceback)") from None
    if not (isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], torch.nn.Module)):
        raise UsageError(f"{location} must return (torch.nn.Module, example_inputs); it returned {type(made).__name__}")
    net, example = made
    if isinstance(example, torch.Tensor):
        example = (example,)
    if not isinstance(example, (tuple, list)) or not all(isinstance(t, torch.Tensor) for t in example):
        raise UsageError(f"{location}: example_inputs must be a tensor or a tuple of tensors")
    declared = specs_from_examples(_forward_names(net, len(example)), list(example))
    specs = apply_user_inputs(declared, user_inputs, model=location)
    return torch_source("factory", location, net, specs, list(example))


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


def specs_from_examples(names: list[str], example: list[Any]) -> list[InputSpec]:
    specs = []
    for name, tensor in zip(names, example):
        dims = [int(d) for d in tensor.shape]
        specs.append(InputSpec(name=name, shape=dims, dtype=str(tensor.dtype).replace("torch.", ""), dynamic_batch=bool(dims)))
    return specs


def apply_user_inputs(declared: list[InputSpec], user_inputs: list[InputSpec], *, model: str) -> list[InputSpec]:
    """``--input`` by name where the names are the forward's; otherwise, as many as the model takes, by position."""
    if not user_inputs:
        return declared
    known = {s.name for s in declared}
    if all(u.name in known for u in user_inputs):
        return resolve(declared, user_inputs, model=model, typed=False)
    if len(user_inputs) != len(declared):
        raise UsageError(f"{len(user_inputs)} --input given but the model takes {len(declared)} inputs"
                         f" ({', '.join(s.name for s in declared)})")
    merged = []
    for spec, given in zip(declared, user_inputs):
        one = merge(spec, given, model=model, typed=False)
        one.name = given.name  # positional: the user's names become the ONNX input names
        merged.append(one)
    return merged


def load_torchscript(path: Path, location: str, user_inputs: list[InputSpec]) -> LoadedSource:
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
    declared = _script_arguments(net)
    if not user_inputs:
        first = next((s.name for s in declared if not s.python_arg), "x")
        raise UsageError(
            f"TorchScript file {path.name} does not declare its input shapes",
            hint=f"give each input with --input NAME:DIMS:DTYPE, e.g. --input {first}:1x3x64x64:float32"
                 + "".join(f" --input {s.name}=VALUE" for s in declared if s.python_arg),
        )
    if not declared:
        declared = [InputSpec(name=u.name, shape=None) for u in user_inputs]
    specs = apply_user_inputs(declared, user_inputs, model=path.name)
    for spec in specs:
        if spec.python_arg and spec.value is None:
            raise UsageError(f"{path.name}: forward's argument {spec.name!r} is a Python {spec.dtype.replace('64', '')}, not a tensor",
                             hint=f"give its value with --input {spec.name}=VALUE, e.g. --input {spec.name}=16000")
        if not spec.python_arg and spec.shape is None:
            raise UsageError(f"TorchScript file {path.name} does not declare the shape of input {spec.name!r}",
                             hint=f"give it with --input {spec.name}:1x32:float32")
    return torch_source("torchscript", location, net, specs, None)


_PYTHON_ARGS = {"int": "int64", "float": "float64", "bool": "bool"}


def _script_arguments(net: Any) -> list[InputSpec]:
    """The forward's arguments from the TorchScript schema: tensors, and ints/floats/bools passed as Python values."""
    try:
        arguments = list(net.forward.schema.arguments)[1:]  # the first is self
    except (AttributeError, RuntimeError):
        return []
    specs = []
    for arg in arguments:
        kind = str(arg.type)
        if kind in _PYTHON_ARGS:
            specs.append(InputSpec(name=arg.name, shape=[], dtype=_PYTHON_ARGS[kind], dynamic_batch=False, python_arg=True))
        else:
            specs.append(InputSpec(name=arg.name, shape=None))
    return specs


def load_torch_export(path: Path, location: str, user_inputs: list[InputSpec]) -> LoadedSource:
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
    if example:
        specs = apply_user_inputs(specs_from_examples(names, example), user_inputs, model=path.name)
    elif user_inputs:
        specs = user_inputs
    else:
        raise UsageError(f"{path.name} stores no example inputs", hint="give each input with --input NAME:DIMS:DTYPE")
    return torch_source("torch-export", location, program.module(), specs, example, program=program)


def bound_integer_inputs(net: Any, specs: list[InputSpec]) -> None:
    """Token ids below the vocabulary: the smallest embedding table of the module bounds every id-like input
    (valid for all tables); a Hugging Face config gives the exact sizes."""
    config = getattr(net, "config", None)
    sizes: list[int] = []
    try:
        for module in net.modules():
            count = getattr(module, "num_embeddings", None)
            if isinstance(count, int) and count > 0:
                sizes.append(count)
    except Exception:  # noqa: BLE001 - scripted or exported modules may not list their children
        pass
    for spec in specs:
        if not spec.is_integer or spec.range_from == "user" or spec.value is not None or spec.python_arg:
            continue
        name = spec.name.lower()
        if "type" in name and getattr(config, "type_vocab_size", None):
            spec.low, spec.high, spec.range_from = 0, int(config.type_vocab_size), "model"
        elif "mask" in name or "position" in name:
            continue
        elif name.endswith("input_ids") and getattr(config, "vocab_size", None):
            spec.low, spec.high, spec.range_from = 0, int(config.vocab_size), "model"
        elif any(part in name for part in _IDS_NAMES) and sizes:
            spec.low, spec.high, spec.range_from = 0, min(sizes), "model"


def torch_source(kind: str, location: str, net: Any, specs: list[InputSpec], example: list[Any] | None, program: Any = None,
                 output_names: list[str] | None = None) -> LoadedSource:
    torch = require("torch")
    import numpy as np

    if hasattr(net, "eval") and not isinstance(net, torch.fx.GraphModule):
        net.eval()
    bound_integer_inputs(net, specs)

    def to_args(feeds: Feeds) -> list[Any]:
        return [s.value if s.python_arg else torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in specs]

    def flatten(out: Any) -> list[Any]:
        if isinstance(out, torch.Tensor):
            return [out]
        if isinstance(out, (tuple, list)):
            return [t for item in out for t in flatten(item)]
        if isinstance(out, dict) or hasattr(out, "keys"):  # dicts and Hugging Face ModelOutput
            return [t for key in (sorted(out) if isinstance(out, dict) else list(out.keys())) for t in flatten(out[key])]
        raise UsageError(f"model output of type {type(out).__name__} is not supported (tensors, tuples, lists, dicts only)")

    probe = make_feeds(specs, batch=2, seed=0)
    with torch.inference_mode():
        try:
            count = len(flatten(net(*to_args(probe))))
        except MlserveError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's forward failed on the declared inputs
            raise source_failed(exc, specs, "probed at batch 2") from None
    outputs = output_names if output_names and len(output_names) == count else (
        ["output"] if count == 1 else [f"output_{i}" for i in range(count)])

    def reference(feeds: Feeds) -> dict[str, Any]:
        with torch.inference_mode():
            result = flatten(net(*to_args(feeds)))
        return {name: t.detach().cpu().numpy() for name, t in zip(outputs, result)}

    def timed(feeds: Feeds, threads: int) -> Callable[[], Any]:
        args = to_args(feeds)
        set_threads = torch.set_num_threads

        def call() -> Any:
            set_threads(threads)  # the pool is process-wide: every call runs with this source's thread count
            with torch.inference_mode():
                return net(*args)

        return call

    def write_onnx(target: Path, progress: Progress) -> str:
        from mlserve.optimize.export import export_torch

        return export_torch(net, specs, outputs, target, progress=progress, program=program, notes=notes)

    notes: list[str] = []
    return LoadedSource(kind, location, specs, outputs, reference, timed, write_onnx, warnings=notes)


def source_failed(exc: BaseException, specs: list[InputSpec], where: str = "") -> UsageError:
    """The source model itself cannot run on the example inputs: the user's inputs or model, never a bug here."""
    shapes = ", ".join(s.describe() for s in specs)
    text = " ".join(str(exc).split())[:300]
    return UsageError(
        f"the source model fails on the generated inputs ({shapes}{'; ' + where if where else ''}): {type(exc).__name__}: {text}",
        hint="fix an input's value with --input NAME=VALUE, its integer range with --input NAME:LOW..HIGH or its shape with "
             "--input NAME:DIMS (--static-batch for a fixed batch), or give real inputs with --data FILE.npz",
    )


__all__ = ["apply_user_inputs", "batch_axis", "load_factory", "load_torch_export", "load_torchscript", "source_failed", "torch_source"]

"""Model inputs, for ``optimize`` and ``benchmark`` alike: one :class:`InputSpec`, one ``--input`` grammar,
one generator of seeded example data.

The ``--input`` grammar (every part after NAME is optional; the model fills in what is left out)::

    NAME[:DIMS][:DTYPE][:LOW..HIGH][=VALUE]

    x:1x3x224x224:float32     shape and dtype ("N", "?" or "*" for a size that is not known;
                              "scalar" for a rank-0 input)
    ids:Nx128:int64:0..30522  integers drawn from [0, 30522)
    ids:0..30522              the same, shape and dtype from the model
    sr=16000                  this input always holds 16000 (shape and dtype from the model)

The first dimension is the batch. ``N`` there keeps it dynamic; a number is the batch size of the
example (``optimize`` keeps the exported batch dynamic unless ``--static-batch``; ``benchmark`` runs
exactly that shape). Nothing here imports more than pydantic and, for data, numpy: the CLI parses
options with it before any model is touched, so a typo is exit 2 at once.
"""

from __future__ import annotations

import re
from typing import Any, Optional, Union

from pydantic import BaseModel, Field

from mlserve.errors import UsageError

DTYPES = ("float32", "float16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")
"""The dtypes example data can be made for (canonical numpy names)."""

DTYPE_ALIASES: dict[str, str] = {
    **{d: d for d in DTYPES},
    "float": "float32", "fp32": "float32", "f32": "float32",
    "half": "float16", "fp16": "float16", "f16": "float16",
    "double": "float64", "fp64": "float64", "f64": "float64",
    "long": "int64", "i64": "int64", "int": "int32", "i32": "int32", "i16": "int16", "i8": "int8", "u8": "uint8",
}

GRAMMAR = "NAME[:DIMS][:DTYPE][:LOW..HIGH][=VALUE]"
EXAMPLES = "x:Nx3x224x224:float32, ids:Nx128:int64:0..30522, sr=16000"

Scalar = Union[bool, int, float]


class InputSpec(BaseModel):
    """One model input. ``shape`` entries are sizes, or None where the size is not known (the batch, a
    sequence length); ``shape`` itself is None only in an ``--input`` that gave no dimensions."""

    name: str
    shape: Optional[list[Optional[int]]] = Field(default_factory=list)
    dtype: str = "float32"
    dynamic_batch: bool = True
    dim_names: list[Optional[str]] = Field(default_factory=list, description="symbolic dimension names the model declares")
    value: Optional[Scalar] = Field(None, description="a fixed value for every element (--input NAME=VALUE)")
    low: Optional[int] = Field(None, description="integers are drawn from [low, high)")
    high: Optional[int] = None
    range_from: Optional[str] = Field(None, description="where the integer range comes from: user, name, model, default")
    python_arg: bool = Field(False, description="a non-tensor forward argument (TorchScript), passed as a Python value")
    dynamic_axes: list[int] = Field(default_factory=list, description="axes after the batch kept dynamic in the export")
    given: list[str] = Field(default_factory=list, exclude=True, description="which parts an --input gave: shape, dtype")

    def concrete_shape(self, batch: int | None = None) -> list[int]:
        """The shape with a dynamic batch set to ``batch`` (else 1) and no unknown size left."""
        dims: list[int] = []
        for axis, dim in enumerate(self.shape or []):
            if axis == 0 and batch is not None and (self.dynamic_batch or dim is None):
                dims.append(batch)
            elif dim is None:
                if axis == 0:
                    dims.append(1)
                else:
                    raise UsageError(
                        f"input '{self.name}' has a dimension of unknown size at axis {axis}"
                        + (f" ({self.dim_names[axis]})" if axis < len(self.dim_names) and self.dim_names[axis] else ""),
                        hint=f"give its size with --input {self.name}:{self._hint_dims()}:{self.dtype}, a number in place of "
                             "each <...> (N: the batch size)",
                    )
            else:
                dims.append(dim)
        return dims

    def _hint_dims(self) -> str:
        parts = []
        for axis, dim in enumerate(self.shape or []):
            if axis == 0 and (self.dynamic_batch or dim is None):
                parts.append("N")
            elif dim is None:
                name = self.dim_names[axis] if axis < len(self.dim_names) and self.dim_names[axis] else f"dim{axis}"
                parts.append(f"<{name}>")
            else:
                parts.append(str(dim))
        return "x".join(parts) or "scalar"

    def describe(self) -> str:
        """The spec in the ``--input`` grammar (parses back to the same spec)."""
        if self.shape is None:
            text = self.name
        else:
            dims = ["N" if (i == 0 and self.dynamic_batch) or d is None else str(d) for i, d in enumerate(self.shape)]
            text = f"{self.name}:{'x'.join(dims) or 'scalar'}:{self.dtype}"
        if self.low is not None and self.high is not None and self.range_from == "user":
            text += f":{self.low}..{self.high}"
        if self.value is not None:
            text += f"={_format_value(self.value)}"
        return text

    @property
    def is_integer(self) -> bool:
        return self.dtype.startswith(("int", "uint"))


def _format_value(value: Scalar) -> str:
    return str(value).lower() if isinstance(value, bool) else repr(value) if isinstance(value, float) else str(value)


_NAME_RE = re.compile(r"^[^:=\s]+$")
_DIMS_RE = re.compile(r"^(?:[0-9]+|[NnXx?*])(?:x(?:[0-9]+|[Nn?*]))*$")
_RANGE_RE = re.compile(r"^(-?[0-9]+)\.\.(-?[0-9]+)$")


def normalize_dtype(text: str) -> str | None:
    return DTYPE_ALIASES.get(text.strip().lower())


def parse_input(text: str, *, static_batch: bool = False) -> InputSpec:
    """One ``--input`` value -> InputSpec (parts not given are filled in later from the model)."""
    raw = text.strip()
    hint = f"use {GRAMMAR}, e.g. {EXAMPLES}"
    body, eq, value_text = raw.partition("=")
    if not body:
        raise UsageError(f"bad --input {text!r}: no input name", hint=hint)
    name, *fields = body.split(":")
    if not _NAME_RE.match(name):
        raise UsageError(f"bad --input {text!r}: {name!r} is not an input name", hint=hint)
    spec = InputSpec(name=name, shape=None)
    seen: set[str] = set()
    for field in fields:
        kind = _classify(field)
        if kind is None:
            raise UsageError(f"bad --input {text!r}: {field!r} is neither dimensions, a dtype nor a range LOW..HIGH", hint=hint)
        if kind in seen:
            raise UsageError(f"bad --input {text!r}: the {kind} is given twice", hint=hint)
        seen.add(kind)
        if kind == "dims":
            spec.shape = _parse_dims(text, field)
            spec.given.append("shape")
        elif kind == "dtype":
            spec.dtype = normalize_dtype(field)  # type: ignore[assignment]
            spec.given.append("dtype")
        else:
            low, high = (int(v) for v in _RANGE_RE.match(field).groups())  # type: ignore[union-attr]
            if high <= low:
                raise UsageError(f"bad --input {text!r}: the range {field} is empty (LOW..HIGH takes LOW <= x < HIGH)", hint=hint)
            spec.low, spec.high, spec.range_from = low, high, "user"
    if not fields and not eq:
        raise UsageError(f"bad --input {text!r}: give dimensions, a dtype, a range or a value after the name", hint=hint)
    if eq:
        spec.value = _parse_value(text, value_text)
        if spec.low is not None:
            raise UsageError(f"bad --input {text!r}: a fixed value and a range exclude each other", hint=hint)
    if spec.shape is not None:
        # N keeps the batch dynamic; a number is the example's batch, pinned only by static_batch
        spec.dynamic_batch = bool(spec.shape) and (spec.shape[0] is None or not static_batch)
    return spec


def _classify(field: str) -> str | None:
    if normalize_dtype(field):
        return "dtype"
    if _RANGE_RE.match(field):
        return "range"
    if field == "scalar" or _DIMS_RE.match(field):
        return "dims"
    return None


def _parse_dims(text: str, field: str) -> list[Optional[int]]:
    if field == "scalar":
        return []
    dims: list[Optional[int]] = []
    for part in field.lower().split("x"):
        if part in {"n", "?", "*", ""}:
            dims.append(None)
        elif part.isdigit() and int(part) > 0:
            dims.append(int(part))
        else:
            raise UsageError(f"bad --input {text!r}: dimension {part!r} is not a positive integer or N", hint=f"use {GRAMMAR}, e.g. {EXAMPLES}")
    return dims


def _parse_value(text: str, value: str) -> Scalar:
    v = value.strip()
    if v.lower() in {"true", "false"}:
        return v.lower() == "true"
    try:
        return int(v)
    except ValueError:
        pass
    try:
        number = float(v)
    except ValueError:
        raise UsageError(f"bad --input {text!r}: the value {value!r} is not a number (or true/false)", hint=f"e.g. {EXAMPLES}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise UsageError(f"bad --input {text!r}: the value must be a finite number")
    return number


def parse_inputs(texts: list[str] | None, *, static_batch: bool = False) -> list[InputSpec]:
    """Every ``--input`` of a command line; an input named twice is refused."""
    specs = [parse_input(t, static_batch=static_batch) for t in texts or []]
    names = [s.name for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"--input names {', '.join(repr(n) for n in twice)} more than once")
    return specs


# ------------------------------------------------------------------ merging with what the model declares


def resolve(declared: list[InputSpec], overrides: list[InputSpec], *, model: str = "the model", typed: bool = True,
            allow_new: bool = False) -> list[InputSpec]:
    """The model's inputs with the ``--input`` overrides applied.

    ``typed``: the declared dtypes come from the model file (an override may not change them).
    ``allow_new``: an override may name an input the model does not declare (torch files declare none).
    """
    by_name = {o.name: o for o in overrides}
    out: list[InputSpec] = []
    for spec in declared:
        given = by_name.pop(spec.name, None)
        out.append(spec if given is None else merge(spec, given, model=model, typed=typed))
    if by_name and not allow_new:
        raise UsageError(
            f"--input names {', '.join(sorted(by_name))}, which {'is not an input' if len(by_name) == 1 else 'are not inputs'} of {model}",
            hint=f"its inputs: {', '.join(s.name for s in declared) or '(none declared)'}",
        )
    for extra in by_name.values():
        if extra.shape is None:
            raise UsageError(f"--input {extra.describe()}: {model} does not declare this input, so give its shape too",
                             hint=f"e.g. --input {extra.name}:Nx32:float32")
        out.append(extra)
    return out


def merge(declared: InputSpec, given: InputSpec, *, model: str = "the model", typed: bool = True) -> InputSpec:
    merged = declared.model_copy(deep=True)
    if given.shape is not None:
        if typed and declared.shape is not None and len(given.shape) != len(declared.shape):
            raise UsageError(f"--input {given.describe()} has rank {len(given.shape)} but {model}'s input {declared.name!r} has rank {len(declared.shape)}")
        shape = list(given.shape)
        for axis, (want, have) in enumerate(zip(given.shape, declared.shape or [])):
            if want is None:
                shape[axis] = have
            elif have is not None and want != have and typed:
                raise UsageError(f"--input {given.describe()}: {model}'s input {declared.name!r} has size {have} at axis {axis}, not {want}")
        merged.shape = shape
        merged.dynamic_batch = bool(shape) and given.dynamic_batch and (declared.dynamic_batch or not typed)
        if not typed:
            merged.dim_names = []
    if "dtype" in given.given and given.dtype != declared.dtype:
        if typed:
            raise UsageError(f"--input {given.describe()}: {model}'s input {declared.name!r} is {declared.dtype}, not {given.dtype}")
        merged.dtype = given.dtype
    if given.value is not None:
        merged.value = given.value
    if given.range_from == "user":
        merged.low, merged.high, merged.range_from = given.low, given.high, "user"
    return merged


# ------------------------------------------------------------------ ONNX graphs


def onnx_inputs(model: Any) -> list[InputSpec]:
    """The graph inputs an ONNX model declares (initializers excluded), with integer ranges read from the
    graph where an input indexes a table (``Gather`` on an initializer: token ids below the vocabulary size)."""
    from mlserve._deps import require

    onnx = require("onnx", purpose="reading ONNX models")
    import numpy as np

    initializers = {init.name: init for init in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        try:
            dtype = str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)))
        except Exception:  # noqa: BLE001 - strings, bfloat16 and other types numpy cannot hold
            dtype = f"onnx-type-{tensor.elem_type}"
        dims: list[Optional[int]] = []
        names: list[Optional[str]] = []
        for dim in tensor.shape.dim:
            known = dim.HasField("dim_value") and dim.dim_value > 0
            dims.append(int(dim.dim_value) if known else None)
            names.append(None if known else (dim.dim_param or None))
        specs.append(InputSpec(name=value.name, shape=dims, dtype=dtype, dynamic_batch=bool(dims) and dims[0] is None, dim_names=names))
    bounds = table_bounds(model)
    for spec in specs:
        if spec.is_integer and spec.name in bounds:
            spec.low, spec.high, spec.range_from = 0, bounds[spec.name], "model"
    return specs


_PASS_THROUGH = {"Cast", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Identity", "Expand"}


def table_bounds(model: Any) -> dict[str, int]:
    """Graph input -> the smallest table it indexes (``Gather(initializer, input)`` on axis 0), following
    casts and reshapes; an input that indexes several tables gets the smallest (valid for all of them)."""
    initializers = {init.name: list(init.dims) for init in model.graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, i))
    bounds: dict[str, int] = {}
    for value in model.graph.input:
        frontier, seen, best = [value.name], set(), None
        while frontier:
            name = frontier.pop()
            if name in seen:
                continue
            seen.add(name)
            for node, index in consumers.get(name, []):
                if node.op_type in _PASS_THROUGH and index == 0:
                    frontier.extend(node.output)
                elif node.op_type == "Gather" and index == 1 and node.input[0] in initializers:
                    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
                    dims = initializers[node.input[0]]
                    if axis == 0 and dims:
                        best = dims[0] if best is None else min(best, dims[0])
        if best:
            bounds[value.name] = int(best)
    return bounds


# ------------------------------------------------------------------ example data

_MASK_RE = re.compile(r"mask", re.IGNORECASE)
_TYPE_RE = re.compile(r"(token_?type|segment)", re.IGNORECASE)
_POSITION_RE = re.compile(r"position_?ids", re.IGNORECASE)


def integer_range(spec: InputSpec) -> tuple[int, int, str]:
    """[low, high) for an integer input, and where it comes from (user, model, name, default)."""
    if spec.low is not None and spec.high is not None:
        if _TYPE_RE.search(spec.name) and spec.range_from == "model":
            return 0, min(spec.high, 2), "model"
        return spec.low, spec.high, spec.range_from or "user"
    if _MASK_RE.search(spec.name) or _TYPE_RE.search(spec.name):
        return 0, 2, "name"
    return 0, 2, "default"


def make_feeds(specs: list[InputSpec], *, batch: int | None, seed: int) -> dict[str, Any]:
    """Seeded example inputs shaped by ``specs``.

    Floats ~ N(0, 1). Integers in their range (``integer_range``: the user's, else the table the model
    indexes with them, else {0, 1}). Attention masks (names with "mask") hold a prefix of ones of random
    length per row and zeros after it (padding), ``position_ids`` count 0, 1, 2, ...; booleans are fair
    coins; a fixed ``value`` fills the whole input. Python arguments of a TorchScript ``forward`` are
    not tensors and are left out.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds: dict[str, Any] = {}
    for spec in specs:
        if spec.python_arg:
            continue
        shape = spec.concrete_shape(batch)
        try:
            dtype = np.dtype(spec.dtype)
        except TypeError:
            raise UsageError(f"input {spec.name!r} has type {spec.dtype}, which example data cannot be made for",
                             hint=f"give real inputs with --data FILE.npz") from None
        if spec.value is not None:
            feeds[spec.name] = np.full(shape, spec.value, dtype=dtype)
        elif _MASK_RE.search(spec.name) and dtype.kind in "iub" and len(shape) >= 2:
            feeds[spec.name] = _padding_mask(rng, shape).astype(dtype)
        elif _POSITION_RE.search(spec.name) and dtype.kind in "iu" and shape:
            feeds[spec.name] = np.broadcast_to(np.arange(shape[-1]), shape).astype(dtype).copy()
        elif dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            low, high, _ = integer_range(spec)
            feeds[spec.name] = rng.integers(low, high, size=shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise UsageError(f"input {spec.name!r} has dtype {spec.dtype}, which example data cannot be made for")
    return feeds


def _padding_mask(rng: Any, shape: list[int]) -> Any:
    """Ones for a random-length prefix of the last axis (at least one), zeros after: a padded batch."""
    import numpy as np

    length = shape[-1]
    lead = shape[:-1]
    keep = rng.integers(max(1, length // 2), length + 1, size=lead) if length > 1 else np.ones(lead, dtype=np.int64)
    first = [0] * (len(lead) - 1)
    if lead and np.prod(lead) > 0:
        keep[tuple(first + [0])] = length  # one row without padding: the full length is exercised too
    return (np.arange(length) < keep[..., None]).astype(np.int64)


def batch_axis(specs: list[InputSpec]) -> bool:
    """Whether the model has a batch axis that example data may size (a dynamic first dimension)."""
    return any(s.dynamic_batch and s.shape for s in specs if not s.python_arg)

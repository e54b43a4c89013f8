"""Parsing of the small textual specs the optimize command takes: inputs, tolerances, variants.

Nothing here imports numpy's heavy friends, torch or onnxruntime: the CLI parses options with it
before any model is loaded, so a typo fails fast with exit code 2.
"""

from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import BaseModel, Field

from mlserve.errors import UsageError

DTYPES = ("float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool")

Precision = Literal["fp32", "fp16", "int8"]

# name -> (precision, needs CUDA/TensorRT)
VARIANTS: dict[str, tuple[str, bool]] = {
    "fp32": ("fp32", False),
    "fp16": ("fp16", False),
    "int8-dynamic": ("int8", False),
    "int8-static": ("int8", False),
    "trt-fp32": ("fp32", True),
    "trt-fp16": ("fp16", True),
    "trt-int8": ("int8", True),
}


class InputSpec(BaseModel):
    """One model input: its name, shape (None = dynamic, size unknown) and dtype."""

    name: str
    shape: list[Optional[int]]
    dtype: str = "float32"
    dynamic_batch: bool = True

    def concrete_shape(self, batch: int | None = None) -> list[int]:
        """The shape with the batch set to ``batch`` (when dynamic) and no unknown dimension left."""
        dims: list[int] = []
        for axis, dim in enumerate(self.shape):
            if axis == 0 and batch is not None and (self.dynamic_batch or dim is None):
                dims.append(batch)
            elif dim is None:
                if axis == 0:
                    dims.append(1)
                else:
                    raise UsageError(
                        f"input '{self.name}' has a dimension of unknown size at axis {axis}",
                        hint=f"give its size with --input {self.name}:{self._hint_dims()}:{self.dtype}",
                    )
            else:
                dims.append(dim)
        return dims

    def _hint_dims(self) -> str:
        return "x".join("1" if i == 0 and d is None else "SIZE" if d is None else str(d) for i, d in enumerate(self.shape))

    def describe(self) -> str:
        dims = ["N" if (i == 0 and self.dynamic_batch) or d is None else str(d) for i, d in enumerate(self.shape)]
        return f"{self.name}:{'x'.join(dims)}:{self.dtype}"


_INPUT_RE = re.compile(r"^(?P<name>[^:\s]+):(?P<shape>[0-9NnxX?*]+(?:x[0-9NnxX?*]+)*|scalar)(?::(?P<dtype>[a-z0-9]+))?$")


def parse_input_spec(text: str, *, static_batch: bool = False) -> InputSpec:
    """``name:1x3x224x224:float32`` -> InputSpec. ``N`` or ``?`` marks a dimension of unknown size.

    The first dimension is the batch and stays dynamic unless ``static_batch`` pins it.
    """
    match = _INPUT_RE.match(text.strip())
    if not match:
        raise UsageError(
            f"bad --input {text!r}",
            hint="use NAME:DIMS[:DTYPE], e.g. x:1x3x224x224:float32 (N for an unknown size)",
        )
    dtype = match.group("dtype") or "float32"
    if dtype not in DTYPES:
        raise UsageError(f"bad --input {text!r}: unknown dtype {dtype!r}", hint=f"use one of {', '.join(DTYPES)}")
    raw = match.group("shape")
    dims: list[Optional[int]] = []
    if raw != "scalar":
        for part in raw.lower().split("x"):
            if part in {"n", "?", "*"}:
                dims.append(None)
            elif part.isdigit() and int(part) > 0:
                dims.append(int(part))
            else:
                raise UsageError(f"bad --input {text!r}: dimension {part!r} is not a positive integer or N")
    return InputSpec(name=match.group("name"), shape=dims, dtype=dtype, dynamic_batch=not static_batch and bool(dims))


class Tolerance(BaseModel):
    """An element fails only when it exceeds both ``atol`` and ``rtol * |reference|`` (Polygraphy's rule)."""

    atol: float
    rtol: float
    min_cosine: float = Field(description="lowest acceptable cosine similarity between flattened outputs")
    min_top1: float = Field(description="lowest acceptable top-1 (or label) agreement for classifier outputs")


DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=1e-4, rtol=1e-3, min_cosine=0.99999, min_top1=0.99),
    "fp16": Tolerance(atol=1e-2, rtol=1e-2, min_cosine=0.999, min_top1=0.97),
    "int8": Tolerance(atol=5e-2, rtol=5e-2, min_cosine=0.99, min_top1=0.9),
}


class ToleranceOverride(BaseModel):
    output: str = Field(description="output name, or '*' for every output")
    atol: float
    rtol: float
    min_cosine: Optional[float] = Field(None, description="lowest acceptable cosine similarity (None: the precision's default)")
    min_top1: Optional[float] = Field(None, description="lowest acceptable top-1/label agreement (None: the precision's default)")


TOLERANCE_FORMAT = "OUTPUT:ATOL:RTOL[:MIN_COSINE[:MIN_TOP1]]"


def parse_tolerance(text: str) -> ToleranceOverride:
    """``OUTPUT:ATOL:RTOL[:MIN_COSINE[:MIN_TOP1]]`` (OUTPUT may be ``*``) -> ToleranceOverride.

    The numbers are the trailing fields (2 to 4 of them); everything before them is the output name.
    """
    hint = f"use {TOLERANCE_FORMAT}, e.g. logits:1e-3:1e-2, '*:1e-3:1e-2' or logits:1e-2:1e-2:0.999:0.97"
    parts = text.strip().split(":")
    numbers: list[str] = []
    while len(parts) > 1 and len(numbers) < 4 and _is_number(parts[-1]):
        numbers.insert(0, parts.pop())
    name = ":".join(parts)
    if len(numbers) < 2 or not name:
        if name and len(text.strip().split(":")) >= 3:
            raise UsageError(f"bad --tolerance {text!r}: ATOL and RTOL must be numbers", hint=hint)
        raise UsageError(f"bad --tolerance {text!r}", hint=hint)
    values = [float(n) for n in numbers]
    if any(v != v or v < 0 for v in values[:2]):
        raise UsageError(f"bad --tolerance {text!r}: ATOL and RTOL must be non-negative numbers", hint=hint)
    min_cosine = values[2] if len(values) > 2 else None
    min_top1 = values[3] if len(values) > 3 else None
    if min_cosine is not None and not -1.0 <= min_cosine <= 1.0:
        raise UsageError(f"bad --tolerance {text!r}: MIN_COSINE must lie between -1 and 1", hint=hint)
    if min_top1 is not None and not 0.0 <= min_top1 <= 1.0:
        raise UsageError(f"bad --tolerance {text!r}: MIN_TOP1 must lie between 0 and 1", hint=hint)
    return ToleranceOverride(output=name, atol=values[0], rtol=values[1], min_cosine=min_cosine, min_top1=min_top1)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return bool(text.strip())


def tolerance_for(output: str, precision: str, overrides: list[ToleranceOverride]) -> Tolerance:
    """The default tolerance of ``precision``, with the most specific user override applied."""
    base = DEFAULT_TOLERANCES[precision]
    chosen = None
    for override in overrides:
        if override.output == output:
            chosen = override
        elif override.output == "*" and (chosen is None or chosen.output == "*"):
            chosen = override
    if chosen is None:
        return base
    update: dict[str, float] = {"atol": chosen.atol, "rtol": chosen.rtol}
    if chosen.min_cosine is not None:
        update["min_cosine"] = chosen.min_cosine
    if chosen.min_top1 is not None:
        update["min_top1"] = chosen.min_top1
    return base.model_copy(update=update)


def check_tolerance_outputs(overrides: list[ToleranceOverride], outputs: list[str]) -> None:
    """Refuse a --tolerance that names no output of the model (a typo would silently keep the defaults)."""
    unknown = [o.output for o in overrides if o.output != "*" and o.output not in outputs]
    if unknown:
        raise UsageError(
            f"--tolerance names {', '.join(repr(u) for u in unknown)}, which {'is not an output' if len(unknown) == 1 else 'are not outputs'} of the model",
            hint=f"its outputs: {', '.join(outputs)} (or '*' for all)",
        )


def parse_variants(texts: list[str]) -> list[str]:
    """Accept repeated or comma-separated variant names; reject unknown ones with the list of valid ones."""
    names: list[str] = []
    for text in texts:
        for name in (part.strip().lower() for part in text.split(",")):
            if not name:
                continue
            if name not in VARIANTS:
                raise UsageError(f"unknown variant {name!r}", hint=f"use one of {', '.join(VARIANTS)}")
            if name not in names:
                names.append(name)
    return names

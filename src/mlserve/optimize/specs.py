"""Parsing of the small textual specs the optimize command takes: tolerances and variants (inputs: ``mlserve.inputs``).

Nothing here imports numpy's heavy friends, torch or onnxruntime: the CLI parses options with it
before any model is loaded, so a typo fails fast with exit code 2.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, Field

from mlserve.errors import UsageError

Precision = Literal["fp32", "fp16", "int8"]

# name -> (precision, needs CUDA/TensorRT)
VARIANTS: dict[str, tuple[str, bool]] = {
    "fp32": ("fp32", False),
    "fp32-fused": ("fp32", False),
    "fp16": ("fp16", False),
    "int8-dynamic": ("int8", False),
    "int8-static": ("int8", False),
    "trt-fp32": ("fp32", True),
    "trt-fp16": ("fp16", True),
    "trt-int8": ("int8", True),
}


class Tolerance(BaseModel):
    """The criteria one output must meet. An element fails only when it exceeds both ``atol`` and
    ``rtol * |reference|`` (Polygraphy's rule); the scale-aware ``max_rel_l2`` and the per-row cosine
    catch what element-wise tolerances miss on outputs far below ``atol`` (a candidate off by a factor)."""

    atol: float
    rtol: float
    min_cosine: float = Field(description="lowest acceptable cosine similarity between flattened outputs")
    min_top1: float = Field(description="lowest acceptable top-1 (or label) agreement for classifier outputs")
    max_rel_l2: float = Field(description="largest acceptable ||candidate - source|| / ||source|| (relative L2 error)")
    min_row_cosine: float = Field(description="lowest acceptable cosine similarity of any one row (sample)")


DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=1e-4, rtol=1e-3, min_cosine=0.99999, min_top1=0.99, max_rel_l2=1e-3, min_row_cosine=0.9999),
    "fp16": Tolerance(atol=1e-2, rtol=1e-2, min_cosine=0.999, min_top1=0.97, max_rel_l2=0.05, min_row_cosine=0.99),
    "int8": Tolerance(atol=5e-2, rtol=5e-2, min_cosine=0.99, min_top1=0.9, max_rel_l2=0.15, min_row_cosine=0.95),
}

# named fields of --tolerance: name -> Tolerance attribute
TOLERANCE_FIELDS = {"atol": "atol", "rtol": "rtol", "cosine": "min_cosine", "top1": "min_top1", "rel_l2": "max_rel_l2",
                    "row_cosine": "min_row_cosine"}


class ToleranceOverride(BaseModel):
    output: str = Field(description="output name, or '*' for every output")
    atol: Optional[float] = None
    rtol: Optional[float] = None
    min_cosine: Optional[float] = Field(None, description="lowest acceptable cosine similarity (None: the precision's default)")
    min_top1: Optional[float] = Field(None, description="lowest acceptable top-1/label agreement (None: the precision's default)")
    max_rel_l2: Optional[float] = Field(None, description="largest acceptable relative L2 error (None: the precision's default)")
    min_row_cosine: Optional[float] = Field(None, description="lowest acceptable per-row cosine (None: the precision's default)")


TOLERANCE_FORMAT = "OUTPUT:ATOL:RTOL[:MIN_COSINE[:MIN_TOP1]] or OUTPUT:KEY=VALUE[:KEY=VALUE...]"


def parse_tolerance(text: str) -> ToleranceOverride:
    """``OUTPUT:ATOL:RTOL[:MIN_COSINE[:MIN_TOP1]]`` and/or named fields ``KEY=VALUE`` (keys: atol, rtol,
    cosine, top1, rel_l2, row_cosine), e.g. ``logits:rel_l2=0.2:top1=0.99``. OUTPUT may be ``*``.

    The numbers and named fields are the trailing fields; everything before them is the output name.
    """
    keys = ", ".join(TOLERANCE_FIELDS)
    hint = f"use {TOLERANCE_FORMAT} (keys: {keys}), e.g. logits:1e-3:1e-2, '*:1e-3:1e-2' or 'logits:rel_l2=0.2:top1=0.99'"
    parts = text.strip().split(":")
    numbers: list[str] = []
    named: dict[str, str] = {}
    while len(parts) > 1:
        last = parts[-1]
        key, eq, value = last.partition("=")
        if eq and key.strip().lower() in TOLERANCE_FIELDS:
            if key.strip().lower() in named:
                raise UsageError(f"bad --tolerance {text!r}: {key} is given twice", hint=hint)
            named[key.strip().lower()] = value
            parts.pop()
        elif eq:
            raise UsageError(f"bad --tolerance {text!r}: unknown field {key!r}", hint=hint)
        elif not named and len(numbers) < 4 and _is_number(last):
            numbers.insert(0, parts.pop())
        else:
            break
    name = ":".join(parts)
    if not name or (not named and len(numbers) < 2) or len(numbers) == 1:
        if name and len(text.strip().split(":")) >= 3 and not named:
            raise UsageError(f"bad --tolerance {text!r}: ATOL and RTOL must be numbers", hint=hint)
        raise UsageError(f"bad --tolerance {text!r}", hint=hint)
    values: dict[str, float] = {}
    for field, raw in zip(("atol", "rtol", "cosine", "top1"), numbers):
        values[TOLERANCE_FIELDS[field]] = float(raw)
    for key, raw in named.items():
        if not _is_number(raw):
            raise UsageError(f"bad --tolerance {text!r}: {key} must be a number", hint=hint)
        if TOLERANCE_FIELDS[key] in values:
            raise UsageError(f"bad --tolerance {text!r}: {key} is given twice", hint=hint)
        values[TOLERANCE_FIELDS[key]] = float(raw)
    for attr, value in values.items():
        if value != value:
            raise UsageError(f"bad --tolerance {text!r}: NaN is not a tolerance", hint=hint)
        if attr in ("atol", "rtol", "max_rel_l2") and value < 0:
            raise UsageError(f"bad --tolerance {text!r}: ATOL, RTOL and rel_l2 must be non-negative numbers", hint=hint)
        if attr in ("min_cosine", "min_row_cosine") and not -1.0 <= value <= 1.0:
            raise UsageError(f"bad --tolerance {text!r}: MIN_COSINE (cosine, row_cosine) must lie between -1 and 1", hint=hint)
        if attr == "min_top1" and not 0.0 <= value <= 1.0:
            raise UsageError(f"bad --tolerance {text!r}: MIN_TOP1 must lie between 0 and 1", hint=hint)
    return ToleranceOverride(output=name, **values)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return bool(text.strip())


def tolerance_for(output: str, precision: str, overrides: list[ToleranceOverride]) -> Tolerance:
    """The default tolerance of ``precision``, with the user's overrides applied ('*' first, then the output's own)."""
    base = DEFAULT_TOLERANCES[precision]
    update: dict[str, float] = {}
    for wanted in ("*", output):
        for override in overrides:
            if override.output == wanted:
                update.update(override.model_dump(exclude={"output"}, exclude_none=True))
    return base.model_copy(update=update) if update else base


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

"""What may be stored on a version: metrics, metadata, and the promotion gates that read them.

Metrics are finite numbers under names usable in ``--require``. Metadata is JSON: objects with
string keys, arrays, strings, booleans, null and *finite* numbers. ``NaN``, ``Infinity`` and
``1e309`` (which parses as infinity) are refused, anywhere in the value: JSON has no such numbers,
and storing them silently as null would lose what the user gave.
"""

from __future__ import annotations

import math
import numbers
import operator
import os
import re
from typing import Any

from mlserve.errors import GateFailedError, UsageError

_REQUIRE = re.compile(r"\s*([A-Za-z0-9_.:/-]+)\s*(>=|<=|==|!=|>|<)\s*([-+0-9.eE]+|nan|inf)\s*")
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq, "!=": operator.ne}
_METRIC_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,128}")


def parse_requirement(text: str) -> tuple[str, str, float]:
    """``accuracy>=0.9`` -> ("accuracy", ">=", 0.9)."""
    match = _REQUIRE.fullmatch(text)
    if not match:
        raise UsageError(f"bad requirement {text!r}: use METRIC>=VALUE (operators >= <= > < == !=)")
    return match.group(1), match.group(2), float(match.group(3))


def check_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Metric values must be finite numbers and names usable in ``--require``."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        key = str(key)
        if not _METRIC_NAME.fullmatch(key):
            raise UsageError(f"bad metric name {key!r}: use letters, digits and _ . : / - (it must work in --require)")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UsageError(f"metric {key}={value!r} is not a number") from None
        if not math.isfinite(number):
            raise UsageError(f"metric {key}={value!r} is not a finite number; record only real measurements")
        out[key] = number
    return out


def check_meta(meta: dict[str, Any] | None) -> dict[str, Any]:
    """A JSON copy of ``meta``; refuses non-finite numbers and values JSON cannot hold, naming the key."""
    if not meta:
        return {}
    if not isinstance(meta, dict):
        raise UsageError("metadata must be a mapping of keys to JSON values")
    return {str(k): _json_value(v, str(k)) for k, v in meta.items()}


def _json_value(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):  # numpy integers too
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            raise UsageError(f"metadata {where}={value!r} is not a finite number: JSON has no NaN or Infinity "
                             "(and 1e309 overflows to infinity); store it as a string if you mean it")
        return value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise UsageError(f"metadata {where} has a key {k!r} that is not a string")
            out[k] = _json_value(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_json_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise UsageError(f"metadata {where} is a {type(value).__name__}, which JSON cannot hold")


def check_gates(label: str, metrics: dict[str, float], requirements: list[tuple[str, str, float]]) -> None:
    failures = []
    for metric, op, bound in requirements:
        value = metrics.get(metric)
        if value is None:
            failures.append(f"{metric} is not recorded")
        elif not _OPS[op](value, bound):
            failures.append(f"{metric}={value:g} is not {op} {bound:g}")
    if failures:
        raise GateFailedError(f"{label} fails the promotion gate: " + "; ".join(failures),
                              details={"failures": failures, "metrics": metrics})

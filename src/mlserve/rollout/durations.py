"""Parsing of the human inputs of a rollout: durations (``0.1s``, ``2m``, ``1h30m``) and step lists."""

from __future__ import annotations

import re

from mlserve.errors import UsageError

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str | float | int, *, what: str = "duration") -> float:
    """Seconds in ``text``: ``90`` (seconds), ``0.1s``, ``500ms``, ``2m``, ``1h30m``. Negative is refused."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        raw = text.strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", raw):
            seconds = float(raw)
        elif raw and _PART.sub("", raw) == "":
            seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(raw))
        else:
            raise UsageError(f"bad {what} {text!r}: use e.g. 30s, 0.1s, 500ms, 2m, 1h30m")
    if seconds < 0:
        raise UsageError(f"bad {what} {text!r}: it cannot be negative")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds < 120:
        return f"{seconds:g}s"
    if seconds < 7200:
        return f"{seconds / 60:g}m"
    return f"{seconds / 3600:g}h"


def parse_steps(text: str | list[int]) -> list[int]:
    """Canary traffic percentages, e.g. ``5,25,50,100``: integers in 1..100, strictly increasing."""
    if isinstance(text, list):
        parts = [str(p) for p in text]
    else:
        parts = [p.strip().rstrip("%") for p in text.split(",") if p.strip()]
    if not parts:
        raise UsageError("--steps is empty: give percentages such as 5,25,50,100")
    try:
        steps = [int(p) for p in parts]
    except ValueError:
        raise UsageError(f"bad --steps {text!r}: use comma-separated integer percentages such as 5,25,50,100") from None
    if any(not 1 <= s <= 100 for s in steps):
        raise UsageError(f"bad --steps {text!r}: every step must be a percentage from 1 to 100")
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise UsageError(f"bad --steps {text!r}: steps must increase strictly")
    return steps

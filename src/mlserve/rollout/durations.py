"""The one duration grammar of mlserve rollout (options and analysis files), and step lists.

A duration is a number of seconds (``90``, ``0.5``) or numbers with units, largest first or in any
order: ``0.1s``, ``500ms``, ``2m``, ``1h30m``, ``1.5s``, ``1w``. Units: ``ms``, ``s``, ``m``, ``h``,
``d``, ``w``, ``y`` (365 days, as in Prometheus). Negative values are refused. PromQL needs integer
units inside ``[...]``: :func:`prometheus_duration` writes a duration the way Prometheus reads it
(``1.5s`` becomes ``1500ms``).
"""

from __future__ import annotations

import re

from mlserve.errors import UsageError

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
EXAMPLES = "use e.g. 30s, 0.1s, 500ms, 2m, 1h30m"


def seconds(text: str | float | int) -> float:
    """Seconds in ``text``; ``ValueError`` (with the accepted forms) if it is not a duration."""
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r} ({EXAMPLES})")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        raw = text.strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", raw):
            value = float(raw)
        elif raw and _PART.sub("", raw) == "":
            value = sum(float(n) * _UNITS[u] for n, u in _PART.findall(raw))
        else:
            raise ValueError(f"not a duration: {text!r} ({EXAMPLES})")
    if value < 0:
        raise ValueError(f"a duration cannot be negative: {text!r}")
    return value


def parse_duration(text: str | float | int, *, what: str = "duration") -> float:
    """Seconds in ``text`` for an option named ``what``; a :class:`UsageError` naming it otherwise."""
    try:
        return seconds(text)
    except ValueError:
        try:
            negative = not isinstance(text, str) and float(text) < 0
        except (TypeError, ValueError):
            negative = False
        if negative or (isinstance(text, str) and text.strip().startswith("-")):
            raise UsageError(f"bad {what} {text!r}: it cannot be negative") from None
        raise UsageError(f"bad {what} {text!r}: {EXAMPLES}") from None


def prometheus_duration(value: float) -> str:
    """``value`` seconds as a Prometheus duration (integer units): 60 -> 1m, 1.5 -> 1500ms, 90 -> 90s."""
    millis = round(value * 1000)
    if millis <= 0:
        return "0s"
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if millis % size == 0:
            return f"{millis // size}{unit}"
    return f"{millis}ms"


def format_duration(seconds_: float) -> str:
    if seconds_ < 1:
        return f"{seconds_ * 1000:g}ms"
    if seconds_ < 120:
        return f"{seconds_:g}s"
    if seconds_ < 7200:
        return f"{seconds_ / 60:g}m"
    return f"{seconds_ / 3600:g}h"


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

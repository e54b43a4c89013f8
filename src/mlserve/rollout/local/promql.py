"""Enough PromQL to run an analysis on scraped samples, with Prometheus's own arithmetic.

When ``--target local`` has no Prometheus (no ``--prometheus-url``), the judge scrapes the server's
``/metrics`` itself (:mod:`mlserve.rollout.local.scrape`) and evaluates the analysis's queries here,
so the same analysis file (or the default one) works with and without a Prometheus. Supported:

* instant selectors ``name{label="v", label!="v", label=~"re", label!~"re"}`` (5 minute lookback)
  and range selectors ``name{...}[1m]`` inside ``rate`` and ``increase``;
* ``rate``/``increase`` with Prometheus's extrapolation (``extrapolatedRate``: counter resets, the
  extrapolation to the window's edges, never below zero), ``histogram_quantile`` (linear
  interpolation within the bucket, the ``+Inf`` bucket answered by the highest finite bound),
  ``vector(s)``, ``scalar(v)``;
* aggregations ``sum``, ``avg``, ``min``, ``max``, ``count`` with ``by (...)`` or ``without (...)``;
* ``+ - * /`` between scalars and vectors (one-to-one matching on identical label sets), unary
  minus, parentheses, and ``or``.

Anything else is a :class:`~mlserve.errors.UsageError` that names the construct and says to give
``--prometheus-url`` (the parser is :mod:`mlserve.rollout.local.promql_syntax`; this module evaluates). Rates over windows where a series has fewer than two scrapes give no value,
as in Prometheus: "no data" stays "no data".
"""

from __future__ import annotations

import math
from typing import Any, Callable, Union

from mlserve.errors import UsageError
from mlserve.rollout.local.promql_syntax import Agg, Bin, Call, Num, Selector, metric_names, parse, parse_duration

LOOKBACK = 300.0  # seconds an instant selector looks back for the latest sample (Prometheus's default)

Labels = frozenset  # of (name, value) pairs; "__name__" included for raw series
Vector = dict  # Labels -> float
Value = Union[float, "dict[Labels, float]"]
Series = dict  # Labels -> list[(t, value)], in time order


# ------------------------------------------------------------------------------------------ evaluation

def _without_name(labels: Labels) -> Labels:
    return frozenset((k, v) for k, v in labels if k != "__name__")


def extrapolated_rate(samples: list[tuple[float, float]], start: float, end: float, *, is_rate: bool) -> float | None:
    """Prometheus's ``extrapolatedRate`` (promql/functions.go) over the samples in the window (start, end]."""
    if len(samples) < 2:
        return None
    first_t, first_v = samples[0]
    last_t, last_v = samples[-1]
    result = last_v - first_v
    previous = first_v
    for _, v in samples[1:]:
        if v < previous:  # a counter reset
            result += previous
        previous = v
    duration_to_start = first_t - start
    duration_to_end = end - last_t
    sampled = last_t - first_t
    average = sampled / (len(samples) - 1)
    if sampled <= 0:
        return None
    if result > 0 and first_v >= 0:
        duration_to_zero = sampled * (first_v / result)
        duration_to_start = min(duration_to_start, duration_to_zero)
    threshold = average * 1.1
    interval = sampled
    interval += duration_to_start if duration_to_start < threshold else average / 2
    interval += duration_to_end if duration_to_end < threshold else average / 2
    result *= interval / sampled
    return result / (end - start) if is_rate else result


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus's ``bucketQuantile``: ``buckets`` are (upper bound, cumulative count)."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    buckets = sorted(buckets)
    if len(buckets) < 2 or not math.isinf(buckets[-1][0]):
        return math.nan
    # make the counts monotonic (scrapes of separate buckets are not atomic)
    fixed, top = [], 0.0
    for bound, count in buckets:
        top = max(top, count)
        fixed.append((bound, top))
    total = fixed[-1][1]
    if total == 0:
        return math.nan
    rank = q * total
    b = next(i for i, (_, count) in enumerate(fixed) if count >= rank)
    if b == len(fixed) - 1:
        return fixed[-2][0]
    if b == 0 and fixed[0][0] <= 0:
        return fixed[0][0]
    start, below = (0.0, 0.0) if b == 0 else (fixed[b - 1][0], fixed[b - 1][1])
    end, count = fixed[b]
    in_bucket = count - below
    if in_bucket == 0:
        return end
    return start + (end - start) * ((rank - below) / in_bucket)


def _divide(a: float, b: float) -> float:
    if b == 0:
        return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)
    return a / b


_ARITH: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": _divide,
}


class Evaluator:
    """Evaluates parsed queries at a time over ``series``: {labels (with __name__): [(unix time, value), ...]}."""

    def __init__(self, series: Series, query: str = "") -> None:
        self.series = series
        self.query = query

    def _select(self, sel: Selector) -> list[tuple[Labels, list[tuple[float, float]]]]:
        out = []
        for labels, samples in self.series.items():
            as_dict = dict(labels)
            if sel.name is not None and as_dict.get("__name__") != sel.name:
                continue
            if all(m.matches(as_dict) for m in sel.matchers):
                out.append((labels, samples))
        return out

    def at(self, node: Any, t: float) -> Value:
        if isinstance(node, Num):
            return node.value
        if isinstance(node, Selector):
            if node.range is not None:
                raise UsageError(f"a range selector outside rate()/increase() in the query {self.query!r}")
            found: dict[Labels, float] = {}
            for labels, samples in self._select(node):
                recent = [v for ts, v in samples if t - LOOKBACK < ts <= t]
                if recent:
                    found[labels] = recent[-1]
            return found
        if isinstance(node, Call):
            return self._call(node, t)
        if isinstance(node, Agg):
            return self._aggregate(node, t)
        if isinstance(node, Bin):
            return self._binary(node, t)
        raise UsageError(f"cannot evaluate {node!r}")  # pragma: no cover - the parser builds nothing else

    def _call(self, node: Call, t: float) -> Value:
        if node.fn in ("rate", "increase"):
            sel = node.args[0]
            out: dict[Labels, float] = {}
            for labels, samples in self._select(sel):
                window = [(ts, v) for ts, v in samples if t - sel.range < ts <= t]
                value = extrapolated_rate(window, t - sel.range, t, is_rate=node.fn == "rate")
                if value is not None:
                    out[_without_name(labels)] = value
            return out
        if node.fn == "vector":
            value = self.at(node.args[0], t)
            if not isinstance(value, float):
                raise UsageError(f"vector() takes a number in the query {self.query!r}")
            return {frozenset(): value}
        if node.fn == "scalar":
            vec = self.at(node.args[0], t)
            if isinstance(vec, float):
                return vec
            return next(iter(vec.values())) if len(vec) == 1 else math.nan
        # histogram_quantile
        q = self.at(node.args[0], t)
        vec = self.at(node.args[1], t)
        if not isinstance(q, float) or isinstance(vec, float):
            raise UsageError(f"histogram_quantile(number, vector) in the query {self.query!r}")
        groups: dict[Labels, list[tuple[float, float]]] = {}
        for labels, value in vec.items():
            as_dict = dict(labels)
            if "le" not in as_dict:
                continue
            try:
                bound = float(as_dict["le"])
            except ValueError:
                continue
            key = frozenset((k, v) for k, v in labels if k not in ("le", "__name__"))
            groups.setdefault(key, []).append((bound, value))
        return {key: bucket_quantile(q, buckets) for key, buckets in groups.items()}

    def _aggregate(self, node: Agg, t: float) -> Value:
        vec = self.at(node.expr, t)
        if isinstance(vec, float):
            raise UsageError(f"{node.op}() takes a vector in the query {self.query!r}")
        groups: dict[Labels, list[float]] = {}
        for labels, value in vec.items():
            if node.without:
                key = frozenset((k, v) for k, v in labels if k not in node.labels and k != "__name__")
            else:
                key = frozenset((k, v) for k, v in labels if k in node.labels)
            groups.setdefault(key, []).append(value)
        reduce: dict[str, Callable[[list[float]], float]] = {
            "sum": sum, "avg": lambda xs: sum(xs) / len(xs), "min": min, "max": max, "count": lambda xs: float(len(xs))}
        return {key: float(reduce[node.op](values)) for key, values in groups.items()}

    def _binary(self, node: Bin, t: float) -> Value:
        left, right = self.at(node.left, t), self.at(node.right, t)
        if node.op == "or":
            if isinstance(left, float) or isinstance(right, float):
                raise UsageError(f"'or' needs vectors on both sides in the query {self.query!r}")
            seen = {_without_name(k) for k in left}
            return {**left, **{k: v for k, v in right.items() if _without_name(k) not in seen}}
        fn = _ARITH[node.op]
        if isinstance(left, float) and isinstance(right, float):
            return fn(left, right)
        if isinstance(left, float):
            return {_without_name(k): fn(left, v) for k, v in right.items()}  # type: ignore[union-attr]
        if isinstance(right, float):
            return {_without_name(k): fn(v, right) for k, v in left.items()}
        rights = {_without_name(k): v for k, v in right.items()}
        out = {}
        for k, v in left.items():
            key = _without_name(k)
            if key in rights:
                out[key] = fn(v, rights[key])
        return out


__all__ = ["parse", "metric_names", "Evaluator", "extrapolated_rate", "bucket_quantile", "parse_duration"]

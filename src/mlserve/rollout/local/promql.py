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
``--prometheus-url``. Rates over windows where a series has fewer than two scrapes give no value,
as in Prometheus: "no data" stays "no data".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Union

from mlserve.errors import UsageError

LOOKBACK = 300.0  # seconds an instant selector looks back for the latest sample (Prometheus's default)

Labels = frozenset  # of (name, value) pairs; "__name__" included for raw series
Vector = dict  # Labels -> float
Value = Union[float, "dict[Labels, float]"]
Series = dict  # Labels -> list[(t, value)], in time order


# ------------------------------------------------------------------------------------------ syntax

@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # = != =~ !~
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        got = labels.get(self.name, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        hit = re.fullmatch(self.value, got) is not None
        return hit if self.op == "=~" else not hit


@dataclass(frozen=True)
class Selector:
    name: str | None
    matchers: tuple[Matcher, ...]
    range: float | None = None  # seconds, for a range selector

    def metric_names(self) -> set[str]:
        names = {self.name} if self.name else set()
        names |= {m.value for m in self.matchers if m.name == "__name__" and m.op == "="}
        return names


@dataclass(frozen=True)
class Call:
    fn: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Agg:
    op: str
    expr: Any
    labels: tuple[str, ...] = ()
    without: bool = False


@dataclass(frozen=True)
class Bin:
    op: str
    left: Any
    right: Any


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<duration>\[[^\]]*\])
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^(){},=<>])
""", re.VERBOSE)

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
AGGREGATIONS = ("sum", "avg", "min", "max", "count")
FUNCTIONS = ("rate", "increase", "histogram_quantile", "vector", "scalar")


def _unsupported(what: str, query: str) -> UsageError:
    return UsageError(f"the built-in scraper cannot evaluate {what} in the query {query!r}",
                      hint="give --prometheus-url to judge with a real Prometheus, or use the default analysis")


def parse_duration(text: str, query: str = "") -> float:
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise UsageError(f"bad duration {text!r} in the query {query!r}")
    return total


def _unquote(raw: str) -> str:
    body = raw[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(query):
            m = _TOKEN.match(query, pos)
            if m is None:
                raise UsageError(f"cannot parse the query {query!r} at {query[pos:pos + 20]!r}")
            pos = m.end()
            if m.lastgroup != "space":
                self.tokens.append((m.lastgroup or "", m.group()))
        self.i = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else ("end", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if value is not None and tok[1] != value:
            raise UsageError(f"expected {value!r} in the query {self.query!r}, found {tok[1] or 'the end'!r}")
        self.i += 1
        return tok

    def parse(self) -> Any:
        node = self.expr()
        if self.peek()[0] != "end":
            raise UsageError(f"unexpected {self.peek()[1]!r} in the query {self.query!r}")
        return node

    def expr(self) -> Any:
        node = self.additive()
        while self.peek() == ("ident", "or"):
            self.take()
            node = Bin("or", node, self.additive())
        if self.peek()[0] == "ident" and self.peek()[1] in ("and", "unless"):
            raise _unsupported(f"'{self.peek()[1]}'", self.query)
        return node

    def additive(self) -> Any:
        node = self.multiplicative()
        while self.peek()[1] in ("+", "-"):
            op = self.take()[1]
            node = Bin(op, node, self.multiplicative())
        if self.peek()[1] in ("==", "!=", ">", "<", ">=", "<="):
            raise _unsupported(f"the comparison {self.peek()[1]!r}", self.query)
        return node

    def multiplicative(self) -> Any:
        node = self.unary()
        while self.peek()[1] in ("*", "/"):
            op = self.take()[1]
            node = Bin(op, node, self.unary())
        if self.peek()[1] in ("%", "^"):
            raise _unsupported(f"the operator {self.peek()[1]!r}", self.query)
        return node

    def unary(self) -> Any:
        if self.peek()[1] == "-":
            self.take()
            return Bin("*", Num(-1.0), self.unary())
        if self.peek()[1] == "+":
            self.take()
        return self.primary()

    def primary(self) -> Any:
        kind, text = self.peek()
        if kind == "number":
            self.take()
            return Num(float(text))
        if text == "(":
            self.take()
            node = self.expr()
            self.take(")")
            return node
        if kind == "ident":
            if text in ("Inf", "NaN", "inf", "nan"):
                self.take()
                return Num(float(text))
            if text in AGGREGATIONS:
                return self.aggregation()
            if self.peek(1)[1] == "(":
                if text not in FUNCTIONS:
                    raise _unsupported(f"the function {text}()", self.query)
                return self.call()
            return self.selector()
        if text == "{":
            return self.selector()
        raise UsageError(f"unexpected {text or 'end'!r} in the query {self.query!r}")

    def _label_list(self) -> tuple[str, ...]:
        self.take("(")
        names = []
        while self.peek()[1] != ")":
            names.append(self.take()[1])
            if self.peek()[1] == ",":
                self.take()
        self.take(")")
        return tuple(names)

    def aggregation(self) -> Agg:
        op = self.take()[1]
        labels: tuple[str, ...] = ()
        without = False
        if self.peek()[1] in ("by", "without"):
            without = self.take()[1] == "without"
            labels = self._label_list()
        self.take("(")
        inner = self.expr()
        self.take(")")
        if self.peek()[1] in ("by", "without"):
            without = self.take()[1] == "without"
            labels = self._label_list()
        return Agg(op, inner, labels, without)

    def call(self) -> Call:
        fn = self.take()[1]
        self.take("(")
        args = []
        while self.peek()[1] != ")":
            args.append(self.expr())
            if self.peek()[1] == ",":
                self.take()
        self.take(")")
        wants_range = fn in ("rate", "increase")
        if wants_range and (len(args) != 1 or not isinstance(args[0], Selector) or args[0].range is None):
            raise UsageError(f"{fn}() takes one range selector, e.g. {fn}(x[1m]), in the query {self.query!r}")
        if fn == "histogram_quantile" and len(args) != 2:
            raise UsageError(f"histogram_quantile() takes two arguments, in the query {self.query!r}")
        if fn in ("vector", "scalar") and len(args) != 1:
            raise UsageError(f"{fn}() takes one argument, in the query {self.query!r}")
        return Call(fn, tuple(args))

    def selector(self) -> Selector:
        name = None
        if self.peek()[0] == "ident":
            name = self.take()[1]
        matchers: list[Matcher] = []
        if self.peek()[1] == "{":
            self.take()
            while self.peek()[1] != "}":
                label = self.take()[1]
                op = self.take()[1]
                if op not in ("=", "!=", "=~", "!~"):
                    raise UsageError(f"bad label matcher {label}{op} in the query {self.query!r}")
                kind, raw = self.take()
                if kind != "string":
                    raise UsageError(f"the label matcher {label}{op} needs a quoted value in the query {self.query!r}")
                matchers.append(Matcher(label, op, _unquote(raw)))
                if self.peek()[1] == ",":
                    self.take()
            self.take("}")
        if name is None and not matchers:
            raise UsageError(f"an empty selector in the query {self.query!r}")
        window = None
        if self.peek()[0] == "duration":
            window = parse_duration(self.take()[1][1:-1].strip(), self.query)
        if self.peek()[1] in ("offset", "@"):
            raise _unsupported(f"'{self.peek()[1]}'", self.query)
        return Selector(name, tuple(matchers), window)


def parse(query: str) -> Any:
    return _Parser(query).parse()


def metric_names(node: Any) -> set[str]:
    """Every metric name a parsed query reads (what the scraper must keep)."""
    if isinstance(node, Selector):
        return node.metric_names()
    if isinstance(node, Call):
        return set().union(*(metric_names(a) for a in node.args)) if node.args else set()
    if isinstance(node, Agg):
        return metric_names(node.expr)
    if isinstance(node, Bin):
        return metric_names(node.left) | metric_names(node.right)
    return set()


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

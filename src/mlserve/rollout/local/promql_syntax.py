"""The syntax of the PromQL subset :mod:`mlserve.rollout.local.promql` evaluates: its tokens, nodes and parser.

:func:`parse` turns a query into a tree of :class:`Num`, :class:`Selector`, :class:`Call`,
:class:`Agg` and :class:`Bin` nodes; a construct outside the subset is a
:class:`~mlserve.errors.UsageError` that names it and says to give ``--prometheus-url``.
:func:`metric_names` lists the metrics a query reads (what the scraper keeps).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mlserve.errors import UsageError

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


__all__ = ["Agg", "Bin", "Call", "Matcher", "Num", "Selector", "metric_names", "parse", "parse_duration"]

"""Traffic splitting between the variants of one served model: the split document, weights, assignment.

A served model has one or more *variants* (``stable``, ``canary``, or names from a split file), each
a REF with a non-negative weight; a request goes to variant ``i`` with probability ``w_i / sum(w)``.

Two ways to assign a request:

- **by weight** (no sticky key): a uniform random draw against the cumulative weights;
- **sticky by key** (a header or request parameter holds a user id ...): weighted rendezvous hashing.
  For each variant with ``w > 0``, ``u = SHA-256(salt "\\n" variant "\\n" key)`` (its first 53 bits, as a
  number in (0, 1)) gives the score ``w / -ln(u)``; the highest score wins. ``-ln(u) / w`` is an
  exponential variable of rate ``w``, so the winner is ``i`` with probability exactly ``w_i / sum(w)``.
  Nothing depends on the process (no ``hash()``, no seed): the same key, salt and weights give the same
  variant in every process, on every host, after every restart. And the buckets are monotone: raising
  one variant's weight only raises its own score, so keys move only *into* it (lowering it moves keys
  only out of it); adding a variant only takes keys into it, removing one moves only its own keys.
  In a two-variant split, canary 10% -> 20% (stable 90% -> 80%) moves keys from stable to canary only.

Scores closer than 1e-9 (relative) are compared again in exact decimal arithmetic (``decimal``'s
``ln`` is correctly rounded), so a platform's ``log`` rounding can never change a key's variant.

The split document (version 1) is what a ``--split`` file holds, what ``GET /v2/mlserve/split``
answers and what ``PUT`` takes (docs/serve.md)::

    {"v": 1, "model": "churn", "experiment": "churn-canary", "sticky": {"header": "X-User-Id"},
     "variants": [{"name": "stable", "ref": "churn@production", "weight": 90},
                  {"name": "canary", "ref": "churn@staging", "weight": 10}]}
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
import re
from dataclasses import dataclass, field, replace
from decimal import Context, Decimal
from typing import Any, Sequence

from mlserve.serve.errors import BadRequest

SPLIT_VERSION = 1
STABLE = "stable"
CANARY = "canary"
MAX_KEY_LENGTH = 1024
MEMO_SIZE = 100_000  # keys whose variant a Router remembers (a router lives until the next weight change)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")  # an HTTP token (RFC 9110)
_PARAMETER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
_TIE = 1e-9
_EXACT = Context(prec=50)
_TWO_54 = Decimal(2 ** 54)
_2_53 = 2.0 ** -53
_sha256 = hashlib.sha256
_log = math.log

# fields of a split document: what a writer may send, and what GET adds (accepted back, ignored)
_TOP = {"v", "model", "experiment", "salt", "sticky", "variants"}
_TOP_READ_ONLY = {"revision", "updated"}
_VARIANT = {"name", "ref", "weight"}
_VARIANT_READ_ONLY = {"share", "version", "sha256", "ready", "loading", "follows", "reload_failed", "swaps"}


class SplitError(ValueError):
    """A split document or option that does not hold together; the message names the field."""


@dataclass(frozen=True)
class Sticky:
    """Where a request's key comes from: an HTTP header (also gRPC metadata) and/or an OIP request parameter.

    The header is read first; without it, the parameter. A request with neither is assigned by weight.
    """

    header: str | None = None
    parameter: str | None = None
    header_key: bytes | None = field(default=None, init=False, compare=False, repr=False)
    """The header as ASGI and gRPC metadata spell it (lower case)."""

    def __post_init__(self) -> None:
        if self.header is not None and not _HEADER.match(self.header):
            raise SplitError(f"sticky header {self.header!r:.80} is not an HTTP header name")
        if self.parameter is not None and not _PARAMETER.match(self.parameter):
            raise SplitError(f"sticky parameter {self.parameter!r:.80} is not a usable parameter name "
                             "(letters, digits, '_', '.', '-'; at most 128)")
        if self.header is None and self.parameter is None:
            raise SplitError("sticky needs a header or a parameter")
        object.__setattr__(self, "header_key", self.header.lower().encode("ascii") if self.header else None)

    def to_json(self) -> dict[str, Any]:
        return {"header": self.header, "parameter": self.parameter}


@dataclass(frozen=True)
class VariantSpec:
    name: str
    ref: str
    weight: float


@dataclass(frozen=True)
class SplitSpec:
    """One model's variants with their weights, and how requests are assigned to them."""

    variants: tuple[VariantSpec, ...]
    experiment: str | None = None  # None: the model's name
    salt: str | None = None  # None: the experiment's name
    sticky: Sticky | None = None
    model: str | None = None  # as the document names it (checked against the served model)

    def experiment_for(self, model: str) -> str:
        return self.experiment or model

    def salt_for(self, model: str) -> str:
        return self.salt or self.experiment_for(model)


# ------------------------------------------------------------------------------------------ parsing


def check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise SplitError(f"{what} {name!r:.80} must be 1-64 letters, digits, '.', '_' or '-' (starting with a letter "
                         "or digit)")
    return name


def check_weight(weight: Any, what: str) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise SplitError(f"{what} must be a number, got {weight!r:.40}")
    value = float(weight)
    if not math.isfinite(value) or value < 0:
        raise SplitError(f"{what} {weight!r} must be a finite number >= 0")
    return value


def _one_line(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or "\n" in value or "\r" in value or len(value) > 256:
        raise SplitError(f"{what} must be a non-empty string on one line (at most 256 characters)")
    return value


def _sticky(value: Any) -> Sticky | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SplitError("sticky must be an object {\"header\": ..., \"parameter\": ...} or null")
    unknown = sorted(set(value) - {"header", "parameter"})
    if unknown:
        raise SplitError(f"sticky has unknown field(s) {', '.join(unknown)} (it takes header and parameter)")
    header, parameter = value.get("header"), value.get("parameter")
    for what, item in (("sticky.header", header), ("sticky.parameter", parameter)):
        if item is not None and not isinstance(item, str):
            raise SplitError(f"{what} must be a string or null")
    return Sticky(header=header or None, parameter=parameter or None)


def parse_split(doc: Any, *, extra: frozenset[str] = frozenset()) -> SplitSpec:
    """A split document (version 1) as a :class:`SplitSpec`; ``extra``: more top-level fields the caller reads.

    Every problem is a :class:`SplitError` naming the field. Fields that ``GET`` adds (revision,
    share, version ...) are accepted and ignored, so a document read from the server can be sent back.
    """
    _check_object(doc, "a split document")
    unknown = sorted(set(doc) - _TOP - _TOP_READ_ONLY - extra)
    if unknown:
        raise SplitError(f"unknown field(s) {', '.join(unknown)} (a split document has {', '.join(sorted(_TOP))})")
    model = doc.get("model")
    if model is not None and not isinstance(model, str):
        raise SplitError("model must be a string")
    experiment = _one_line(doc["experiment"], "experiment") if doc.get("experiment") is not None else None
    salt = _one_line(doc["salt"], "salt") if doc.get("salt") is not None else None
    sticky = _sticky(doc.get("sticky"))
    raw = doc.get("variants")
    if not isinstance(raw, list) or not raw:
        raise SplitError('variants must be a non-empty list of {"name", "ref", "weight"}')
    variants: list[VariantSpec] = []
    for i, item in enumerate(raw):
        field = f"variants[{i}]"
        if not isinstance(item, dict):
            raise SplitError(f"{field} must be an object with name, ref and weight")
        unknown = sorted(set(item) - _VARIANT - _VARIANT_READ_ONLY)
        if unknown:
            raise SplitError(f"{field} has unknown field(s) {', '.join(unknown)} (a variant has name, ref, weight)")
        name = check_name(item.get("name"), f"{field}.name")
        field = f"variants[{i}] ({name})"
        ref = item.get("ref")
        if not isinstance(ref, str) or not ref.strip():
            raise SplitError(f"{field}.ref must be NAME@STAGE, NAME:VERSION or a path to an .onnx file")
        if "weight" not in item:
            raise SplitError(f"{field} has no weight")
        variants.append(VariantSpec(name=name, ref=ref, weight=check_weight(item["weight"], f"{field}.weight")))
    _check_variants(variants)
    return SplitSpec(variants=tuple(variants), experiment=experiment, salt=salt, sticky=sticky, model=model)


@dataclass(frozen=True)
class SplitUpdate:
    """A partial change (``POST``): new weights and refs of some variants; the others keep theirs."""

    weights: dict[str, float]
    refs: dict[str, str]
    model: str | None = None


def parse_update(doc: Any, *, extra: frozenset[str] = frozenset()) -> SplitUpdate:
    """``{"v": 1, "weights": {"canary": 20, "stable": 80}, "refs": {"canary": "churn:3"}}``."""
    _check_object(doc, "a split update")
    unknown = sorted(set(doc) - {"v", "model", "weights", "refs"} - extra)
    if unknown:
        raise SplitError(f"unknown field(s) {', '.join(unknown)} (an update has weights and refs)")
    model = doc.get("model")
    if model is not None and not isinstance(model, str):
        raise SplitError("model must be a string")
    weights, refs = doc.get("weights", {}), doc.get("refs", {})
    for what, value in (("weights", weights), ("refs", refs)):
        if not isinstance(value, dict):
            raise SplitError(f"{what} must be an object {{variant: value}}")
    if not weights and not refs:
        raise SplitError('an update needs weights or refs, e.g. {"weights": {"canary": 20, "stable": 80}}')
    out_w = {check_name(k, "weights: variant"): check_weight(w, f"weights.{k}") for k, w in weights.items()}
    out_r: dict[str, str] = {}
    for k, ref in refs.items():
        check_name(k, "refs: variant")
        if not isinstance(ref, str) or not ref.strip():
            raise SplitError(f"refs.{k} must be NAME@STAGE, NAME:VERSION or a path to an .onnx file")
        out_r[k] = ref
    return SplitUpdate(weights=out_w, refs=out_r, model=model)


def _check_object(doc: Any, what: str) -> None:
    if not isinstance(doc, dict):
        raise SplitError(f"{what} is a JSON object, got {type(doc).__name__}")
    version = doc.get("v", SPLIT_VERSION)
    if version != SPLIT_VERSION:
        raise SplitError(f"{what} of version {version!r:.20}: this mlserve reads version {SPLIT_VERSION}")


def _check_variants(variants: Sequence[VariantSpec]) -> None:
    names = [v.name for v in variants]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SplitError(f"variant {dup[0]!r} is given twice")
    if not any(v.weight > 0 for v in variants):
        raise SplitError("at least one variant needs a weight above 0")


def canary_split(ref: str, canary: str | None, canary_weight: float, sticky: Sticky | None,
                 experiment: str | None) -> SplitSpec:
    """``REF --canary CANARY --canary-weight W``: stable gets 100 - W percent, canary W (no canary: stable alone)."""
    if canary is None:
        return SplitSpec(variants=(VariantSpec(STABLE, ref, 100.0),), sticky=sticky, experiment=experiment)
    weight = check_weight(canary_weight, "--canary-weight")
    if weight > 100:
        raise SplitError(f"--canary-weight {canary_weight:g}: a percentage, 0 to 100")
    return SplitSpec(variants=(VariantSpec(STABLE, ref, 100.0 - weight), VariantSpec(CANARY, canary, weight)),
                     sticky=sticky, experiment=experiment)


def with_defaults(spec: SplitSpec, sticky: Sticky | None, experiment: str | None) -> SplitSpec:
    """Command-line sticky/experiment settings for a split file that does not set its own."""
    return replace(spec, sticky=spec.sticky or sticky, experiment=spec.experiment or experiment)


def apply_update(current: Sequence[VariantSpec], update: SplitUpdate) -> tuple[VariantSpec, ...]:
    """``current`` with the weights and refs of ``update``: a new name is added (it needs a ref), none removed."""
    out = {v.name: v for v in current}
    for name in {**update.weights, **update.refs}:
        old = out.get(name)
        if old is None and name not in update.refs:
            raise SplitError(f"variant {name!r} is not in the split (it has {', '.join(out)}); a new variant "
                             "needs a ref")
        ref = update.refs.get(name, old.ref if old else "")
        weight = update.weights.get(name, old.weight if old else 0.0)
        out[name] = VariantSpec(name, ref, weight)
    result = tuple(out.values())
    _check_variants(result)
    return result


# ------------------------------------------------------------------------------------------ assignment


def _unit(prefix: bytes, key: bytes) -> int:
    """53 bits of SHA-256(prefix + key): the numerator of a uniform number in (0, 1), see :func:`_uniform`."""
    return int.from_bytes(hashlib.sha256(prefix + key).digest()[:8], "big") >> 11


def _uniform(n: int) -> float:
    return (n + 0.5) * 2.0 ** -53  # exact in binary floating point; never 0, never 1


def _exact_score(weight: float, n: int) -> Decimal:
    u = _EXACT.divide(Decimal(2 * n + 1), _TWO_54)  # (n + 0.5) / 2**53, exact at 50 digits
    return _EXACT.divide(Decimal(weight), -_EXACT.ln(u))


class Router:
    """Immutable weights of one model's variants; picks a variant index per request (the hot path)."""

    __slots__ = ("names", "weights", "total", "salt", "_cum", "_prefixes", "_positive", "_last", "_memo", "only")

    def __init__(self, names: Sequence[str], weights: Sequence[float], salt: str) -> None:
        if len(names) != len(weights) or not names:
            raise SplitError("a split needs at least one variant, each with a weight")
        self.names = tuple(names)
        self.weights = tuple(float(w) for w in weights)
        if any(not math.isfinite(w) or w < 0 for w in self.weights):
            raise SplitError("weights must be finite numbers >= 0")
        self.total = sum(self.weights)
        if self.total <= 0:
            raise SplitError("at least one variant needs a weight above 0")
        self.salt = salt
        acc, cum = 0.0, []
        for w in self.weights:
            acc += w
            cum.append(acc)
        self._cum = cum
        self._prefixes = tuple(f"{salt}\n{name}\n".encode() for name in self.names)
        self._positive = tuple((i, p, w) for i, (p, w) in enumerate(zip(self._prefixes, self.weights)) if w > 0)
        positive = [i for i, w in enumerate(self.weights) if w > 0]
        self._last = positive[-1]
        self._memo: dict[str, int] = {}  # key -> index: users come back (a cache; emptied when full)
        self.only: int | None = positive[0] if len(positive) == 1 else None  # one variant takes everything

    def shares(self) -> tuple[float, ...]:
        return tuple(w / self.total for w in self.weights)

    def by_weight(self, draw: float | None = None) -> int:
        """A random variant, ``w_i / sum(w)`` each (``draw``: a number in [0, 1) instead of ``random.random()``)."""
        if self.only is not None:
            return self.only
        # bisect_right never lands on a zero-weight variant (its cumulative weight equals the one before)
        i = bisect.bisect_right(self._cum, (random.random() if draw is None else draw) * self.total)
        return i if i < len(self._cum) else self._last  # a draw rounded up to the total

    def by_key(self, key: str) -> int:
        """The variant of ``key``: the same in every process and on every host (weighted rendezvous hashing)."""
        if self.only is not None:
            return self.only
        memo = self._memo
        known = memo.get(key)
        if known is not None:
            return known
        if len(memo) >= MEMO_SIZE:
            memo.clear()
        memo[key] = index = self._hash(key)
        return index

    def _hash(self, key: str) -> int:
        data = key.encode("utf-8")
        best_i, best, second = -1, -1.0, -1.0
        for i, prefix, w in self._positive:
            n = int.from_bytes(_sha256(prefix + data).digest()[:8], "big") >> 11
            score = w / -_log((n + 0.5) * _2_53)
            if score > best:
                best_i, best, second = i, score, best
            elif score > second:
                second = score
        if second < best * (1 - _TIE):
            return best_i
        return pick(self.weights, [(i, _unit(prefix, data)) for i, prefix, _ in self._positive])  # a near tie


def pick(weights: Sequence[float], units: Sequence[tuple[int, int]]) -> int:
    """The winner among ``(index, 53-bit unit)`` candidates: the highest ``w / -ln(u)``.

    Scores within 1e-9 of the best (relative) are compared again exactly, so the result does not depend on
    how a platform rounds ``log``; of exactly equal scores the lowest index wins.
    """
    scores = [(weights[i] / -math.log(_uniform(n)), i, n) for i, n in units]
    best = max(scores, key=lambda s: (s[0], -s[1]))
    close = [s for s in scores if s[0] >= best[0] * (1 - _TIE)]
    if len(close) == 1:
        return best[1]
    return max(close, key=lambda s: (_exact_score(weights[s[1]], s[2]), -s[1]))[1]


def assign(key: str, weights: dict[str, float], salt: str) -> str:
    """The variant name of ``key`` under ``weights`` (``{name: weight}``, in order) and ``salt``."""
    router = Router(list(weights), list(weights.values()), salt)
    return router.names[router.by_key(key)]


def normalize_key(value: Any, what: str) -> str | None:
    """A sticky key as text: a string or an integer; empty means none (the request is assigned by weight)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadRequest(f"{what} is the sticky key: a string or an integer, got {type(value).__name__}")
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_KEY_LENGTH:
        raise BadRequest(f"{what} is the sticky key: at most {MAX_KEY_LENGTH} characters, got {len(text)}")
    return text or None

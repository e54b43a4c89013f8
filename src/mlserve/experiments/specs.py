"""What an analysis is asked to do, parsed and checked before any file is read.

Grammar of the command-line values (the Python API takes the same strings or the typed forms):

* a split: ``control=50,treatment=50`` (names and positive weights, in order; the first is the
  control unless told otherwise). Weights are relative: ``a=1,b=1`` is the same split.
* a metric: ``NAME`` or ``NAME:KIND`` with KIND ``auto`` (default: binary when every value is 0/1 or
  true/false, else continuous), ``binary`` or ``continuous``.
* a covariate: ``METRIC=COLUMN`` (CUPED: COLUMN holds METRIC's pre-period value), or ``COLUMN`` alone
  when there is one metric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

from mlserve.errors import UsageError

KINDS = ("auto", "binary", "continuous")
MISSING_POLICIES = ("error", "zero", "drop")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Literal["auto", "binary", "continuous"] = "auto"
    lower_is_better: bool = False
    covariate: str | None = None


@dataclass(frozen=True)
class AnalysisSpec:
    metrics: tuple[MetricSpec, ...]
    key: str = "key"
    variant: str = "variant"
    split: tuple[tuple[str, float], ...] | None = None
    control: str | None = None
    experiment: str | None = None
    alpha: float = 0.05
    srm_threshold: float = 0.001
    mde: float | None = None
    mde_relative: float | None = None
    sequential: bool = False
    mixing: float = 0.05
    mann_whitney: bool = False
    missing_outcomes: str = "error"
    drop_duplicate_keys: bool = False


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise UsageError(f"{what}: {text!r} is not a finite number")
    return value


def parse_split(spec: str | Mapping[str, float] | Sequence[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    """``control=50,treatment=50`` -> ``(("control", 50.0), ("treatment", 50.0))``."""
    if isinstance(spec, str):
        pairs = []
        for part in (p.strip() for p in spec.split(",")):
            name, sep, weight = part.partition("=")
            if not sep or not name.strip():
                raise UsageError(f"split {spec!r}: expected NAME=WEIGHT,NAME=WEIGHT (e.g. control=50,treatment=50), "
                                 f"got {part!r}")
            pairs.append((name.strip(), _number(weight.strip(), f"split weight of {name.strip()!r}")))
    else:
        items = spec.items() if isinstance(spec, Mapping) else spec
        pairs = [(str(n), float(w)) for n, w in items]
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        raise UsageError(f"split names a variant twice: {', '.join(names)}")
    if len(pairs) < 2:
        raise UsageError("a split needs at least two variants (a control and a treatment)")
    for name, weight in pairs:
        if not weight > 0 or not math.isfinite(weight):
            raise UsageError(f"split weight of {name!r} must be a positive number, not {weight:g}")
    return tuple(pairs)


def parse_metric(spec: str | MetricSpec) -> MetricSpec:
    if isinstance(spec, MetricSpec):
        if spec.kind not in KINDS:
            raise UsageError(f"metric {spec.name!r}: kind must be one of {', '.join(KINDS)}, not {spec.kind!r}")
        return spec
    name, sep, kind = spec.partition(":")
    name, kind = name.strip(), (kind.strip() or "auto") if sep else "auto"
    if not name:
        raise UsageError(f"metric {spec!r}: expected NAME or NAME:KIND")
    if kind not in KINDS:
        raise UsageError(f"metric {spec!r}: KIND must be one of {', '.join(KINDS)}, not {kind!r}")
    return MetricSpec(name=name, kind=kind)  # type: ignore[arg-type]


def build_metrics(metrics: Sequence[str | MetricSpec], lower_is_better: Sequence[str] = (),
                  covariates: Sequence[str] | Mapping[str, str] = ()) -> tuple[MetricSpec, ...]:
    """The metrics in order (the first is the primary), with their direction and CUPED covariate."""
    parsed = [parse_metric(m) for m in metrics]
    if not parsed:
        raise UsageError("name at least one metric (--metric COLUMN)")
    names = [m.name for m in parsed]
    if len(set(names)) != len(names):
        raise UsageError(f"a metric is named twice: {', '.join(names)}")
    for name in lower_is_better:
        if name not in names:
            raise UsageError(f"--lower-is-better {name!r} is not one of the metrics ({', '.join(names)})")
    pairs: dict[str, str] = {}
    items = covariates.items() if isinstance(covariates, Mapping) else [
        tuple(c.split("=", 1)) if "=" in c else (None, c) for c in covariates]
    for metric, column in items:
        if metric is None:
            if len(names) != 1:
                raise UsageError(f"covariate {column!r}: with several metrics, write METRIC=COLUMN")
            metric = names[0]
        metric, column = str(metric).strip(), str(column).strip()
        if metric not in names:
            raise UsageError(f"covariate for {metric!r}: not one of the metrics ({', '.join(names)})")
        if not column:
            raise UsageError(f"covariate for {metric!r}: the column name is empty")
        if metric in pairs:
            raise UsageError(f"metric {metric!r} has two covariates")
        pairs[metric] = column
    return tuple(MetricSpec(m.name, m.kind, m.lower_is_better or m.name in lower_is_better,
                            pairs.get(m.name, m.covariate)) for m in parsed)


def check_probability(value: float, what: str, *, low: float = 0.0, high: float = 1.0) -> float:
    if not (low < value < high):
        raise UsageError(f"{what} must be between {low:g} and {high:g} (exclusive), not {value:g}")
    return value


def build_spec(metrics: Sequence[str | MetricSpec], *, key: str = "key", variant: str = "variant",
               split: str | Mapping[str, float] | None = None, control: str | None = None,
               experiment: str | None = None, lower_is_better: Sequence[str] = (),
               covariates: Sequence[str] | Mapping[str, str] = (), alpha: float = 0.05,
               srm_threshold: float = 0.001, mde: float | None = None, mde_relative: float | None = None,
               sequential: bool = False, mixing: float = 0.05, mann_whitney: bool = False,
               missing_outcomes: str = "error", drop_duplicate_keys: bool = False) -> AnalysisSpec:
    """Check every option of an analysis; raise :class:`UsageError` (exit 2) on the first bad one."""
    parsed = build_metrics(metrics, lower_is_better, covariates)
    check_probability(alpha, "alpha")
    check_probability(srm_threshold, "the sample-ratio threshold")
    if mde is not None and mde_relative is not None:
        raise UsageError("give the no-difference margin once: --mde (absolute) or --mde-relative, not both")
    if mde is not None and not mde > 0:
        raise UsageError(f"--mde must be positive, not {mde:g}")
    if mde_relative is not None and not mde_relative > 0:
        raise UsageError(f"--mde-relative must be positive, not {mde_relative:g}")
    if not mixing > 0 or not math.isfinite(mixing):
        raise UsageError(f"the mSPRT mixing parameter (--tau) must be positive, not {mixing:g}")
    if missing_outcomes not in MISSING_POLICIES:
        raise UsageError(f"--missing-outcomes must be one of {', '.join(MISSING_POLICIES)}, not {missing_outcomes!r}")
    planned = parse_split(split) if split is not None else None
    if planned is not None and control is not None and control not in dict(planned):
        raise UsageError(f"control {control!r} is not in the split ({', '.join(n for n, _ in planned)})")
    columns = [key, variant, *(m.name for m in parsed), *(m.covariate for m in parsed if m.covariate)]
    for column in columns:
        if not column:
            raise UsageError("a column name is empty")
    if key == variant:
        raise UsageError(f"the key and the variant cannot be the same column ({key!r})")
    for m in parsed:
        if m.name in (key, variant):
            raise UsageError(f"metric {m.name!r} is also the key or the variant column")
    return AnalysisSpec(metrics=parsed, key=key, variant=variant, split=planned, control=control,
                        experiment=experiment, alpha=alpha, srm_threshold=srm_threshold, mde=mde,
                        mde_relative=mde_relative, sequential=sequential, mixing=mixing, mann_whitney=mann_whitney,
                        missing_outcomes=missing_outcomes, drop_duplicate_keys=drop_duplicate_keys)

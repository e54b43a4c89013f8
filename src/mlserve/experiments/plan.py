"""``ab plan``: how many units each variant needs, and how many days of traffic that takes.

Each treatment is compared with the control by a two-sided test at ``alpha_per_comparison``; the
sample size is the smallest that gives every treatment at least the asked power against the
minimum detectable effect (MDE).

* **Conversion metrics** (a baseline rate ``p``): the power of the pooled two-proportion z-test,
  ``Phi((|d| - z * s0) / s1) + Phi((-|d| - z * s0) / s1)``, where ``s0`` is the standard error under
  the null (the pooled rate) and ``s1`` under the alternative (each variant's own rate).
* **Continuous metrics** (a baseline mean and standard deviation ``sd``, the same in every variant):
  the exact power of the two-sample t-test, from the noncentral t distribution with
  ``n_c + n_t - 2`` degrees of freedom and noncentrality ``d / (sd * sqrt(1/n_c + 1/n_t))``.

**Several variants.** With ``k`` variants there are ``k - 1`` comparisons with the control, and
``ab analyze`` tests them (and every metric, with ``metrics``) together with Holm's correction. The
plan sizes each comparison at ``alpha / m`` (Bonferroni; ``m`` comparisons). That is also the right
size under Holm: Holm's first step uses exactly ``alpha / m`` and its later steps more, so whichever
treatments have an effect, each keeps at least the planned power; Holm only ever finds more.

**Unequal splits.** With weights, every variant gets ``weight / control weight`` times the
control's units (rounded up), and the control's count is the smallest that powers every treatment.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Callable, Literal, Mapping

from mlserve._deps import require
from mlserve.errors import UsageError
from mlserve.experiments.models import ExperimentPlan, VariantSize
from mlserve.experiments.specs import check_probability, parse_split

MAX_UNITS = 10 ** 10
"""Beyond this many units per variant the effect is called undetectable."""

_N = NormalDist()


def power_proportions(n_c: int, n_t: int, p_c: float, p_t: float, alpha: float) -> float:
    """Power of the two-sided pooled z-test of ``p_t`` against ``p_c`` with these group sizes."""
    z = _N.inv_cdf(1.0 - alpha / 2.0)
    pooled = (n_c * p_c + n_t * p_t) / (n_c + n_t)
    s0 = math.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    s1 = math.sqrt(p_c * (1 - p_c) / n_c + p_t * (1 - p_t) / n_t)
    d = abs(p_t - p_c)
    return _N.cdf((d - z * s0) / s1) + _N.cdf((-d - z * s0) / s1)


def power_means(n_c: int, n_t: int, diff: float, sd: float, alpha: float) -> float:
    """Power of the two-sided two-sample t-test for a difference ``diff`` of means with standard deviation ``sd``."""
    stats = require("scipy.stats", purpose="planning a continuous metric")
    df = n_c + n_t - 2
    crit = float(stats.t.ppf(1.0 - alpha / 2.0, df))
    nc = abs(diff) / (sd * math.sqrt(1 / n_c + 1 / n_t))
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def _smallest(ok: Callable[[int], bool], start: int = 2) -> int:
    """The smallest n >= start with ok(n), for ok monotone (doubling, then bisection)."""
    if ok(start):
        return start
    low, high = start, start * 2
    while not ok(high):
        low, high = high, high * 2
        if high > MAX_UNITS:
            raise UsageError(f"the minimum detectable effect is too small: more than {MAX_UNITS:,} units a variant "
                             "would be needed", hint="plan for a larger effect")
    while high - low > 1:
        mid = (low + high) // 2
        if ok(mid):
            high = mid
        else:
            low = mid
    return high


def _names(variants: int) -> list[str]:
    if variants == 2:
        return ["control", "treatment"]
    return ["control", *(f"treatment-{i}" for i in range(1, variants))]


def plan_experiment(*, baseline_rate: float | None = None, baseline_mean: float | None = None,
                    std: float | None = None, mde: float | None = None, mde_relative: float | None = None,
                    alpha: float = 0.05, power: float = 0.8, variants: int | None = None,
                    split: str | Mapping[str, float] | None = None,
                    correction: Literal["bonferroni", "none"] = "bonferroni", metrics: int = 1,
                    daily_traffic: float | None = None) -> ExperimentPlan:
    """Sample sizes for a conversion metric (``baseline_rate``) or a continuous one (``baseline_mean``, ``std``).

    The MDE is absolute (``mde``: 0.01 is one percentage point on a rate) or relative to the baseline
    (``mde_relative``: 0.05 is a 5% lift). ``daily_traffic`` is the number of units entering the
    experiment per day, all variants together.
    """
    if (baseline_rate is None) == (baseline_mean is None):
        raise UsageError("give either --baseline-rate (a conversion metric) or --baseline-mean with --std (a continuous one)")
    if (mde is None) == (mde_relative is None):
        raise UsageError("give the minimum detectable effect once: --mde (absolute) or --mde-relative")
    check_probability(alpha, "alpha")
    check_probability(power, "power")
    if correction not in ("bonferroni", "none"):
        raise UsageError(f"correction must be 'bonferroni' or 'none', not {correction!r}")
    if metrics < 1:
        raise UsageError(f"the number of metrics must be at least 1, not {metrics}")
    if daily_traffic is not None and not daily_traffic > 0:
        raise UsageError(f"daily traffic must be positive, not {daily_traffic:g}")
    if split is not None:
        pairs = list(parse_split(split))
        if variants is not None and variants != len(pairs):
            raise UsageError(f"--variants {variants} disagrees with the split's {len(pairs)} variants")
    else:
        count = 2 if variants is None else variants
        if count < 2:
            raise UsageError(f"an experiment needs at least 2 variants, not {count}")
        pairs = [(name, 1.0) for name in _names(count)]
    total_weight = sum(w for _, w in pairs)
    weights = [(name, w / total_weight) for name, w in pairs]
    warnings: list[str] = []

    if baseline_rate is not None:
        kind: Literal["binary", "continuous"] = "binary"
        check_probability(baseline_rate, "the baseline rate")
        if std is not None:
            raise UsageError("--std is for a continuous metric; a conversion rate's spread follows from the rate")
        base = baseline_rate
    else:
        kind = "continuous"
        if std is None or not std > 0:
            raise UsageError("a continuous metric needs --std, the standard deviation per unit (positive)")
        base = float(baseline_mean)  # type: ignore[arg-type]
    if mde is not None:
        delta = mde
    else:
        if base == 0:
            raise UsageError("a relative MDE needs a non-zero baseline")
        delta = mde_relative * base  # type: ignore[operator]
    if delta == 0 or not math.isfinite(delta):
        raise UsageError("the minimum detectable effect must be a non-zero number")
    if kind == "binary" and not 0 < base + delta < 1:
        raise UsageError(f"the baseline rate {base:g} plus the MDE {delta:+g} is {base + delta:g}, not a rate in (0, 1)")

    comparisons = (len(weights) - 1) * metrics
    per_alpha = alpha / comparisons if correction == "bonferroni" else alpha
    control_weight = weights[0][1]
    ratios = [w / control_weight for _, w in weights[1:]]

    def sizes(n_c: int) -> list[int]:
        return [n_c, *(math.ceil(r * n_c - 1e-9) for r in ratios)]

    def power_of(n_c: int) -> float:
        ns = sizes(n_c)
        if kind == "binary":
            return min(power_proportions(n_c, n_t, base, base + delta, per_alpha) for n_t in ns[1:])
        return min(power_means(n_c, n_t, delta, float(std), per_alpha) for n_t in ns[1:])  # type: ignore[arg-type]

    n_control = _smallest(lambda n: power_of(n) >= power)
    ns = sizes(n_control)
    total = sum(ns)
    if kind == "binary" and min(ns) * min(base, base + delta, 1 - base, 1 - base - delta) < 5:
        warnings.append("fewer than 5 expected conversions (or non-conversions) in a variant: ab analyze will use "
                        "Fisher's exact test, which is conservative, so the real power is lower than planned")
    days = None
    if daily_traffic is not None:  # each variant fills at its share of the daily traffic
        days = max(math.ceil(n / (w * daily_traffic) - 1e-9) for (_, w), n in zip(weights, ns))
    test = ("two-sided pooled two-proportion z-test" if kind == "binary"
            else "two-sided two-sample t-test (same standard deviation in every variant)")
    return ExperimentPlan(
        metric=kind, baseline=base, std=std, mde_absolute=delta, mde_relative=delta / base if base else None,
        alpha=alpha, alpha_per_comparison=per_alpha, correction=correction, comparisons=comparisons, power=power,
        achieved_power=power_of(n_control), test=test,
        variants=[VariantSize(name=name, weight=w, sample_size=n) for (name, w), n in zip(weights, ns)],
        total_sample_size=total, daily_traffic=daily_traffic, days=days, warnings=warnings,
    )

"""Sample sizes against statsmodels' power functions and, for conversions, the exact power of the test by
enumerating every binomial outcome."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.power import TTestIndPower
from statsmodels.stats.proportion import power_proportions_2indep

from mlserve.errors import UsageError
from mlserve.experiments import plan_experiment


def _sm_power(n_c: int, n_t: int, p_c: float, p_t: float, alpha: float) -> float:
    return power_proportions_2indep(p_t - p_c, p_c, n_t, ratio=n_c / n_t, alpha=alpha, return_results=False)


@pytest.mark.parametrize("rate, rel, alpha, power", [(0.10, 0.05, 0.05, 0.8), (0.02, 0.10, 0.05, 0.9),
                                                     (0.5, -0.04, 0.01, 0.8), (0.3, 0.2, 0.05, 0.8)])
def test_conversion_size_is_the_smallest_with_the_power(rate: float, rel: float, alpha: float, power: float) -> None:
    plan = plan_experiment(baseline_rate=rate, mde_relative=rel, alpha=alpha, power=power)
    n = plan.variants[0].sample_size
    assert plan.variants[1].sample_size == n
    target = rate * (1 + rel)
    assert _sm_power(n, n, rate, target, alpha) >= power
    assert _sm_power(n - 1, n - 1, rate, target, alpha) < power
    assert plan.achieved_power == pytest.approx(_sm_power(n, n, rate, target, alpha), rel=1e-9)


def _exact_power(n: int, p_c: float, p_t: float, alpha: float) -> float:
    """Power of the pooled z-test by summing over every pair of binomial outcomes (x_c, x_t)."""
    x = np.arange(n + 1)
    pc, pt = stats.binom.pmf(x, n, p_c), stats.binom.pmf(x, n, p_t)
    xc, xt = np.meshgrid(x, x, indexing="ij")
    pooled = (xc + xt) / (2 * n)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (xt - xc) / n / np.sqrt(pooled * (1 - pooled) * 2 / n)
    reject = np.nan_to_num(np.abs(z), nan=0.0) > stats.norm.ppf(1 - alpha / 2)
    return float((np.outer(pc, pt) * reject).sum())


def test_conversion_plan_delivers_its_power_exactly_enumerated() -> None:
    plan = plan_experiment(baseline_rate=0.2, mde=0.05, power=0.8)
    n = plan.variants[0].sample_size
    assert n < 2000  # small enough to enumerate every outcome
    assert _exact_power(n, 0.2, 0.25, 0.05) == pytest.approx(0.8, abs=0.01)


@pytest.mark.parametrize("mean, sd, mde, ratio", [(40.0, 30.0, 1.5, 1.0), (10.0, 2.0, 0.5, 1.0), (5.0, 4.0, -0.4, 3.0)])
def test_continuous_size_matches_statsmodels(mean: float, sd: float, mde: float, ratio: float) -> None:
    split = None if ratio == 1.0 else f"control=1,treatment={ratio:g}"
    plan = plan_experiment(baseline_mean=mean, std=sd, mde=mde, split=split)
    n_c, n_t = plan.variants[0].sample_size, plan.variants[1].sample_size
    solved = TTestIndPower().solve_power(effect_size=abs(mde) / sd, alpha=0.05, power=0.8, ratio=ratio)
    assert n_c == int(np.ceil(solved - 1e-6))
    assert n_t == int(np.ceil(n_c * ratio - 1e-9))
    assert TTestIndPower().power(abs(mde) / sd, n_c, 0.05, ratio=n_t / n_c) >= 0.8


def test_several_variants_are_sized_at_alpha_over_the_comparisons() -> None:
    three = plan_experiment(baseline_rate=0.1, mde=0.01, variants=3, metrics=2)
    assert three.comparisons == 4 and three.alpha_per_comparison == pytest.approx(0.0125)
    n = three.variants[0].sample_size
    assert [v.sample_size for v in three.variants] == [n, n, n]
    assert _sm_power(n, n, 0.1, 0.11, 0.0125) >= 0.8 > _sm_power(n - 1, n - 1, 0.1, 0.11, 0.0125)
    none = plan_experiment(baseline_rate=0.1, mde=0.01, variants=3, correction="none")
    assert none.variants[0].sample_size == plan_experiment(baseline_rate=0.1, mde=0.01).variants[0].sample_size
    assert none.variants[0].sample_size < n


def test_unequal_split_powers_every_treatment() -> None:
    plan = plan_experiment(baseline_rate=0.1, mde=0.01, split="control=80,treatment=20")
    n_c, n_t = plan.variants[0].sample_size, plan.variants[1].sample_size
    assert n_t == int(np.ceil(n_c * 0.25 - 1e-9))
    assert _sm_power(n_c, n_t, 0.1, 0.11, 0.05) >= 0.8
    assert _sm_power(n_c - 1, int(np.ceil((n_c - 1) * 0.25 - 1e-9)), 0.1, 0.11, 0.05) < 0.8


def test_duration_from_daily_traffic() -> None:
    plan = plan_experiment(baseline_rate=0.1, mde_relative=0.05, daily_traffic=20_000)
    assert plan.days == int(np.ceil(plan.total_sample_size / 20_000))
    split = plan_experiment(baseline_rate=0.1, mde=0.01, split="control=80,treatment=20", daily_traffic=1000)
    n_t = split.variants[1].sample_size  # the treatment gets 200 units a day and fills last
    assert split.days == int(np.ceil(n_t / 200 - 1e-9))
    assert plan_experiment(baseline_rate=0.1, mde=0.01).days is None


@pytest.mark.parametrize("kwargs, message", [
    (dict(baseline_rate=0.1), "minimum detectable effect"),
    (dict(baseline_rate=0.1, baseline_mean=3, mde=1), "either"),
    (dict(baseline_rate=1.5, mde=0.1), "baseline rate"),
    (dict(baseline_rate=0.95, mde=0.1), "not a rate"),
    (dict(baseline_mean=3.0, mde=1.0), "--std"),
    (dict(baseline_rate=0.1, mde=0.01, alpha=0), "alpha"),
    (dict(baseline_rate=0.1, mde=0.01, variants=1), "at least 2"),
    (dict(baseline_rate=0.1, mde=0.0), "non-zero"),
    (dict(baseline_rate=0.1, mde=1e-9), "too small"),
    (dict(baseline_rate=0.1, mde=0.01, split="control=50,treatment=-1"), "positive"),
])
def test_bad_plans_are_usage_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        plan_experiment(**kwargs)

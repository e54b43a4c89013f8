"""CUPED: the adjusted interval against an independent computation (statsmodels OLS for the slope, scipy's
Welch test for the interval), against the regression (ANCOVA) estimate, and its coverage."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

from experiments.abdata import ab_columns
from mlserve.experiments import analyze_experiment, continuous, cuped


def _independent(columns: dict, confidence: float = 0.95) -> tuple[float, tuple[float, float], float, float]:
    y = np.array(columns["revenue"], float)
    x = np.array(columns["revenue_before"], float)
    t = np.array([v == "treatment" for v in columns["variant"]])
    slope = sm.OLS(y, sm.add_constant(x)).fit().params[1]  # pooled over every unit
    adjusted = y - slope * (x - x.mean())
    ref = stats.ttest_ind(adjusted[t], adjusted[~t], equal_var=False)
    ci = ref.confidence_interval(confidence)
    return slope, (ci.low, ci.high), ref.pvalue, adjusted[t].mean() - adjusted[~t].mean()


def test_cuped_interval_matches_an_independent_computation(table) -> None:
    columns = ab_columns(seed=3, n=5000, lift=0.6)
    path = table("events.csv", columns)
    result = analyze_experiment(path, ["revenue"], covariates=["revenue_before"], split="control=1,treatment=1")
    c = result.comparisons[0]
    slope, ci, p, diff = _independent(columns)
    assert c.cuped is not None and c.cuped.theta == pytest.approx(slope, rel=1e-9)
    assert c.absolute_lift == pytest.approx(diff, rel=1e-9)
    assert c.absolute_ci == pytest.approx(ci, rel=1e-9)
    assert c.p_value == pytest.approx(p, rel=1e-9)
    # the variance shrinks by about rho^2 of outcome and covariate
    rho = np.corrcoef(columns["revenue"], columns["revenue_before"])[0, 1]
    assert c.cuped.variance_reduction == pytest.approx(rho ** 2, abs=0.03)
    raw = analyze_experiment(path, ["revenue"], split="control=1,treatment=1").comparisons[0]
    assert (c.absolute_ci[1] - c.absolute_ci[0]) < 0.6 * (raw.absolute_ci[1] - raw.absolute_ci[0])


def test_cuped_estimate_agrees_with_the_regression_adjusted_estimate(table) -> None:
    """ANCOVA (y ~ 1 + treatment + x, robust HC2 errors) estimates the same effect with the same precision."""
    columns = ab_columns(seed=5, n=8000, lift=0.4)
    c = analyze_experiment(table("events.csv", columns), ["revenue"], covariates=["revenue_before"],
                           split="control=1,treatment=1").comparisons[0]
    y = np.array(columns["revenue"], float)
    x = np.array(columns["revenue_before"], float)
    t = np.array([v == "treatment" for v in columns["variant"]], float)
    fit = sm.OLS(y, sm.add_constant(np.column_stack([t, x]))).fit(cov_type="HC2")
    assert c.absolute_lift == pytest.approx(fit.params[1], abs=0.1 * fit.bse[1])
    assert (c.absolute_ci[1] - c.absolute_ci[0]) / 2 / 1.96 == pytest.approx(fit.bse[1], rel=0.03)


def test_cuped_interval_covers_the_true_effect() -> None:
    rng = np.random.default_rng(17)
    runs, n, effect = 3000, 300, 0.5
    covered = 0
    for _ in range(runs):
        x = rng.gamma(2.0, 10.0, 2 * n)
        t = np.r_[np.ones(n, bool), np.zeros(n, bool)]
        y = 0.8 * x + rng.normal(0, 6.0, 2 * n) + effect * t
        theta = cuped.theta(y, x)
        adj = cuped.adjust(y, x, theta, x.mean())
        w = continuous.welch(adj[t], adj[~t], 0.95)
        covered += w.low <= effect <= w.high
    slack = 3 * (0.95 * 0.05 / runs) ** 0.5  # three Monte Carlo standard errors
    assert abs(covered / runs - 0.95) <= slack


def test_a_constant_covariate_changes_nothing(table) -> None:
    columns = ab_columns(seed=2, n=600)
    columns["flat"] = [1.0] * 600
    path = table("events.csv", columns)
    with_flat = analyze_experiment(path, ["revenue"], covariates=["flat"], split="control=1,treatment=1")
    plain = analyze_experiment(path, ["revenue"], split="control=1,treatment=1")
    assert with_flat.comparisons[0].absolute_ci == pytest.approx(plain.comparisons[0].absolute_ci)
    assert any("does not vary" in w for w in with_flat.warnings)


def test_cuped_on_a_binary_metric_uses_welch_on_the_adjusted_values(table) -> None:
    rng = np.random.default_rng(21)
    n = 4000
    before = (rng.random(n) < 0.3).astype(int)  # converted in the pre-period: predicts converting again
    treated = rng.random(n) < 0.5
    after = (rng.random(n) < np.where(before == 1, 0.5, 0.1) + np.where(treated, 0.03, 0.0)).astype(int)
    columns = {"key": [f"k{i}" for i in range(n)], "variant": ["treatment" if t else "control" for t in treated],
               "converted": after.tolist(), "converted_before": before.tolist()}
    c = analyze_experiment(table("events.csv", columns), ["converted"], covariates=["converted_before"],
                           split="control=1,treatment=1").comparisons[0]
    assert c.kind == "binary" and c.test == "welch" and c.cuped is not None
    slope, ci, p, diff = _independent({"revenue": after, "revenue_before": before, "variant": columns["variant"]})
    assert c.absolute_ci == pytest.approx(ci, rel=1e-9) and c.p_value == pytest.approx(p, rel=1e-9)
    assert c.cuped.variance_reduction > 0.1

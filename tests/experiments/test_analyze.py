"""``analyze_experiment`` end to end on real files: every figure against scipy/statsmodels, and the verdicts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats import proportion as smp
from statsmodels.stats.multitest import multipletests

from experiments.abdata import ab_columns
from mlserve.experiments import analyze_experiment
from mlserve.experiments import sequential as msprt

SPLIT = "control=50,treatment=50"


def counts_table(cells: dict[str, tuple[int, int]], metric: str = "converted", extra: dict | None = None) -> dict:
    """Units with exactly ``successes`` of ``n`` converting in each variant."""
    columns: dict[str, list] = {"key": [], "variant": [], metric: []}
    for variant, (successes, n) in cells.items():
        columns["key"] += [f"{variant}-{i}" for i in range(n)]
        columns["variant"] += [variant] * n
        columns[metric] += [1] * successes + [0] * (n - successes)
    for name, values in (extra or {}).items():
        columns[name] = values
    return columns


def _arrays(columns: dict, metric: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.array(columns[metric], float)
    t = np.array([v == "treatment" for v in columns["variant"]])
    return y[t], y[~t]


def test_binary_metric_figures(table) -> None:
    columns = counts_table({"control": (100, 1000), "treatment": (130, 1000)})
    c = analyze_experiment(table("events.csv", columns), ["converted"], split=SPLIT).comparisons[0]
    assert c.kind == "binary" and c.test == "z"
    assert c.absolute_lift == pytest.approx(0.03)
    assert c.relative_lift == pytest.approx(0.3)
    assert c.p_value == pytest.approx(stats.chi2_contingency([[130, 870], [100, 900]], correction=False).pvalue, rel=1e-9)
    assert c.absolute_ci == pytest.approx(smp.confint_proportions_2indep(130, 1000, 100, 1000, method="newcomb"), rel=1e-9)
    low, high = smp.confint_proportions_2indep(130, 1000, 100, 1000, method="log", compare="ratio")
    assert c.relative_ci == pytest.approx((low - 1, high - 1), rel=1e-9)


def test_small_counts_use_fishers_exact_test(table) -> None:
    columns = counts_table({"control": (1, 40), "treatment": (7, 40)})
    c = analyze_experiment(table("events.csv", columns), ["converted"], split=SPLIT).comparisons[0]
    assert c.test == "fisher"
    assert c.p_value == pytest.approx(stats.fisher_exact([[7, 33], [1, 39]])[1], rel=1e-9)


def test_continuous_metric_figures_and_mann_whitney(table) -> None:
    columns = ab_columns(seed=8, n=3000, lift=0.7)
    r = analyze_experiment(table("events.csv", columns), ["revenue"], split=SPLIT, mann_whitney=True)
    c = r.comparisons[0]
    a, b = _arrays(columns, "revenue")
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert c.kind == "continuous" and c.test == "welch"
    assert c.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    ci = ref.confidence_interval(0.95)
    assert c.absolute_ci == pytest.approx((ci.low, ci.high), rel=1e-9)
    mw = stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic")
    assert c.mann_whitney is not None
    assert (c.mann_whitney.u, c.mann_whitney.p_value) == pytest.approx((mw.statistic, mw.pvalue), rel=1e-9)
    groups = {g.variant: g for g in r.metrics[0].groups}
    assert groups["treatment"].mean == pytest.approx(a.mean()) and groups["control"].std == pytest.approx(b.std(ddof=1))


def test_holm_correction_across_metrics_decides_significance(table) -> None:
    """converted alone is significant (p = 0.035); with two more metrics Holm's adjusted p is 0.106."""
    columns = counts_table({"control": (100, 1000), "treatment": (130, 1000)})
    rng = np.random.default_rng(0)
    columns["clicks"] = rng.poisson(3, 2000).tolist()
    columns["minutes"] = rng.normal(10, 2, 2000).round(4).tolist()
    path = table("events.csv", columns)
    alone = analyze_experiment(path, ["converted"], split=SPLIT)
    assert alone.comparisons[0].significant and alone.verdict == "ship"
    together = analyze_experiment(path, ["converted", "clicks", "minutes"], split=SPLIT)
    raw = [c.p_value for c in together.comparisons]
    assert [c.p_adjusted for c in together.comparisons] == pytest.approx(list(multipletests(raw, method="holm")[1]))
    assert not together.comparisons[0].significant
    assert together.verdict == "inconclusive"


def test_a_significantly_worse_guardrail_blocks_shipping(table) -> None:
    columns = counts_table({"control": (1000, 10000), "treatment": (1150, 10000)})
    rng = np.random.default_rng(1)
    latency = np.r_[rng.normal(100, 10, 10000), rng.normal(103, 10, 10000)]
    columns["latency_ms"] = latency.round(3).tolist()
    r = analyze_experiment(table("events.csv", columns), ["converted", "latency_ms"], split=SPLIT,
                           lower_is_better=["latency_ms"])
    assert r.comparisons[0].direction == "better"
    assert r.comparisons[1].direction == "worse"
    assert r.verdict == "worse" and "latency_ms is significantly worse" in r.reason
    # the same data with latency as an ordinary metric (higher is better) ships
    assert analyze_experiment(table("e2.csv", columns), ["converted", "latency_ms"], split=SPLIT).verdict == "ship"


def test_lower_is_better_primary_metric_ships_on_a_decrease(table) -> None:
    rng = np.random.default_rng(2)
    columns = {"key": [f"k{i}" for i in range(4000)], "variant": ["control"] * 2000 + ["treatment"] * 2000,
               "cost": np.r_[rng.normal(5.0, 1, 2000), rng.normal(4.8, 1, 2000)].round(4).tolist()}
    r = analyze_experiment(table("events.csv", columns), ["cost"], split=SPLIT, lower_is_better=["cost"])
    assert r.comparisons[0].absolute_lift < 0
    assert r.verdict == "ship" and r.winner == "treatment"


def test_no_difference_needs_a_tight_interval_within_the_margin(table) -> None:
    columns = counts_table({"control": (10000, 100000), "treatment": (10010, 100000)})
    path = table("events.csv", columns)
    within = analyze_experiment(path, ["converted"], split=SPLIT, mde_relative=0.05)
    assert within.margin == pytest.approx(0.005)
    assert within.verdict == "no difference"
    assert analyze_experiment(path, ["converted"], split=SPLIT, mde=0.002).verdict == "inconclusive"
    no_margin = analyze_experiment(path, ["converted"], split=SPLIT)
    assert no_margin.verdict == "inconclusive" and "--mde" in no_margin.reason


def test_small_experiment_without_effect_is_inconclusive(table) -> None:
    columns = counts_table({"control": (20, 200), "treatment": (22, 200)})
    r = analyze_experiment(table("events.csv", columns), ["converted"], split=SPLIT, mde_relative=0.05)
    assert r.verdict == "inconclusive" and "still holds effects" in r.reason


def test_sample_ratio_mismatch_makes_the_verdict_invalid(table) -> None:
    columns = counts_table({"control": (520, 5200), "treatment": (600, 4800)})
    r = analyze_experiment(table("events.csv", columns), ["converted"], split=SPLIT)
    assert not r.sample_ratio.passed
    assert r.comparisons[0].significant  # the effect looks real, but the split is broken
    assert r.verdict == "invalid" and r.winner is None and "sample ratio mismatch" in r.reason
    assert [t.verdict for t in r.treatments] == ["invalid"]
    # the same counts are fine for a planned 52/48 split
    assert analyze_experiment(table("e2.csv", columns), ["converted"], split="control=52,treatment=48").verdict == "ship"


def test_several_treatments_ship_the_best(table) -> None:
    columns = counts_table({"control": (1000, 10000), "b": (1200, 10000), "c": (1350, 10000)})
    r = analyze_experiment(table("events.csv", columns), ["converted"], split="control=1,b=1,c=1")
    assert [c.treatment for c in r.comparisons] == ["b", "c"]
    raw = [c.p_value for c in r.comparisons]
    assert [c.p_adjusted for c in r.comparisons] == pytest.approx(list(multipletests(raw, method="holm")[1]))
    assert r.verdict == "ship" and r.winner == "c"


def test_control_is_named_or_found(table) -> None:
    columns = counts_table({"old": (100, 1000), "new": (130, 1000)})
    r = analyze_experiment(table("events.csv", columns), ["converted"], control="old")
    assert r.control == "old" and r.comparisons[0].treatment == "new"
    assert any("no --split given" in w for w in r.warnings)


def test_sequential_mode_reports_always_valid_figures(table) -> None:
    columns = counts_table({"control": (1000, 10000), "treatment": (1120, 10000)})
    path = table("events.csv", columns)
    fixed = analyze_experiment(path, ["converted"], split=SPLIT).comparisons[0]
    r = analyze_experiment(path, ["converted"], split=SPLIT, sequential=True, mixing=0.05)
    c = r.comparisons[0]
    assert r.sequential and r.tau == 0.05 and c.test == "msprt"
    var = 0.112 * 0.888 / 10000 + 0.1 * 0.9 / 10000
    pooled = 0.106
    tau2 = (0.05 * np.sqrt(pooled * (1 - pooled))) ** 2
    assert c.p_value == pytest.approx(float(msprt.p_value(0.012, var, tau2)), rel=1e-9)
    assert c.absolute_ci == pytest.approx(msprt.confidence_sequence(0.012, var, tau2, 0.05), rel=1e-9)
    assert c.p_value > fixed.p_value  # the price of looking any time
    assert c.absolute_ci[0] < fixed.absolute_ci[0] and c.absolute_ci[1] > fixed.absolute_ci[1]


def test_sequential_mode_needs_enough_units(table) -> None:
    columns = counts_table({"control": (3, 20), "treatment": (9, 20)})
    r = analyze_experiment(table("events.csv", columns), ["converted"], split=SPLIT, sequential=True)
    assert r.comparisons[0].p_value is None and r.verdict == "inconclusive"


def test_missing_outcomes_policies(table) -> None:
    columns = ab_columns(seed=4, n=400)
    columns["revenue"][5] = ""
    columns["revenue"][9] = ""
    path = table("events.csv", columns)
    zero = analyze_experiment(path, ["revenue"], split=SPLIT, missing_outcomes="zero")
    drop = analyze_experiment(path, ["revenue"], split=SPLIT, missing_outcomes="drop")
    assert zero.metrics[0].missing == drop.metrics[0].missing == 2
    assert sum(g.n for g in zero.metrics[0].groups) == 400
    assert sum(g.n for g in drop.metrics[0].groups) == 398
    assert zero.sample_ratio.counts == drop.sample_ratio.counts  # exposure counts do not depend on outcomes


def test_binary_values_may_be_words_or_booleans(table) -> None:
    columns = counts_table({"control": (100, 1000), "treatment": (130, 1000)})
    words = dict(columns, converted=["true" if v else "false" for v in columns["converted"]])
    r = analyze_experiment(table("events.csv", words), ["converted"], split=SPLIT)
    assert r.comparisons[0].kind == "binary" and r.comparisons[0].absolute_lift == pytest.approx(0.03)
    flags = dict(columns, converted=[bool(v) for v in columns["converted"]])
    assert analyze_experiment(table("events.jsonl", flags), ["converted"], split=SPLIT).comparisons[0].p_value == \
        pytest.approx(r.comparisons[0].p_value)


def test_continuous_kind_can_be_forced(table) -> None:
    columns = counts_table({"control": (100, 1000), "treatment": (130, 1000)})
    c = analyze_experiment(table("events.csv", columns), ["converted:continuous"], split=SPLIT).comparisons[0]
    a, b = _arrays(columns, "converted")
    assert c.test == "welch" and c.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-9)


def test_the_sample_ratio_threshold_is_an_option(table) -> None:
    columns = counts_table({"control": (520, 5200), "treatment": (600, 4800)})  # chi-square p = 6.3e-5
    path = table("events.csv", columns)
    assert analyze_experiment(path, ["converted"], split=SPLIT).verdict == "invalid"
    lenient = analyze_experiment(path, ["converted"], split=SPLIT, srm_threshold=1e-6)
    assert lenient.sample_ratio.passed and lenient.verdict == "ship"

"""Welch, Mann-Whitney and the ratio interval against scipy, statsmodels and exact enumeration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from mlserve.experiments import continuous as C


def _samples(seed: int, n1: int, n2: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.lognormal(3.0, 0.8, n1), rng.lognormal(2.9, 1.1, n2)


@pytest.mark.parametrize("seed, n1, n2", [(1, 50, 60), (2, 500, 450), (3, 5, 9), (4, 3000, 2000)])
@pytest.mark.parametrize("confidence", [0.95, 0.99])
def test_welch_matches_scipy_and_statsmodels(seed: int, n1: int, n2: int, confidence: float) -> None:
    a, b = _samples(seed, n1, n2)
    ours = C.welch(a, b, confidence)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert ours.df == pytest.approx(ref.df, rel=1e-12)
    ci = ref.confidence_interval(confidence)
    assert (ours.low, ours.high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    sm = CompareMeans(DescrStatsW(a), DescrStatsW(b)).tconfint_diff(alpha=1 - confidence, usevar="unequal")
    assert (ours.low, ours.high) == pytest.approx(sm, rel=1e-9)


def test_welch_without_variance_has_no_p_value() -> None:
    assert C.welch(np.ones(5), np.ones(4) * 2, 0.95).p_value is None


def _u_by_enumeration(m: int, n: int) -> list[int]:
    counts = [0] * (m * n + 1)
    for chosen in itertools.combinations(range(m + n), m):  # ranks 0..m+n-1 of the first sample
        u = sum(chosen) - m * (m - 1) // 2
        counts[u] += 1
    return counts


@pytest.mark.parametrize("m, n", [(1, 1), (2, 3), (4, 4), (5, 3), (6, 7)])
def test_u_distribution_matches_enumeration(m: int, n: int) -> None:
    assert C.u_distribution(m, n) == _u_by_enumeration(m, n)
    assert sum(C.u_distribution(m, n)) == math.comb(m + n, m)


@pytest.mark.parametrize("seed, n1, n2", [(1, 6, 8), (2, 10, 12), (3, 20, 25), (4, 40, 50)])
def test_mann_whitney_exact_matches_scipy(seed: int, n1: int, n2: int) -> None:
    a, b = _samples(seed, n1, n2)
    ours = C.mann_whitney(a, b)
    ref = stats.mannwhitneyu(a, b, alternative="two-sided", method="exact")
    assert ours.method == "exact"
    assert ours.u == ref.statistic
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9)


@pytest.mark.parametrize("seed, n1, n2", [(5, 200, 300), (6, 1000, 900)])
def test_mann_whitney_normal_matches_scipy(seed: int, n1: int, n2: int) -> None:
    a, b = _samples(seed, n1, n2)
    ours = C.mann_whitney(a, b)
    ref = stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic", use_continuity=True)
    assert ours.method == "normal"
    assert ours.u == ref.statistic
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9)


def test_mann_whitney_with_ties_uses_the_tie_corrected_normal_approximation() -> None:
    rng = np.random.default_rng(9)
    a, b = rng.integers(0, 5, 30).astype(float), rng.integers(1, 6, 25).astype(float)
    ours = C.mann_whitney(a, b)
    ref = stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic")
    assert ours.method == "normal"
    assert (ours.u, ours.p_value) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-9)
    assert ours.auc == pytest.approx(ref.statistic / (30 * 25))


def test_ranks_average_ties() -> None:
    r, sizes = C.ranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0]))
    assert list(r) == list(stats.rankdata([3.0, 1.0, 3.0, 2.0, 3.0]))
    assert sorted(sizes.tolist()) == [1, 1, 3]


def test_log_ratio_interval_covers_the_true_ratio() -> None:
    """A seeded coverage check of the delta-method interval of mean(a) / mean(b) on skewed data."""
    rng = np.random.default_rng(11)
    true_ratio = math.exp(3.1 + 0.5 * 0.9 ** 2) / math.exp(3.0 + 0.5 * 0.9 ** 2)
    covered = 0
    runs = 2000
    for _ in range(runs):
        a, b = rng.lognormal(3.1, 0.9, 400), rng.lognormal(3.0, 0.9, 400)
        low, high = C.log_ratio_interval(a.mean(), a.var(ddof=1) / 400, b.mean(), b.var(ddof=1) / 400, 0.95)
        covered += low <= true_ratio <= high
    assert 0.935 <= covered / runs <= 0.965


def test_log_ratio_interval_needs_positive_means() -> None:
    assert C.log_ratio_interval(-1.0, 0.1, 2.0, 0.1, 0.95) is None

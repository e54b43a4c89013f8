"""Two-proportion figures against independent computations: scipy, statsmodels, exact enumeration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats import proportion as smp

from mlserve.experiments import proportions as P

TABLES = [(120, 1000, 100, 1000), (45, 300, 61, 310), (980, 10000, 1050, 10000), (3, 50, 9, 48), (0, 40, 4, 41),
          (7, 7, 3, 9), (1, 2000, 8, 2100)]


@pytest.mark.parametrize("x1, n1, x2, n2", TABLES)
def test_pooled_z_test_is_the_pearson_chi_square_test(x1: int, n1: int, x2: int, n2: int) -> None:
    table = [[x1, n1 - x1], [x2, n2 - x2]]
    chi2 = stats.chi2_contingency(table, correction=False)
    assert P.pooled_z_test(x1, n1, x2, n2) == pytest.approx(chi2.pvalue, rel=1e-9)
    _, p_sm = smp.proportions_ztest([x1, x2], [n1, n2])
    assert P.pooled_z_test(x1, n1, x2, n2) == pytest.approx(p_sm, rel=1e-9)


def test_pooled_z_test_with_no_variation_is_one() -> None:
    assert P.pooled_z_test(0, 10, 0, 12) == 1.0
    assert P.pooled_z_test(10, 10, 12, 12) == 1.0


@pytest.mark.parametrize("x1, n1, x2, n2", TABLES)
def test_fisher_matches_scipy(x1: int, n1: int, x2: int, n2: int) -> None:
    _, p = stats.fisher_exact([[x1, n1 - x1], [x2, n2 - x2]])
    assert P.fisher_exact(x1, n1, x2, n2) == pytest.approx(p, rel=1e-9, abs=1e-15)


def _fisher_by_enumeration(x1: int, n1: int, x2: int, n2: int) -> float:
    """Every way of choosing which n1 of the n1+n2 units are 'treatment', with the successes fixed."""
    units = [1] * (x1 + x2) + [0] * (n1 + n2 - x1 - x2)
    counts: dict[int, int] = {}
    for chosen in itertools.combinations(range(len(units)), n1):
        k = sum(units[i] for i in chosen)
        counts[k] = counts.get(k, 0) + 1
    total = sum(counts.values())
    return sum(c for c in counts.values() if c <= counts[x1]) / total


@pytest.mark.parametrize("x1, n1, x2, n2", [(1, 6, 5, 7), (0, 5, 4, 6), (3, 7, 3, 6), (6, 6, 1, 7), (2, 4, 0, 8)])
def test_fisher_matches_exact_enumeration(x1: int, n1: int, x2: int, n2: int) -> None:
    assert P.fisher_exact(x1, n1, x2, n2) == pytest.approx(_fisher_by_enumeration(x1, n1, x2, n2), rel=1e-9)


@pytest.mark.parametrize("x1, n1, x2, n2", TABLES)
@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_newcombe_interval_matches_statsmodels(x1: int, n1: int, x2: int, n2: int, confidence: float) -> None:
    low, high = smp.confint_proportions_2indep(x1, n1, x2, n2, method="newcomb", compare="diff", alpha=1 - confidence)
    ours = P.newcombe_interval(x1, n1, x2, n2, confidence)
    assert ours == pytest.approx((low, high), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("x, n", [(0, 10), (3, 10), (10, 10), (57, 400)])
def test_wilson_matches_statsmodels(x: int, n: int) -> None:
    assert P.wilson(x, n, 0.95) == pytest.approx(smp.proportion_confint(x, n, method="wilson"), abs=1e-12)


@pytest.mark.parametrize("x1, n1, x2, n2", [t for t in TABLES if t[0] and t[2]])
def test_katz_ratio_interval_matches_statsmodels(x1: int, n1: int, x2: int, n2: int) -> None:
    low, high = smp.confint_proportions_2indep(x1, n1, x2, n2, method="log", compare="ratio")
    assert P.katz_ratio_interval(x1, n1, x2, n2, 0.95) == pytest.approx((low, high), rel=1e-9)


def test_katz_ratio_interval_needs_successes_on_both_sides() -> None:
    assert P.katz_ratio_interval(0, 40, 4, 41, 0.95) is None


def test_exact_test_when_an_expected_count_is_below_five() -> None:
    from scipy.stats.contingency import expected_freq

    for x1, n1, x2, n2 in [*TABLES, (2, 20, 3, 20), (5, 30, 6, 30), (10, 40, 2, 40), (3, 50, 9, 48)]:
        smallest = expected_freq(np.array([[x1, n1 - x1], [x2, n2 - x2]])).min()
        assert P.needs_exact(x1, n1, x2, n2) == (smallest < 5), (x1, n1, x2, n2, smallest)


def test_newcombe_interval_keeps_its_coverage_with_small_counts() -> None:
    """Coverage of the difference's interval at p = 0.05 with 40 units a group (the Wald interval undercovers)."""
    rng = np.random.default_rng(7)
    p1, p2, n = 0.08, 0.04, 40
    x1s, x2s = rng.binomial(n, p1, 4000), rng.binomial(n, p2, 4000)
    covered = 0
    wald = 0
    for x1, x2 in zip(x1s, x2s):
        low, high = P.newcombe_interval(int(x1), n, int(x2), n, 0.95)
        covered += low <= p1 - p2 <= high
        a, b = x1 / n, x2 / n
        se = math.sqrt(a * (1 - a) / n + b * (1 - b) / n)
        wald += a - b - 1.96 * se <= p1 - p2 <= a - b + 1.96 * se
    assert covered / 4000 >= 0.93
    assert wald / 4000 < covered / 4000  # the reason to use Newcombe's interval

"""The judge's statistics against values computed independently: by hand, by brute force, by test inversion."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from statistics import NormalDist

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlserve.rollout import stats


def test_hodges_lehmann_by_hand_on_shifted_ranges():
    # canary 11..20, stable 1..10: the differences are 1..19, value v occurring 10 - |v - 10| times.
    # Median 10. Exact: the two-sided 5 % critical value of U for 10 vs 10 is 23 (the tables), so k = 24;
    # cumulative counts 1,3,6,10,15,21,28 put d(24) at 7; by symmetry d(77) = 13. (The normal formula gives
    # k = ceil(50 - 1.959964 * 13.2288) = 25, the same values here.)
    canary = [float(v) for v in range(11, 21)]
    stable = [float(v) for v in range(1, 11)]
    assert stats.order_statistic_index(10, 10, 0.95) == 24
    assert stats.normal_order_statistic_index(10, 10, 0.95) == 25
    shift = stats.hodges_lehmann(canary, stable, 0.95)
    assert shift.estimate == 10.0
    assert (shift.low, shift.high) == (7.0, 13.0)
    assert shift.pairs == 100


def test_normal_order_statistic_index_by_hand():
    # n = m = 10 at 90%: z = 1.644854, 50 - 1.644854 * 13.2288 = 28.24 -> 29
    assert stats.normal_order_statistic_index(10, 10, 0.90) == 29
    # n = 20, m = 5: sigma = sqrt(100 * 26 / 12) = 14.7196; 50 - 1.959964 * 14.7196 = 21.15 -> 22
    assert stats.normal_order_statistic_index(20, 5, 0.95) == 22
    # above EXACT_MAX_PAIRS the normal formula is the one used
    assert stats.order_statistic_index(60, 50, 0.95) == stats.normal_order_statistic_index(60, 50, 0.95)


def test_exact_distribution_of_u_by_enumeration_and_by_hand():
    """The counts of U against brute force; 3 vs 3 cannot reach 95 %, 4 vs 4 can (k = 1)."""
    for n, m in ((3, 3), (4, 2), (5, 4)):
        brute = [0] * (n * m + 1)
        for ranks in itertools.combinations(range(1, n + m + 1), n):
            brute[sum(ranks) - n * (n + 1) // 2] += 1
        assert list(stats.exact_u_counts(n, m)) == brute
    # 3 vs 3: P(U = 0) = 1/20 = 0.05 > 0.025: no 95 % interval (the normal formula wrongly says k = 1)
    assert stats.order_statistic_index(3, 3, 0.95) == 0
    assert stats.normal_order_statistic_index(3, 3, 0.95) == 1
    # 4 vs 4: P(U = 0) = 1/70 = 0.0143 <= 0.025 < P(U <= 1) = 2/70
    assert stats.order_statistic_index(4, 4, 0.95) == 1


def test_interval_coverage_is_at_least_the_confidence_by_simulation():
    """Fixed seed: with identical distributions the exact interval misses the true shift (0) at most 5 % of the
    time; the normal formula at 3 vs 3 misses about 10 %."""
    rng = random.Random(11)
    runs = 4000
    for n in (4, 5, 8):
        misses = 0
        for _ in range(runs):
            a = [rng.gauss(0, 1) for _ in range(n)]
            b = [rng.gauss(0, 1) for _ in range(n)]
            shift = stats.hodges_lehmann(a, b, 0.95)
            misses += not (shift.low <= 0 <= shift.high)
        assert misses / runs <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / runs), (n, misses / runs)
    misses = 0
    for _ in range(runs):
        a = sorted(rng.gauss(0, 1) for _ in range(3))
        b = [rng.gauss(0, 1) for _ in range(3)]
        diffs = sorted(x - y for x in a for y in b)
        misses += not (diffs[0] <= 0 <= diffs[-1])  # the k = 1 interval the normal formula allowed
    assert misses / runs > 0.08


def test_hodges_lehmann_tiny_samples_have_an_unbounded_interval():
    # differences of [1, 2, 3] - [0, 1]: 1, 0, 2, 1, 3, 2 -> sorted 0 1 1 2 2 3, median 1.5;
    # N/2 - z sigma = 3 - 1.96 * sqrt(3) < 0: no finite interval at 95%.
    shift = stats.hodges_lehmann([1.0, 2.0, 3.0], [0.0, 1.0], 0.95)
    assert shift.estimate == 1.5
    assert shift.low is None and shift.high is None


def test_mann_whitney_u_by_hand():
    # canary > stable in 5 pairs, 1 tie (1 vs 1) counts half: U = 5.5
    result = stats.mann_whitney([1.0, 2.0, 3.0], [0.0, 1.0])
    assert result.u == 5.5
    assert 0.0 < result.p_value <= 1.0


def _exact_two_sided_p(canary, stable):
    """The exact two-sided p-value by brute force: every way to give the pooled ranks to the canary (no ties)."""
    pooled = sorted(canary + stable)
    assert len(set(pooled)) == len(pooled), "the enumeration assumes no ties"
    n, total = len(canary), len(pooled)
    u_observed = sum(c > s for c in canary for s in stable)
    us = [sum(ranks) - n * (n + 1) // 2 for ranks in itertools.combinations(range(1, total + 1), n)]
    at_most = sum(u <= u_observed for u in us)
    at_least = sum(u >= u_observed for u in us)
    return u_observed, min(1.0, 2 * min(at_most, at_least) / len(us))


@pytest.mark.parametrize("n,m,seed,shift", [(3, 2, 1, 0.0), (4, 4, 2, 0.5), (5, 3, 3, 2.0), (6, 7, 4, 1.0), (7, 7, 5, 3.0)])
def test_mann_whitney_exact_p_value_by_enumeration(n, m, seed, shift):
    """Small samples without ties: the p-value is the exact permutation one, as enumerated here and by scipy's exact method."""
    from scipy.stats import mannwhitneyu

    rng = random.Random(seed)
    stable = [rng.random() for _ in range(m)]
    canary = [rng.random() + shift for _ in range(n)]
    u, expected = _exact_two_sided_p(canary, stable)
    result = stats.mann_whitney(canary, stable)
    assert result.u == u
    assert result.p_value == pytest.approx(expected, rel=1e-12, abs=0)
    scipy_exact = mannwhitneyu(canary, stable, alternative="two-sided", method="exact").pvalue
    assert scipy_exact == pytest.approx(expected, rel=1e-12, abs=0)


def test_mann_whitney_exact_p_value_of_complete_separation():
    # 4 canary points all above 3 stable points: U = 12 is the largest of C(7, 4) = 35 equally likely
    # rank sets, as is U = 0 at the other end: p = 2 / 35.
    result = stats.mann_whitney([10.0, 11.0, 12.0, 13.0], [1.0, 2.0, 3.0])
    assert result.u == 12.0
    assert result.p_value == pytest.approx(2 / 35, rel=1e-12)


def test_mann_whitney_normal_approximation_with_ties_by_hand():
    """With ties scipy uses the normal approximation, with tie correction and continuity correction.

    Pooled sorted: 1s 2s 3c 3s 4c 4c 4s 5c 5s 5s 7c 8c (c canary, s stable); mid-ranks 3 -> 3.5, 4 -> 6, 5 -> 9.
    Canary rank sum 3.5 + 6 + 6 + 9 + 11 + 12 = 47.5, U = 47.5 - 6*7/2 = 26.5; n*m/2 = 18.
    Ties of sizes 2, 3, 3: sum(t^3 - t) = 6 + 24 + 24 = 54, N = 12:
    sigma^2 = n*m/12 * ((N + 1) - 54 / (N (N - 1))) = 3 * (13 - 54/132) = 37.772727, sigma = 6.1459521.
    z = (|26.5 - 18| - 0.5) / sigma = 1.3016698; p = 2 * (1 - Phi(z)) = 0.1930293.
    (Without the tie correction sigma = sqrt(39) and p would be 0.2002.)
    """
    canary = [3.0, 4.0, 4.0, 5.0, 7.0, 8.0]
    stable = [1.0, 2.0, 3.0, 4.0, 5.0, 5.0]
    result = stats.mann_whitney(canary, stable)
    assert result.u == 26.5
    sigma = math.sqrt(6 * 6 / 12 * ((12 + 1) - 54 / (12 * 11)))
    assert sigma == pytest.approx(6.1459521, abs=1e-7)
    by_hand = 2 * (1 - NormalDist().cdf((abs(26.5 - 18) - 0.5) / sigma))
    assert by_hand == pytest.approx(0.1930293, abs=1e-7)
    assert result.p_value == pytest.approx(by_hand, rel=1e-9)


def test_constant_identical_samples_show_no_difference():
    result = stats.mann_whitney([1.0] * 30, [1.0] * 30)
    assert result.p_value == 1.0
    shift = stats.hodges_lehmann([1.0] * 30, [1.0] * 30)
    assert (shift.estimate, shift.low, shift.high) == (0.0, 0.0, 0.0)


def test_clearly_separated_samples_are_significant():
    rng = random.Random(7)
    stable = [rng.gauss(100, 5) for _ in range(60)]
    canary = [rng.gauss(130, 5) for _ in range(60)]
    assert stats.mann_whitney(canary, stable).p_value < 1e-10
    shift = stats.hodges_lehmann(canary, stable)
    assert shift.low > 20 and shift.high < 40 and shift.low < shift.estimate < shift.high


@pytest.mark.parametrize("seed,n,m,confidence", [(1, 12, 9, 0.95), (2, 20, 15, 0.95), (3, 10, 14, 0.90), (4, 60, 50, 0.95),
                                                 (5, 55, 70, 0.99)])
def test_interval_equals_the_inversion_of_the_u_test(seed, n, m, confidence):
    """Second method: the shifts delta for which scipy's U test of (canary - delta) vs stable does not reject
    (its exact test up to EXACT_MAX_PAIRS pairs, its normal approximation above)."""
    from scipy.stats import mannwhitneyu

    rng = random.Random(seed)
    stable = [rng.lognormvariate(0, 0.5) for _ in range(m)]
    canary = [rng.lognormvariate(0.3, 0.5) for _ in range(n)]
    diffs = sorted(c - s for c in canary for s in stable)
    alpha = 1 - confidence
    accepted = []
    for j in range(len(diffs) - 1):  # a delta strictly between d(j+1) and d(j+2) (1-based) ties nothing
        delta = (diffs[j] + diffs[j + 1]) / 2
        if n * m <= stats.EXACT_MAX_PAIRS:
            p = mannwhitneyu([c - delta for c in canary], stable, alternative="two-sided", method="exact").pvalue
        else:
            p = mannwhitneyu([c - delta for c in canary], stable, alternative="two-sided", method="asymptotic",
                             use_continuity=False).pvalue
        if p > alpha:
            accepted.append(j)
    expected_low, expected_high = diffs[accepted[0]], diffs[accepted[-1] + 1]
    shift = stats.hodges_lehmann(canary, stable, confidence)
    assert shift.low == pytest.approx(expected_low, abs=0)
    assert shift.high == pytest.approx(expected_high, abs=0)


@settings(max_examples=60, deadline=None)
@given(
    canary=st.lists(st.integers(-50, 50), min_size=1, max_size=12),
    stable=st.lists(st.integers(-50, 50), min_size=1, max_size=12),
)
def test_estimate_is_the_brute_force_median_of_pairwise_differences(canary, stable):
    brute = statistics.median(c - s for c, s in itertools.product(canary, stable))
    assert stats.hodges_lehmann([float(c) for c in canary], [float(s) for s in stable]).estimate == brute


@settings(max_examples=40, deadline=None)
@given(
    stable=st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=3, max_size=15),
    delta=st.floats(-100, 100, allow_nan=False),
)
def test_a_pure_shift_is_estimated_exactly(stable, delta):
    canary = [s + delta for s in stable]
    shift = stats.hodges_lehmann(canary, stable)
    assert shift.estimate == pytest.approx(delta, abs=1e-9)
    if shift.low is not None:
        assert shift.low <= shift.estimate <= shift.high


def test_limit_pairs_thins_both_sides_evenly():
    canary = list(range(3000))
    stable = list(range(2000))
    a, b = stats.limit_pairs(canary, stable, max_pairs=60_000)
    assert len(a) * len(b) <= 60_000
    assert len(a) == 300 and len(b) == 200
    assert a[0] == 0 and a[-1] == 2990 and b[-1] == 1990
    assert stats.limit_pairs([1.0], [2.0]) == ([1.0], [2.0])


def test_median_by_hand():
    assert stats.median([]) is None
    assert stats.median([3.0, 1.0, 2.0]) == 2.0
    assert stats.median([4.0, 1.0, 2.0, 3.0]) == 2.5


def test_confidence_outside_zero_one_is_refused():
    with pytest.raises(ValueError):
        stats.order_statistic_index(5, 5, 1.0)

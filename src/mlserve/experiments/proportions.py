"""Two-proportion comparison: treatment ``x1 / n1`` against control ``x2 / n2``.

* p-value: the pooled two-proportion z-test (the Pearson chi-square test of the 2x2 table, without
  continuity correction) when every expected cell count is at least :data:`EXACT_BELOW`; otherwise
  Fisher's exact test, two-sided by the usual rule (add the probabilities of every table, with the
  margins fixed, that is no more likely than the observed one).
* interval of the difference ``p1 - p2``: Newcombe's hybrid score interval (method 10 in Newcombe
  1998), built from the two Wilson intervals. It keeps close to its nominal coverage with small
  counts and rates near 0 or 1, where the Wald interval does not.
* interval of the ratio ``p1 / p2``: Katz's log interval (the delta method on ``log p1 - log p2``);
  None when either side has no success.

Standard library only: the normal quantiles come from :class:`statistics.NormalDist`, the
hypergeometric probabilities from :func:`math.lgamma`.
"""

from __future__ import annotations

import math
from statistics import NormalDist

EXACT_BELOW = 5.0
"""Fisher's exact test is used when an expected cell count of the 2x2 table is below this (Cochran's rule)."""

_N = NormalDist()


def z_quantile(confidence: float) -> float:
    """The two-sided normal quantile: 1.96 for 0.95."""
    return _N.inv_cdf(0.5 + confidence / 2.0)


def wilson(x: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson's score interval of a proportion ``x / n``."""
    z = z_quantile(confidence)
    p = x / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(x1: int, n1: int, x2: int, n2: int, confidence: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval of ``x1/n1 - x2/n2``."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, confidence)
    l2, u2 = wilson(x2, n2, confidence)
    diff = p1 - p2
    low = diff - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = diff + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return low, high


def katz_ratio_interval(x1: int, n1: int, x2: int, n2: int, confidence: float) -> tuple[float, float] | None:
    """Katz's log interval of ``(x1/n1) / (x2/n2)``; None when ``x1`` or ``x2`` is 0."""
    if x1 == 0 or x2 == 0:
        return None
    ratio = (x1 / n1) / (x2 / n2)
    se = math.sqrt(1 / x1 - 1 / n1 + 1 / x2 - 1 / n2)
    z = z_quantile(confidence)
    return ratio * math.exp(-z * se), ratio * math.exp(z * se)


def needs_exact(x1: int, n1: int, x2: int, n2: int) -> bool:
    """True when an expected count of the 2x2 table (under equal rates) is below :data:`EXACT_BELOW`."""
    n = n1 + n2
    successes, failures = x1 + x2, n - x1 - x2
    smallest = min(successes, failures) * min(n1, n2) / n
    return smallest < EXACT_BELOW


def pooled_z_test(x1: int, n1: int, x2: int, n2: int) -> float:
    """Two-sided p-value of the pooled z-test of equal proportions."""
    pooled = (x1 + x2) / (n1 + n2)
    if pooled in (0.0, 1.0):
        return 1.0  # every unit has the same outcome: nothing to tell the groups apart
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    z = (x1 / n1 - x2 / n2) / se
    return min(1.0, 2.0 * _N.cdf(-abs(z)))


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_exact(x1: int, n1: int, x2: int, n2: int) -> float:
    """Two-sided p-value of Fisher's exact test of the table ``[[x1, n1 - x1], [x2, n2 - x2]]``."""
    successes = x1 + x2
    low, high = max(0, successes - n2), min(successes, n1)
    total = _log_choose(n1 + n2, successes)

    def log_p(k: int) -> float:  # P(X1 = k) with the margins fixed: hypergeometric
        return _log_choose(n1, k) + _log_choose(n2, successes - k) - total

    observed = log_p(x1)
    # tables as likely as the observed one count as "no more likely" despite rounding (relative 1e-7)
    limit = observed + math.log1p(1e-7)
    p = sum(math.exp(lp) for lp in (log_p(k) for k in range(low, high + 1)) if lp <= limit)
    return min(1.0, p)

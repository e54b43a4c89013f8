"""Comparison of a continuous metric: treatment ``a`` against control ``b``.

* :func:`welch` is Welch's unequal-variance t-test of ``mean(a) - mean(b)``, with the interval from
  the t distribution on the Welch-Satterthwaite degrees of freedom.
* :func:`log_ratio_interval` is the interval of ``mean(a) / mean(b)`` by the delta method on the log
  scale: ``var(log mean(a)) ~ var(a) / (n_a mean(a)^2)``. It needs both means positive.
* :func:`mann_whitney` is the two-sided Mann-Whitney U test: exact (the distribution of U counted
  over every arrangement) for small samples without ties, otherwise the normal approximation with
  the tie correction and a continuity correction of 1/2.

scipy (``mlserve[stats]``) gives the t quantiles; everything else is numpy and the standard library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from mlserve._deps import require
from mlserve.experiments.proportions import z_quantile

EXACT_PAIRS = 2500
"""Mann-Whitney is exact when ``n_a * n_b`` is at most this and no value is tied."""


@dataclass(frozen=True)
class WelchResult:
    diff: float
    se: float
    df: float
    p_value: float | None  # None: neither group varies, there is nothing to test
    low: float | None
    high: float | None


def welch(a: np.ndarray, b: np.ndarray, confidence: float) -> WelchResult:
    """Welch's t-test and interval of ``mean(a) - mean(b)`` (both need 2 or more values)."""
    n1, n2 = len(a), len(b)
    v1, v2 = float(np.var(a, ddof=1)), float(np.var(b, ddof=1))
    diff = float(np.mean(a) - np.mean(b))
    q1, q2 = v1 / n1, v2 / n2
    se2 = q1 + q2
    if se2 <= 0.0:
        return WelchResult(diff, 0.0, float(n1 + n2 - 2), None, None, None)
    se = math.sqrt(se2)
    df = se2 * se2 / (q1 * q1 / (n1 - 1) + q2 * q2 / (n2 - 1))
    t = require("scipy.stats", purpose="Welch's t-test").t
    p = float(min(1.0, 2.0 * t.sf(abs(diff) / se, df)))
    half = float(t.ppf(0.5 + confidence / 2.0, df)) * se
    return WelchResult(diff, se, df, p, diff - half, diff + half)


def log_ratio_interval(mean_a: float, var_mean_a: float, mean_b: float, var_mean_b: float,
                       confidence: float) -> tuple[float, float] | None:
    """Interval of ``mean_a / mean_b`` from the variances of the two means (delta method, log scale)."""
    if mean_a <= 0 or mean_b <= 0:
        return None
    se = math.sqrt(var_mean_a / mean_a ** 2 + var_mean_b / mean_b ** 2)
    ratio = mean_a / mean_b
    z = z_quantile(confidence)
    return ratio * math.exp(-z * se), ratio * math.exp(z * se)


def ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks 1..n with ties given their average rank, and the sizes of the groups of tied values."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    sizes = np.diff(np.r_[starts, len(values)])
    average = starts + (sizes + 1) / 2.0  # 1-based average rank of each block of ties
    out = np.empty(len(values))
    out[order] = np.repeat(average, sizes)
    return out, sizes


def u_distribution(m: int, n: int) -> list[int]:
    """How many of the ``C(m+n, m)`` arrangements give ``U = 0, 1, ..., m*n`` (no ties).

    These are the coefficients of the Gaussian binomial ``prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i)``.
    """
    size = m * n + 1
    counts = [0] * size
    counts[0] = 1
    for i in range(1, m + 1):
        step = n + i  # multiply by (1 - q^(n+i)) ...
        for k in range(size - 1, step - 1, -1):
            counts[k] -= counts[k - step]
        for k in range(i, size):  # ... and divide by (1 - q^i): c[k] += c[k - i], ascending
            counts[k] += counts[k - i]
    return counts


@dataclass(frozen=True)
class UTest:
    u: float
    p_value: float
    method: str
    auc: float


def mann_whitney(a: np.ndarray, b: np.ndarray) -> UTest:
    """Two-sided Mann-Whitney U test of ``a`` against ``b``; ``u`` is ``a``'s statistic."""
    n1, n2 = len(a), len(b)
    r, ties = ranks(np.concatenate([a, b]))
    u = float(r[:n1].sum() - n1 * (n1 + 1) / 2.0)
    auc = u / (n1 * n2)
    if n1 * n2 <= EXACT_PAIRS and bool(np.all(ties == 1)):
        counts = u_distribution(n1, n2)
        total = sum(counts)
        k = int(round(u))
        low, high = sum(counts[: k + 1]) / total, sum(counts[k:]) / total
        return UTest(u, min(1.0, 2.0 * min(low, high)), "exact", auc)
    n = n1 + n2
    tie_term = float(np.sum(ties.astype(float) ** 3 - ties)) / (n * (n - 1))
    sigma = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term))
    if sigma == 0.0:
        return UTest(u, 1.0, "normal", auc)
    z = max(0.0, abs(u - n1 * n2 / 2.0) - 0.5) / sigma
    return UTest(u, min(1.0, 2.0 * NormalDist().cdf(-z)), "normal", auc)

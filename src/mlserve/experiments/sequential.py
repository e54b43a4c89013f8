"""Always-valid inference for people who look at results every day: the mixture SPRT (mSPRT).

Fixed-horizon p-values are valid only at the sample size planned in advance; checking them every day
and stopping at the first ``p < 0.05`` makes false positives several times more frequent than 5%.
The mSPRT (Robbins 1970; Johari, Koomen, Pekelis and Walsh, "Always valid inference", 2017) gives a
p-value and a confidence interval that stay valid however often, and whenever, one looks.

With ``d`` the observed difference of means and ``V`` its estimated variance
(``var_a / n_a + var_b / n_b``), the likelihood ratio of "the difference is ``theta``" against "it is
0", averaged over a normal mixing distribution ``theta ~ N(0, tau^2)``, is::

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 * d^2 / (2 * V * (V + tau^2)))

Under the null hypothesis ``Lambda`` is a nonnegative martingale with mean 1, so by Ville's inequality
the chance that it ever exceeds ``1/alpha`` is at most ``alpha``: ``p = min(1, 1/Lambda)`` is an
always-valid p-value. Inverting the same bound gives the confidence sequence
``d +- sqrt(V (V + tau^2) / tau^2 * (2 log(1/alpha) + log((V + tau^2) / V)))``, which excludes 0
exactly when ``p <= alpha``.

The mixing parameter ``tau`` is the size of effect the test is most sensitive to. It is given in
standard deviations of the metric (``tau = mixing * sd``; the pooled sd of the two groups) and
defaults to :data:`DEFAULT_MIXING` = 0.05: an effect of a twentieth of a standard deviation, a
typical size for product experiments (a 5% relative lift on a 10% conversion rate is 0.017 sd).
A larger ``tau`` detects large effects sooner and small ones later. The bound relies on the normal
approximation of ``d`` (the central limit theorem), so it is not used with fewer than
:data:`MIN_UNITS` units a group.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_MIXING = 0.05
MIN_UNITS = 30


def log_likelihood_ratio(diff: np.ndarray | float, var: np.ndarray | float, tau2: np.ndarray | float) -> np.ndarray:
    """``log Lambda`` for each (difference, variance of the difference, tau^2); arrays broadcast."""
    d, v, t2 = np.asarray(diff, float), np.asarray(var, float), np.asarray(tau2, float)
    return 0.5 * np.log(v / (v + t2)) + t2 * d * d / (2.0 * v * (v + t2))


def p_value(diff: np.ndarray | float, var: np.ndarray | float, tau2: np.ndarray | float) -> np.ndarray:
    """Always-valid p-value ``min(1, 1 / Lambda)``."""
    return np.minimum(1.0, np.exp(-log_likelihood_ratio(diff, var, tau2)))


def confidence_sequence(diff: float, var: float, tau2: float, alpha: float) -> tuple[float, float]:
    """The always-valid ``1 - alpha`` interval of the difference."""
    half = math.sqrt(var * (var + tau2) / tau2 * (2.0 * math.log(1.0 / alpha) + math.log((var + tau2) / var)))
    return diff - half, diff + half

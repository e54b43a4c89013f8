"""The mSPRT: its closed form against numerical integration, its interval against its p-value, and its
false-positive rate under repeated looks in a seeded simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from mlserve.experiments import sequential as S


@pytest.mark.parametrize("diff, var, tau2", [(0.0, 1e-4, 1e-4), (0.02, 1e-4, 4e-4), (-0.05, 4e-4, 1e-4), (0.3, 0.01, 0.5)])
def test_likelihood_ratio_is_the_normal_mixture_integral(diff: float, var: float, tau2: float) -> None:
    """Lambda = integral over theta ~ N(0, tau^2) of N(diff; theta, V) / N(diff; 0, V)."""
    sd, tau = math.sqrt(var), math.sqrt(tau2)

    def integrand(theta: float) -> float:
        return stats.norm.pdf(diff, theta, sd) / stats.norm.pdf(diff, 0.0, sd) * stats.norm.pdf(theta, 0.0, tau)

    value, _ = integrate.quad(integrand, -12 * tau, 12 * tau, points=[0.0, diff], limit=200)
    assert math.exp(float(S.log_likelihood_ratio(diff, var, tau2))) == pytest.approx(value, rel=1e-6)


@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_confidence_sequence_excludes_zero_exactly_when_p_is_below_alpha(alpha: float) -> None:
    var, tau2 = 1e-4, 2.5e-5
    for diff in np.linspace(-0.06, 0.06, 241):
        low, high = S.confidence_sequence(float(diff), var, tau2, alpha)
        p = float(S.p_value(float(diff), var, tau2))
        assert (low > 0 or high < 0) == (p < alpha) or math.isclose(p, alpha, rel_tol=1e-9)


def test_confidence_sequence_is_the_set_of_effects_not_rejected() -> None:
    diff, var, tau2, alpha = 0.013, 2e-5, 1e-5, 0.05
    low, high = S.confidence_sequence(diff, var, tau2, alpha)
    for theta in (low, high):  # at the ends, the test of "the effect is theta" sits exactly at alpha
        assert float(S.p_value(diff - theta, var, tau2)) == pytest.approx(alpha, rel=1e-9)


def _peeking(rng: np.random.Generator, experiments: int, per_look: int, looks: int, effect: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A/B tests on a 10% conversion rate, analysed after every ``per_look`` units a variant.

    Returns, per experiment, whether the mSPRT and whether the fixed-horizon z-test rejected at some look.
    """
    counts = np.arange(per_look, per_look * looks + 1, per_look)
    # conversions between two looks are binomial: the same as drawing every unit, in far less memory
    sa = np.cumsum(rng.binomial(per_look, 0.10 + effect, (experiments, looks)), axis=1)
    sb = np.cumsum(rng.binomial(per_look, 0.10, (experiments, looks)), axis=1)
    pa, pb = sa / counts, sb / counts
    var = pa * (1 - pa) / counts + pb * (1 - pb) / counts
    pooled = (sa + sb) / (2 * counts)
    sd = np.sqrt(pooled * (1 - pooled))
    tau2 = (S.DEFAULT_MIXING * sd) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        p_msprt = np.where(var > 0, S.p_value(pa - pb, var, tau2), 1.0)
        z = (pa - pb) / np.sqrt(pooled * (1 - pooled) * 2 / counts)
    p_fixed = np.where(np.isfinite(z), 2 * stats.norm.sf(np.abs(z)), 1.0)
    return (p_msprt <= 0.05).any(axis=1), (p_fixed <= 0.05).any(axis=1)


def test_false_positive_rate_under_daily_looks_is_at_most_alpha() -> None:
    """2,000 A/A tests, each looked at 40 times (every 500 units a variant, up to 20,000)."""
    rng = np.random.default_rng(20260504)
    sequential_rejects, fixed_rejects = _peeking(rng, experiments=2000, per_look=500, looks=40)
    assert sequential_rejects.mean() <= 0.05
    # the same looks at fixed-horizon p-values reject far more often: the simulation can see inflation
    assert fixed_rejects.mean() > 0.15


def test_the_sequential_test_still_finds_a_real_effect() -> None:
    rng = np.random.default_rng(4)
    sequential_rejects, _ = _peeking(rng, experiments=300, per_look=500, looks=40, effect=0.015)
    assert sequential_rejects.mean() > 0.8

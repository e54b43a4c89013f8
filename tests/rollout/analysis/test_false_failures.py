"""Identical canary and stable must fail the comparison at most as often as the stated confidence allows.

A simulation with a fixed seed, through the judge's own code: two identical workloads emit Poisson
traffic (1 % errors, log-normal latency in Prometheus histogram buckets), scraped every 15 s into
counters; the stand-in answers range queries as Prometheus evaluates ``rate(x[1m])`` and
``histogram_quantile`` at each step. This stand-in replaces Prometheus only for the statistics; the
real server is used by ``test_prometheus_live``. Allowances are 0, so every interval that excludes 0
counts as a false failure.

With one point per rate window (what the judge does) the rate is at the nominal 5 %; with a point
every 15 s of a 1 m rate (overlapping windows, what it did before) it is 25-35 %.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from mlserve.rollout.analysis import AnalysisContext, AnalysisSpec, MetricSpec, judge

BUCKETS = np.array([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, np.inf])
SCRAPE = 15.0
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
NOMINAL = 0.05


class SimulatedPrometheus:
    """Counters of two identical workloads, answered the way Prometheus evaluates rate() and histogram_quantile()."""

    def __init__(self, rng: np.random.Generator, minutes: float, rate: float, error_ratio: float = 0.01) -> None:
        scrapes = int(minutes * 60 / SCRAPE)
        self.series = {}
        for side in ("iris", "iris-canary"):
            requests = rng.poisson(rate * SCRAPE, scrapes)
            errors = rng.binomial(requests, error_ratio)
            per_bucket = np.zeros((scrapes, len(BUCKETS)))
            for i, count in enumerate(requests):
                latency = rng.lognormal(math.log(0.05), 0.6, count)
                per_bucket[i] = np.bincount(np.searchsorted(BUCKETS, latency), minlength=len(BUCKETS))
            cumulative_le = np.cumsum(per_bucket, axis=1)  # a histogram's buckets are cumulative in le
            self.series[side] = (np.concatenate([[0], np.cumsum(requests)]), np.concatenate([[0], np.cumsum(errors)]),
                                 np.vstack([np.zeros(len(BUCKETS)), np.cumsum(cumulative_le, axis=0)]))

    def query_range(self, promql: str, start: datetime, end: datetime, step: str) -> list[tuple[float, float]]:
        side = re.search(r'deployment="([^"]+)"', promql).group(1)
        amount, unit = re.search(r"\[(\d+)(s|m)\]", promql).groups()
        window = int(amount) * (60 if unit == "m" else 1)
        n, u = re.fullmatch(r"(\d+)(ms|s|m)", step).groups()
        every = int(n) * {"ms": 0.001, "s": 1, "m": 60}[u]
        total, errors, hist = self.series[side]
        out = []
        t, last = (start - T0).total_seconds(), (end - T0).total_seconds()
        while t <= last + 1e-9:
            i, j = int(t // SCRAPE), int((t - window) // SCRAPE)
            if 0 <= j and i < len(total):
                out.append((t, self._value(promql, total[i] - total[j], errors[i] - errors[j], hist[i] - hist[j])))
            t += every
        return out

    @staticmethod
    def _value(promql: str, requests: float, errors: float, buckets: np.ndarray) -> float:
        if "histogram_quantile" not in promql:
            return float("nan") if requests == 0 else 1 - errors / requests
        if buckets[-1] == 0:
            return float("nan")
        rank = 0.99 * buckets[-1]
        k = int(np.searchsorted(buckets, rank))
        if math.isinf(BUCKETS[k]):
            return float(BUCKETS[-2])
        lower, below = (0.0, 0.0) if k == 0 else (BUCKETS[k - 1], buckets[k - 1])
        return float(lower + (BUCKETS[k] - lower) * (rank - below) / max(buckets[k] - below, 1e-12))


def comparison_only(sample_every: str) -> AnalysisSpec:
    """Success rate and p99 over rate(...[1m]), compared with allowance 0; points every ``sample_every``."""
    success = ('1 - ((sum(rate(err{deployment="{target}"}[1m])) or vector(0)) / sum(rate(req{deployment="{target}"}[1m])))')
    p99 = 'histogram_quantile(0.99, sum by (le) (rate(lat_bucket{deployment="{target}"}[1m])))'
    metrics = [MetricSpec(name=name, query=query, direction="max", compare=True, fail_on="either", allowed_increase_pct=0,
                          allowed_decrease_pct=0, tolerance=0, min_points=10) for name, query in (("success", success), ("p99", p99))]
    # window is what the judge samples at; the templates keep their own 1m rate window
    return AnalysisSpec(metrics=metrics, step="15s", window=sample_every, scrape_interval="15s", confidence=1 - NOMINAL)


def false_failure_rates(spec: AnalysisSpec, *, rate: float, runs: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    pause = spec.min_range().total_seconds()
    fails = {m.name: 0 for m in spec.metrics}
    for _ in range(runs):
        prometheus = SimulatedPrometheus(rng, minutes=(pause + 120) / 60, rate=rate)
        ctx = AnalysisContext(canary="iris-canary", stable="iris", namespace="ml", model="iris", warmup=True,
                              start=T0 + timedelta(seconds=60), end=T0 + timedelta(seconds=60 + pause))
        for metric in judge(spec, ctx, prometheus).metrics:
            assert metric.canary_points >= 10 and metric.stable_points >= 10
            fails[metric.name] += metric.comparison in ("high", "low")
    return {name: count / runs for name, count in fails.items()}


@pytest.mark.parametrize("rate,runs", [(2.0, 1000), (50.0, 600)], ids=["2 req/s", "50 req/s"])
def test_identical_versions_fail_at_most_at_the_nominal_rate(rate, runs):
    rates = false_failure_rates(comparison_only("1m"), rate=rate, runs=runs, seed=7)
    slack = 2 * math.sqrt(NOMINAL * (1 - NOMINAL) / runs)  # the simulation's own sampling error
    assert all(r <= NOMINAL + slack for r in rates.values()), rates


def test_overlapping_points_would_fail_identical_versions_far_more_often():
    """The same judge fed a point every 15 s of a 1 m rate: the points are not independent."""
    rates = false_failure_rates(comparison_only("15s"), rate=50.0, runs=300, seed=7)
    assert all(r > 3 * NOMINAL for r in rates.values()), rates

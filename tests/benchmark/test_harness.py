"""The measurement harness: statistics against numpy, bootstrap intervals, windows and stopping rules."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlserve.benchmark.harness import (
    MeasureConfig,
    WindowFigures,
    bootstrap_medians,
    bootstrap_ratio_ci,
    compare,
    judge_stability,
    latency_stats,
    measure_callable,
    measure_interleaved,
    rounds_ratio,
)
from mlserve.errors import UsageError

KNOWN = [1.0, 2.0, 3.0, 4.0, 10.0]


class FakeClock:
    """The harness's time source, advanced only by the calls it times: no real sleep, exact figures."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def work(self, seconds: float):
        def call() -> None:
            self.now += seconds
        return call


def test_stats_of_known_samples() -> None:
    stats = latency_stats(KNOWN, wall_s=2.0)
    assert stats.count == 5
    assert (stats.min_ms, stats.max_ms, stats.mean_ms, stats.median_ms) == (1.0, 10.0, 4.0, 3.0)
    # linear interpolation between order statistics, as numpy's default
    assert stats.p90_ms == pytest.approx(7.6)
    assert stats.p99_ms == pytest.approx(9.76)
    assert stats.std_ms == pytest.approx(np.sqrt(50 / 4))  # sample std, ddof=1
    assert stats.cv == pytest.approx(np.sqrt(50 / 4) / 4)
    assert stats.throughput_per_s == pytest.approx(2.5)  # 5 requests / 2 s


@given(st.lists(st.floats(min_value=1e-4, max_value=1e4, allow_nan=False), min_size=2, max_size=300))
@settings(max_examples=60, deadline=None)
def test_stats_agree_with_numpy(samples: list[float]) -> None:
    data = np.asarray(samples)
    stats = latency_stats(samples, wall_s=1.5)
    expected = np.percentile(data, [50, 90, 95, 99, 99.9])
    got = [stats.median_ms, stats.p90_ms, stats.p95_ms, stats.p99_ms, stats.p999_ms]
    assert got == pytest.approx(expected.tolist(), rel=1e-12)
    assert stats.std_ms == pytest.approx(float(data.std(ddof=1)), rel=1e-9, abs=1e-12)
    assert stats.mean_ms == pytest.approx(float(data.mean()), rel=1e-12)
    assert stats.min_ms <= stats.median_ms <= stats.p90_ms <= stats.p95_ms <= stats.p99_ms <= stats.p999_ms <= stats.max_ms
    assert stats.count == len(samples)


def test_single_sample_has_zero_std_and_samples_stay_out_of_json() -> None:
    stats = latency_stats([2.5], wall_s=1.0)
    assert stats.std_ms == 0.0 and stats.cv == 0.0
    assert stats.samples_ms == [2.5]
    assert "samples_ms" not in stats.model_dump(mode="json")


def test_no_samples_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no latency samples"):
        latency_stats([], wall_s=1.0)


def test_bootstrap_interval_contains_the_true_ratio_and_is_seeded() -> None:
    rng = np.random.default_rng(42)
    a = rng.lognormal(mean=np.log(2.0), sigma=0.2, size=400)  # true median 2.0
    b = rng.lognormal(mean=np.log(3.0), sigma=0.2, size=400)  # true median 3.0: ratio 1.5
    ratio, low, high = bootstrap_ratio_ci(a, b, seed=7)
    assert low < 1.5 < high
    assert low < ratio < high
    assert high - low < 0.2  # 400 samples pin it down
    assert bootstrap_ratio_ci(a, b, seed=7) == (ratio, low, high)
    assert bootstrap_ratio_ci(a, b, seed=8) != (ratio, low, high)


def test_bootstrap_coverage_on_synthetic_samples() -> None:
    """Over 40 independent experiments a 95% interval should miss the true ratio only a few times."""
    rng = np.random.default_rng(3)
    misses = 0
    for i in range(40):
        a = rng.gamma(shape=9.0, scale=1.0, size=150)
        b = rng.gamma(shape=9.0, scale=1.25, size=150)  # ratio of medians exactly 1.25
        _, low, high = bootstrap_ratio_ci(a, b, resamples=500, seed=i)
        misses += not (low <= 1.25 <= high)
    assert misses <= 6


@pytest.mark.parametrize("n", [1, 2, 7, 8, 51])
def test_bootstrap_medians_match_brute_force_resampling(n: int) -> None:
    """The O(resamples) draw has the distribution of np.median over resamples with replacement."""
    rng = np.random.default_rng(n)
    data = rng.lognormal(0, 0.5, n).round(1)  # rounded: ties, as timer ticks produce
    brute = np.median(data[rng.integers(0, n, size=(50_000, n))], axis=1)
    exact = bootstrap_medians(data, 50_000, np.random.default_rng(99))
    # both are discrete distributions over the same few values: compare their probability masses
    values = np.union1d(np.unique(brute), np.unique(exact))
    p_brute = np.array([(brute == v).mean() for v in values])
    p_exact = np.array([(exact == v).mean() for v in values])
    assert np.abs(p_brute - p_exact).max() < 0.015
    assert set(np.unique(exact)) <= {(x + y) / 2 for x in data for y in data}


def test_bootstrap_of_large_samples_is_fast_enough_to_run_in_tests() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.lognormal(0, 0.3, 500_000), rng.lognormal(np.log(1.1), 0.3, 500_000)
    ratio, low, high = bootstrap_ratio_ci(a, b)
    assert low < 1.1 < high and high - low < 0.01


def test_bootstrap_rejects_a_bad_confidence() -> None:
    with pytest.raises(UsageError, match="confidence"):
        bootstrap_ratio_ci([1.0], [1.0], confidence=1.5)


def test_stability_rule_on_known_windows() -> None:
    config = MeasureConfig(windows=3, window_tolerance=0.10)
    agree = [WindowFigures(count=10, median_ms=m, throughput_per_s=100.0) for m in (1.0, 1.05, 0.97)]
    verdict = judge_stability(agree, cv=0.02, config=config, windows_measured=3)
    assert verdict.stable, verdict.reason
    disagree = [WindowFigures(count=10, median_ms=m, throughput_per_s=100.0) for m in (1.0, 1.5, 1.0)]
    verdict = judge_stability(disagree, cv=0.02, config=config, windows_measured=3)
    assert not verdict.stable
    assert "window medians differ" in verdict.reason
    slow_throughput = [WindowFigures(count=10, median_ms=1.0, throughput_per_s=t) for t in (100.0, 60.0, 100.0)]
    assert "throughputs" in judge_stability(slow_throughput, cv=0.02, config=config, windows_measured=3).reason
    strict = MeasureConfig(max_cv=0.01)
    verdict = judge_stability(agree, cv=0.02, config=strict, windows_measured=3)
    assert not verdict.stable and "coefficient of variation" in verdict.reason


def test_measure_meets_both_minimums_and_warms_up() -> None:
    calls = []
    measurement = measure_callable(lambda: calls.append(1), MeasureConfig(warmup_s=0.01, min_iterations=50, min_seconds=0.03))
    stats = measurement.stats
    assert stats.count >= 50
    assert stats.wall_s >= 0.03
    assert measurement.warmup_iterations >= 1
    assert len(calls) >= stats.count + measurement.warmup_iterations
    assert len(stats.samples_ms) == stats.count
    assert measurement.stability.windows_measured >= 3


def test_minimum_iterations_dominate_when_calls_are_slow() -> None:
    clock = FakeClock()
    measurement = measure_callable(clock.work(0.002), MeasureConfig(warmup_s=0.0, min_iterations=12, min_seconds=0.0), clock=clock)
    assert measurement.stats.count == 12  # 3 windows of 4 calls: exactly the minimum
    assert measurement.stats.min_ms == pytest.approx(2.0) and measurement.stats.max_ms == pytest.approx(2.0)


def test_unstable_run_measures_extra_windows_then_gives_up() -> None:
    clock = FakeClock()
    durations = iter([0.001] + [0.001] * 2 + [0.02] * 3 + [0.001] * 100)  # one warm-up call, then one call per window

    def call() -> None:
        clock.now += next(durations)

    measurement = measure_callable(
        call, MeasureConfig(warmup_s=0.0, min_iterations=3, min_seconds=0.0, windows=3, max_extra_windows=1, window_tolerance=0.05),
        clock=clock,
    )
    # windows of one call each: fast, fast, slow (disagree), slow (still disagree): 3 + 1 extra, then it gives up
    assert not measurement.stable
    assert measurement.stability.windows_measured == 4
    assert [w.median_ms for w in measurement.stability.windows] == pytest.approx([1.0, 20.0, 20.0])
    assert measurement.warnings and "unstable" in measurement.warnings[0]


def test_max_seconds_cuts_a_run_short() -> None:
    clock = FakeClock()
    measurement = measure_callable(clock.work(0.01), MeasureConfig(warmup_s=0.0, min_iterations=1000, min_seconds=0.0, max_seconds=0.05),
                                   clock=clock)
    assert measurement.stats.count == 5  # 0.05 s of 10 ms calls, then the hard stop
    assert any("cut the run short" in w for w in measurement.warnings)


def test_interleaved_rounds_rotate_and_pair_the_figures() -> None:
    clock = FakeClock()
    calls: list[str] = []

    def work(name: str, seconds: float):
        def call() -> None:
            calls.append(name)
            clock.now += seconds
        return call

    config = MeasureConfig(warmup_s=0.0, min_iterations=6, min_seconds=0.0, rounds=3)
    pauses: list[float] = []
    result = measure_interleaved({"a": work("a", 0.001), "b": work("b", 0.002)}, config, clock=clock, sleep=pauses.append)
    assert pauses == [config.settle_s] * 6  # before every block: the other runtime's threads go idle
    # warm-up a, b; then each round: every contender once untimed + 2 timed calls, the order rotating
    assert calls == ["a", "b"] + ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3 + ["a"] * 3 + ["b"] * 3
    assert result.round_medians_ms["a"] == pytest.approx([1.0] * 3) and result.round_medians_ms["b"] == pytest.approx([2.0] * 3)
    assert result.measurements["b"].stats.count == 6
    ratio = rounds_ratio(result.round_medians_ms["a"], result.round_medians_ms["b"])
    assert ratio.ratio == pytest.approx(2.0) and ratio.method == "interleaved-rounds" and ratio.rounds == 3


def test_rounds_ratio_is_the_median_of_per_round_ratios() -> None:
    """A slow phase of a shared machine hits both sides of a round: per-round ratios cancel it, medians do not."""
    a = [1.0, 1.0, 3.0, 1.0, 1.0]  # round 3 ran while the machine was busy...
    b = [2.0, 2.0, 6.0, 2.0, 2.0]  # ...for both
    comp = rounds_ratio(a, b, resamples=500)
    assert comp.ratio == 2.0 and comp.ci_low == comp.ci_high == 2.0 and comp.verdict == "slower"
    with pytest.raises(UsageError):
        rounds_ratio([1.0, 2.0], [1.0])


def test_concurrency_runs_in_several_threads() -> None:
    import time

    seen: set[int] = set()
    lock = threading.Lock()
    in_flight = [0, 0]  # now, most at once

    def call() -> None:
        with lock:
            seen.add(threading.get_ident())
            in_flight[0] += 1
            in_flight[1] = max(in_flight[1], in_flight[0])
        time.sleep(0.001)
        with lock:
            in_flight[0] -= 1

    measurement = measure_callable(call, MeasureConfig(warmup_s=0.01, min_iterations=20, min_seconds=0.05, concurrency=4))
    assert len(seen) == 4
    assert in_flight[1] >= 2  # calls really overlapped
    assert measurement.concurrency == 4
    assert measurement.stats.count >= 20
    assert measurement.warmup_iterations == 0


def test_an_exception_in_a_worker_thread_reaches_the_caller() -> None:
    def boom() -> None:
        raise RuntimeError("model exploded")

    with pytest.raises(RuntimeError, match="model exploded"):
        measure_callable(boom, MeasureConfig(warmup_s=0.0, min_seconds=0.01, concurrency=2))


def test_compare_measurements() -> None:
    import time

    fast = measure_callable(lambda: None, MeasureConfig(warmup_s=0.0, min_iterations=200, min_seconds=0.01))
    slow = measure_callable(lambda: time.sleep(0.001), MeasureConfig(warmup_s=0.0, min_iterations=30, min_seconds=0.01))
    comparison = compare(fast, slow, resamples=300)
    assert comparison.ratio > 10 and comparison.verdict == "slower"
    assert comparison.ci_low <= comparison.ratio <= comparison.ci_high
    assert compare(slow, fast, resamples=300).verdict == "faster"

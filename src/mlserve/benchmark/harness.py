"""Latency measurement: warm-up, timed windows, statistics, a stability verdict and comparisons.

The rules follow trtexec and perf_analyzer. After a warm-up, the callable runs until at least
``min_iterations`` calls AND ``min_seconds`` have passed. The run is cut into ``windows`` equal
parts, measured one after the other; it is *stable* when the last ``windows`` windows agree (median
latency and throughput within ``window_tolerance`` of their mean). An unstable run measures one more
window, up to ``max_extra_windows`` times, and the figures come from the last ``windows`` windows.

Only the call itself sits between the two clock reads, so the harness adds nothing to the latency
it reports; with ``concurrency > 1`` each thread runs the callable in its own loop (ONNX Runtime and
PyTorch release the GIL while computing) and throughput is completed calls divided by wall time.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable

import numpy as np
from pydantic import BaseModel, Field

from mlserve.errors import UsageError
from mlserve.progress import NULL_PROGRESS, Progress

_clock = time.perf_counter  # the threaded loop's clock (the sequential loops take theirs as an argument)


class MeasureConfig(BaseModel):
    """How long and how to measure. Defaults are trtexec's: 200 ms warm-up, >= 10 calls and >= 3 s."""

    warmup_s: float = Field(0.2, ge=0, description="seconds of untimed calls before measuring")
    min_iterations: int = Field(10, ge=1, description="at least this many timed calls")
    min_seconds: float = Field(3.0, ge=0, description="and at least this many seconds of timed calls")
    max_seconds: float | None = Field(None, gt=0, description="stop measuring after this long, even if unstable")
    concurrency: int = Field(1, ge=1, description="threads calling the function at the same time")
    windows: int = Field(3, ge=1, description="the run is judged stable when this many last windows agree")
    window_tolerance: float = Field(0.10, gt=0, description="windows agree when each is within this fraction of their mean")
    max_extra_windows: int = Field(3, ge=0, description="extra windows measured while the run is unstable")
    max_cv: float | None = Field(None, gt=0, description="also call the run unstable when the coefficient of variation exceeds this")
    rounds: int = Field(10, ge=1, description="interleaved rounds when several runs are compared (A B A B ...)")
    settle_s: float = Field(0.05, ge=0, description="pause before each interleaved block: the previous runtime's spinning threads go idle")


class LatencyStats(BaseModel):
    """Latency figures in milliseconds (std is the sample standard deviation, ddof=1)."""

    count: int
    min_ms: float
    mean_ms: float
    median_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    std_ms: float
    cv: float
    throughput_per_s: float
    wall_s: float
    samples_ms: list[float] = Field(default_factory=list, exclude=True, repr=False)


class WindowFigures(BaseModel):
    count: int
    median_ms: float
    throughput_per_s: float


class Stability(BaseModel):
    stable: bool
    reason: str
    windows: list[WindowFigures]
    tolerance: float
    median_spread: float = Field(description="largest relative distance of a window's median from their mean")
    throughput_spread: float
    cv: float
    max_cv: float | None = None
    windows_measured: int


class Measurement(BaseModel):
    stats: LatencyStats
    stable: bool
    stability: Stability
    warmup_iterations: int
    concurrency: int
    warnings: list[str] = Field(default_factory=list)


class Comparison(BaseModel):
    """``ratio`` is b's latency over a's: above 1 means b is slower than a.

    ``method`` says how: "interleaved-rounds" (a and b measured in alternating rounds; the ratio is the
    median of the per-round ratios of medians, the interval a bootstrap over rounds) or "medians" (two
    separate measurements; ratio of medians, each sample resampled on its own)."""

    ratio: float
    ci_low: float
    ci_high: float
    confidence: float
    resamples: int
    verdict: str = Field(description="'slower', 'faster' or 'same' (the interval contains 1)")
    method: str = "medians"
    rounds: int | None = None

    @property
    def speedup(self) -> float:
        return 1.0 / self.ratio if self.ratio > 0 else math.inf


def latency_stats(samples_ms: np.ndarray | list[float], wall_s: float, *, keep_samples: bool = True) -> LatencyStats:
    """Summary statistics of latency samples (ms); throughput is ``len(samples) / wall_s``."""
    data = np.asarray(samples_ms, dtype=np.float64)
    if data.size == 0:
        raise UsageError("no latency samples to summarise (the measurement ran no iterations)")
    p50, p90, p95, p99, p999 = np.percentile(data, [50, 90, 95, 99, 99.9])
    mean = float(data.mean())
    std = float(data.std(ddof=1)) if data.size > 1 else 0.0
    return LatencyStats(
        count=int(data.size),
        min_ms=float(data.min()),
        mean_ms=mean,
        median_ms=float(p50),
        p90_ms=float(p90),
        p95_ms=float(p95),
        p99_ms=float(p99),
        p999_ms=float(p999),
        max_ms=float(data.max()),
        std_ms=std,
        cv=std / mean if mean > 0 else 0.0,
        throughput_per_s=float(data.size / wall_s) if wall_s > 0 else 0.0,
        wall_s=float(wall_s),
        samples_ms=data.tolist() if keep_samples else [],
    )


def _spread(values: list[float]) -> float:
    mean = sum(values) / len(values)
    if mean <= 0:
        return 0.0
    return max(abs(v - mean) for v in values) / mean


def judge_stability(windows: list[WindowFigures], cv: float, config: MeasureConfig, windows_measured: int) -> Stability:
    """perf_analyzer's rule: the last ``config.windows`` windows agree within the tolerance."""
    last = windows[-config.windows :]
    med_spread = _spread([w.median_ms for w in last]) if last else math.inf
    thr_spread = _spread([w.throughput_per_s for w in last]) if last else math.inf
    if len(last) < config.windows or any(w.count == 0 for w in last):
        stable, reason = False, f"fewer than {config.windows} windows with samples"
    elif med_spread > config.window_tolerance:
        stable, reason = False, f"window medians differ by up to {med_spread:.1%} (tolerance {config.window_tolerance:.0%})"
    elif thr_spread > config.window_tolerance:
        stable, reason = False, f"window throughputs differ by up to {thr_spread:.1%} (tolerance {config.window_tolerance:.0%})"
    elif config.max_cv is not None and cv > config.max_cv:
        stable, reason = False, f"coefficient of variation {cv:.1%} exceeds {config.max_cv:.1%}"
    else:
        stable, reason = True, f"last {len(last)} windows agree within {config.window_tolerance:.0%}"
    return Stability(
        stable=stable,
        reason=reason,
        windows=last,
        tolerance=config.window_tolerance,
        median_spread=med_spread if math.isfinite(med_spread) else -1.0,
        throughput_spread=thr_spread if math.isfinite(thr_spread) else -1.0,
        cv=cv,
        max_cv=config.max_cv,
        windows_measured=windows_measured,
    )


class _Window:
    __slots__ = ("start", "end", "samples")

    def __init__(self, start: float) -> None:
        self.start, self.end, self.samples = start, start, []  # samples: list[float] seconds

    def figures(self) -> WindowFigures:
        duration = self.end - self.start
        n = len(self.samples)
        return WindowFigures(
            count=n,
            median_ms=float(np.median(self.samples)) * 1e3 if n else 0.0,
            throughput_per_s=n / duration if duration > 0 else 0.0,
        )


def _sequential_window(fn: Callable[[], object], start: float, min_count: int, min_s: float, hard_stop: float,
                       clock: Callable[[], float] = time.perf_counter) -> _Window:
    window = _Window(start)
    samples = window.samples
    append = samples.append
    until = start + min_s
    end = start
    while True:
        t0 = clock()
        fn()
        end = clock()
        append(end - t0)
        if (end >= until and len(samples) >= min_count) or end >= hard_stop:
            break
    window.end = end
    return window


class _Workers:
    """``n`` threads calling ``fn`` in a loop; each thread appends end time, latency, end time, ... to a flat list."""

    def __init__(self, fn: Callable[[], object], n: int, record_from: float) -> None:
        self.fn, self.record_from = fn, record_from
        self.stop = threading.Event()
        self.results: list[list[float]] = [[] for _ in range(n)]
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(n)]

    def _loop(self, index: int) -> None:
        fn, clock, out, stop = self.fn, _clock, self.results[index], self.stop
        append, record_from = out.append, self.record_from
        try:
            while not stop.is_set():
                t0 = clock()
                fn()
                t1 = clock()
                if t0 >= record_from:
                    append(t1)
                    append(t1 - t0)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the measuring thread
            self.errors.append(exc)
            stop.set()

    def completed(self) -> int:
        return sum(len(r) // 2 for r in self.results)

    def __enter__(self) -> "_Workers":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def measure_callable(fn: Callable[[], object], config: MeasureConfig | None = None, *, progress: Progress = NULL_PROGRESS,
                     label: str = "measuring", clock: Callable[[], float] = time.perf_counter) -> Measurement:
    """Warm ``fn`` up, time it until the config's minimums are met and the windows agree, summarise.

    ``clock`` is the time source (seconds); tests inject one that the callable itself advances."""
    config = config or MeasureConfig()
    per_window_n = max(1, math.ceil(config.min_iterations / config.windows))
    per_window_s = config.min_seconds / config.windows
    max_windows = config.windows + config.max_extra_windows
    with progress.task(label, total=float(config.windows)) as task:
        if config.concurrency == 1:
            windows, warm_n = _measure_sequential(fn, config, per_window_n, per_window_s, max_windows, task, clock)
        else:
            windows, warm_n = _measure_threaded(fn, config, per_window_n, per_window_s, max_windows, task)
    return _summarise(windows, warm_n, config)


def _warm_up(fn: Callable[[], object], seconds: float, clock: Callable[[], float], minimum: int = 1) -> int:
    count = 0
    until = clock() + seconds
    while True:
        fn()
        count += 1
        if count >= minimum and clock() >= until:
            return count


def _measure_sequential(fn, config, per_window_n, per_window_s, max_windows, task, clock=time.perf_counter):  # type: ignore[no-untyped-def]
    warm_n = _warm_up(fn, config.warmup_s, clock)
    begin = clock()
    hard_stop = begin + config.max_seconds if config.max_seconds else math.inf
    windows: list[_Window] = []
    while True:
        window = _sequential_window(fn, clock(), per_window_n, per_window_s, hard_stop, clock)
        windows.append(window)
        task.update(completed=float(min(len(windows), config.windows)))
        if _done(windows, config, max_windows, hard_stop):
            return windows, warm_n


def _measure_threaded(fn, config, per_window_n, per_window_s, max_windows, task):  # type: ignore[no-untyped-def]
    begin = _clock() + config.warmup_s
    hard_stop = begin + config.max_seconds if config.max_seconds else math.inf
    workers = _Workers(fn, config.concurrency, begin)
    boundaries = [begin]
    with workers:
        poll = min(0.005, max(per_window_s / 20, 0.0005))
        while _clock() < begin and not workers.stop.is_set():
            time.sleep(poll)
        done_before = 0
        windows: list[_Window] = []
        while not workers.stop.is_set():
            now = _clock()
            completed = workers.completed()
            if (now - boundaries[-1] >= per_window_s and completed - done_before >= per_window_n) or now >= hard_stop:
                boundaries.append(now)
                done_before = completed
                windows = _split(workers, boundaries)
                task.update(completed=float(min(len(windows), config.windows)))
                if _done(windows, config, max_windows, hard_stop):
                    break
            time.sleep(poll)
    if workers.errors:
        raise workers.errors[0]
    return _split(workers, boundaries), 0  # warm-up calls are not counted across threads


def _split(workers: _Workers, boundaries: list[float]) -> list[_Window]:
    """Assign each call to the window in which it completed (calls after the last boundary are dropped)."""
    windows = [_Window(b) for b in boundaries[:-1]]
    for w, end in zip(windows, boundaries[1:]):
        w.end = end
    if not windows:
        return windows
    edges = np.asarray(boundaries)
    for result in workers.results:
        flat = np.asarray(result[: len(result) // 2 * 2], dtype=np.float64).reshape(-1, 2)  # a consistent snapshot
        index = np.searchsorted(edges, flat[:, 0], side="right") - 1
        for i, w in enumerate(windows):
            w.samples.extend(flat[index == i, 1].tolist())
    return windows


def _done(windows: list[_Window], config: MeasureConfig, max_windows: int, hard_stop: float) -> bool:
    if windows and windows[-1].end >= hard_stop:
        return True
    if len(windows) < config.windows:
        return False
    if len(windows) >= max_windows:
        return True
    last = windows[-config.windows :]
    samples = np.concatenate([np.asarray(w.samples) for w in last])
    cv = float(samples.std(ddof=1) / samples.mean()) if samples.size > 1 and samples.mean() > 0 else 0.0
    return judge_stability([w.figures() for w in last], cv, config, len(windows)).stable


def _summarise(windows: list[_Window], warm_n: int, config: MeasureConfig) -> Measurement:
    last = windows[-config.windows :]
    samples_ms = np.concatenate([np.asarray(w.samples, dtype=np.float64) for w in last]) * 1e3
    wall = sum(w.end - w.start for w in last)
    stats = latency_stats(samples_ms, wall)
    stability = judge_stability([w.figures() for w in last], stats.cv, config, len(windows))
    warnings: list[str] = []
    if not stability.stable:
        warnings.append(f"unstable measurement after {len(windows)} windows: {stability.reason}")
    if stats.count < config.min_iterations:
        warnings.append(f"only {stats.count} timed calls (asked for {config.min_iterations}): --max-seconds cut the run short")
    return Measurement(
        stats=stats,
        stable=stability.stable,
        stability=stability,
        warmup_iterations=warm_n,
        concurrency=config.concurrency,
        warnings=warnings,
    )


def bootstrap_medians(samples: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of ``resamples`` bootstrap resamples of ``samples``, drawn exactly in O(resamples).

    A resample of size n is ``sorted[floor(n * U_i)]`` for n uniforms U_i, and floor is monotone, so
    its k-th order statistic is ``sorted[floor(n * U_(k))]`` with ``U_(k) ~ Beta(k, n - k + 1)``; the
    next one is ``U_(k) + (1 - U_(k)) * Beta(1, n - k)``. This gives the same distribution as
    resampling with replacement and taking ``np.median``, without an n x resamples matrix (a
    3-second run of a fast model has hundreds of thousands of samples).
    """
    data = np.sort(np.asarray(samples, dtype=np.float64))
    n = data.size
    if n == 1:
        return np.full(resamples, data[0])
    k = (n + 1) // 2  # 1-based rank of the (lower) median
    u = rng.beta(k, n - k + 1, size=resamples)
    lower = data[np.minimum((u * n).astype(np.int64), n - 1)]
    if n % 2:
        return lower
    v = u + (1 - u) * rng.beta(1, n - k, size=resamples)
    upper = data[np.minimum((v * n).astype(np.int64), n - 1)]
    return (lower + upper) / 2


def bootstrap_ratio_ci(
    a_ms: np.ndarray | list[float],
    b_ms: np.ndarray | list[float],
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Ratio of medians b/a and its percentile-bootstrap interval (each sample resampled on its own)."""
    a = np.asarray(a_ms, dtype=np.float64)
    b = np.asarray(b_ms, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise UsageError("cannot compare measurements without samples")
    if not 0 < confidence < 1:
        raise UsageError(f"confidence must be between 0 and 1, got {confidence}")
    if a.min() <= 0 or b.min() <= 0:
        raise UsageError("cannot form a latency ratio from samples that are zero or negative")
    rng = np.random.default_rng(seed)
    ratios = bootstrap_medians(b, resamples, rng) / bootstrap_medians(a, resamples, rng)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(ratios, [alpha, 1 - alpha])
    return float(np.median(b) / np.median(a)), float(low), float(high)


def compare(a: Measurement, b: Measurement, *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> Comparison:
    """How much slower (ratio > 1) or faster (ratio < 1) ``b`` is than ``a``, by median latency."""
    if not a.stats.samples_ms or not b.stats.samples_ms:
        raise UsageError("cannot compare measurements whose samples were not kept")
    ratio, low, high = bootstrap_ratio_ci(a.stats.samples_ms, b.stats.samples_ms, confidence=confidence, resamples=resamples, seed=seed)
    verdict = "slower" if low > 1 else "faster" if high < 1 else "same"
    return Comparison(ratio=ratio, ci_low=low, ci_high=high, confidence=confidence, resamples=resamples, verdict=verdict)


# ------------------------------------------------------------------ interleaved rounds


class Interleaved(BaseModel):
    """Several callables measured in alternating rounds: every round times each of them once, in a rotating order."""

    names: list[str]
    measurements: dict[str, Measurement]
    round_medians_ms: dict[str, list[float]] = Field(description="per contender, its median latency in each round")
    rounds: int


def measure_interleaved(
    calls: dict[str, Callable[[], object]],
    config: MeasureConfig | None = None,
    *,
    progress: Progress = NULL_PROGRESS,
    label: str = "measuring",
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> Interleaved:
    """Time every callable in ``config.rounds`` rounds, A B C, B C A, C A B ...: slow phases of a shared
    machine then hit every contender alike, and each round yields one ratio per pair.

    Each contender is warmed up for ``warmup_s`` first; each of its blocks starts with one untimed call
    (it absorbs what the previous contender left behind: caches, another runtime's spinning threads) and
    then makes at least ``min_iterations / rounds`` calls lasting ``min_seconds / rounds``. Before each block the
    harness pauses ``settle_s``: ONNX Runtime's and OpenMP's worker threads spin for a while after a call, and in
    one process they would slow the next contender down (a PyTorch source after an ORT candidate). Stability is
    judged, per contender, on its last ``windows`` rounds, as for a single run."""
    config = config or MeasureConfig()
    if config.concurrency != 1:
        raise UsageError("interleaved rounds measure one stream at a time (concurrency 1)")
    names = list(calls)
    per_n = max(1, math.ceil(config.min_iterations / config.rounds))
    per_s = config.min_seconds / config.rounds
    warm = {name: _warm_up(calls[name], config.warmup_s, clock) for name in names}
    windows: dict[str, list[_Window]] = {name: [] for name in names}
    with progress.task(label, total=float(config.rounds)) as task:
        for r in range(config.rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            for name in order:
                fn = calls[name]
                if config.settle_s:
                    sleep(config.settle_s)
                fn()  # untimed
                windows[name].append(_sequential_window(fn, clock(), per_n, per_s, math.inf, clock))
            task.update(completed=float(r + 1))
    stable_config = config.model_copy(update={"windows": min(config.windows, config.rounds)})
    measurements = {}
    for name in names:
        wins = windows[name]
        samples_ms = np.concatenate([np.asarray(w.samples, dtype=np.float64) for w in wins]) * 1e3
        stats = latency_stats(samples_ms, sum(w.end - w.start for w in wins))
        stability = judge_stability([w.figures() for w in wins][-stable_config.windows:], stats.cv, stable_config, len(wins))
        warnings = [] if stability.stable else [f"unstable measurement over {len(wins)} rounds: {stability.reason}"]
        measurements[name] = Measurement(stats=stats, stable=stability.stable, stability=stability, warmup_iterations=warm[name],
                                         concurrency=1, warnings=warnings)
    medians = {name: [float(np.median(w.samples)) * 1e3 for w in windows[name]] for name in names}
    return Interleaved(names=names, measurements=measurements, round_medians_ms=medians, rounds=config.rounds)


def rounds_ratio(a_ms: list[float], b_ms: list[float], *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> Comparison:
    """b over a from paired rounds: the median of the per-round ratios b_r / a_r, with a percentile
    bootstrap interval over rounds (rounds resampled with replacement)."""
    a = np.asarray(a_ms, dtype=np.float64)
    b = np.asarray(b_ms, dtype=np.float64)
    if a.size == 0 or a.size != b.size:
        raise UsageError("cannot compare rounds: both sides need the same, non-zero number of rounds")
    if not 0 < confidence < 1:
        raise UsageError(f"confidence must be between 0 and 1, got {confidence}")
    if a.min() <= 0 or b.min() <= 0:
        raise UsageError("cannot form a latency ratio from rounds whose median is zero or negative")
    ratios = b / a
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, ratios.size, size=(resamples, ratios.size))
    boot = np.median(ratios[picks], axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha])
    ratio = float(np.median(ratios))
    verdict = "slower" if low > 1 else "faster" if high < 1 else "same"
    return Comparison(ratio=ratio, ci_low=float(low), ci_high=float(high), confidence=confidence, resamples=resamples,
                      verdict=verdict, method="interleaved-rounds", rounds=int(ratios.size))

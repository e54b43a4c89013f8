"""Latency of the source and the candidates, measured like for like (``mlserve.benchmark.harness``).

For every thread count, the source and every candidate run at that count (``torch.set_num_threads``
for PyTorch, ``intra_op_num_threads`` for ONNX Runtime) in interleaved rounds (S A B, A B S, B S A
...); a candidate's speedup is the median of its per-round ratios (source median / candidate median),
with a bootstrap interval over rounds.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from pydantic import BaseModel, Field

from mlserve.optimize.models import Latency, MeasurementSetup, Speedup
from mlserve.progress import NULL_PROGRESS, Progress

SOURCE = "\0source"
"""The source's key among the interleaved contenders (no candidate can have this name)."""


class TimingSettings(BaseModel):
    warmup_s: float = Field(0.2, ge=0, description="seconds of untimed calls first, per contender")
    min_iterations: int = Field(10, ge=1, description="at least this many timed calls per contender")
    min_seconds: float = Field(3.0, ge=0, description="and at least this many seconds of timed calls per contender")
    rounds: int = Field(10, ge=1, description="interleaved rounds")
    confidence: float = Field(0.95, gt=0, lt=1, description="confidence level of the speedup intervals")


def usable_cores() -> int:
    """Cores this process may run on (affinity), the default thread count of both sides."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class ThreadResult(BaseModel):
    threads: int
    source: Latency
    candidates: dict[str, Latency]
    speedups: dict[str, Speedup]
    vs_fp32: dict[str, float] = Field(default_factory=dict)


def measure_all(
    source_call: Callable[[int], Callable[[], Any]],
    candidate_calls: dict[str, Callable[[int], Callable[[], Any]]],
    grid: list[int],
    settings: TimingSettings,
    *,
    source_threads_apply: bool = True,
    seed: int = 0,
    progress: Progress = NULL_PROGRESS,
) -> list[ThreadResult]:
    """Measure the source and every candidate at each thread count of ``grid``, interleaved."""
    from mlserve.benchmark.harness import MeasureConfig, measure_interleaved, rounds_ratio

    config = MeasureConfig(warmup_s=settings.warmup_s, min_iterations=settings.min_iterations, min_seconds=settings.min_seconds,
                           rounds=settings.rounds, windows=min(3, settings.rounds), max_extra_windows=0)
    results = []
    for threads in grid:
        calls = {SOURCE: source_call(threads), **{name: make(threads) for name, make in candidate_calls.items()}}
        inter = measure_interleaved(calls, config, progress=progress,
                                    label=f"measuring the source and {len(candidate_calls)} candidates at {threads} threads, interleaved")
        src = _latency(inter.measurements[SOURCE], threads if source_threads_apply else None)
        result = ThreadResult(threads=threads, source=src, candidates={}, speedups={})
        for name in candidate_calls:
            result.candidates[name] = _latency(inter.measurements[name], threads)
            comp = rounds_ratio(inter.round_medians_ms[name], inter.round_medians_ms[SOURCE], confidence=settings.confidence, seed=seed)
            result.speedups[name] = Speedup(
                ratio=comp.ratio, ci_low=comp.ci_low, ci_high=comp.ci_high, confidence=comp.confidence, rounds=inter.rounds,
                threads=threads, source_threads=threads if source_threads_apply else None,
            )
            if "fp32" in candidate_calls:
                result.vs_fp32[name] = rounds_ratio(inter.round_medians_ms[name], inter.round_medians_ms["fp32"], seed=seed).ratio
        results.append(result)
    return results


def _latency(m: Any, threads: int | None) -> Latency:
    s = m.stats
    return Latency(p50_ms=s.median_ms, p90_ms=s.p90_ms, mean_ms=s.mean_ms, min_ms=s.min_ms, iterations=s.count, threads=threads,
                   stable=m.stable, harness="mlserve.benchmark.harness (interleaved rounds)")


def setup(settings: TimingSettings, grid: list[int], *, batch: int | None, source_kind: str, source_threads_apply: bool) -> MeasurementSetup:
    source_api = {"onnx": "ONNX Runtime intra_op_num_threads (inter_op 1), default optimizations",
                  "sklearn": "none (scikit-learn has no intra-op thread setting; it runs as configured)"}.get(
        source_kind, "torch.set_num_threads, eager, torch.inference_mode")
    return MeasurementSetup(
        method="interleaved rounds", rounds=settings.rounds, threads=grid, batch=batch, warmup_s=settings.warmup_s,
        min_iterations=settings.min_iterations, min_seconds=settings.min_seconds,
        source_threads=source_api if source_threads_apply or source_kind == "sklearn" else source_api,
        candidate_threads="ONNX Runtime intra_op_num_threads (inter_op 1), ORT_ENABLE_ALL",
        ratio="median over rounds of (source median / candidate median), percentile bootstrap interval over rounds",
        confidence=settings.confidence,
    )

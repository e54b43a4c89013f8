"""Latency of one callable, through the benchmark harness (``mlserve.benchmark.harness``)."""

from __future__ import annotations

from typing import Any, Callable

from pydantic import BaseModel, Field

from mlserve.optimize.models import Latency
from mlserve.progress import NULL_PROGRESS, Progress


class TimingSettings(BaseModel):
    warmup_s: float = Field(0.2, ge=0, description="seconds of untimed calls first")
    min_iterations: int = Field(50, ge=1, description="at least this many timed calls")
    min_seconds: float = Field(1.0, ge=0, description="and at least this many seconds of timed calls")


def measure(fn: Callable[[], Any], settings: TimingSettings, *, label: str, threads: int | None = None, progress: Progress = NULL_PROGRESS) -> Latency:
    from mlserve.benchmark.harness import MeasureConfig, measure_callable

    config = MeasureConfig(
        warmup_s=settings.warmup_s,
        min_iterations=settings.min_iterations,
        min_seconds=settings.min_seconds,
        windows=1 if settings.min_iterations < 3 else 3,
        max_extra_windows=1,
    )
    result = measure_callable(fn, config, progress=progress, label=label)
    s = result.stats
    return Latency(
        p50_ms=s.median_ms, p90_ms=s.p90_ms, mean_ms=s.mean_ms, min_ms=s.min_ms, iterations=s.count, threads=threads,
        harness="mlserve.benchmark.harness",
    )

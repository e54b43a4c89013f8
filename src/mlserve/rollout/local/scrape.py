"""The judge's own metrics when there is no Prometheus: scrape ``/metrics`` and answer range queries.

:class:`Scraper` reads the server's ``/metrics`` (Prometheus text format) every ``interval`` seconds
from a background thread and keeps the samples of the metrics the analysis reads, each stamped with
the time its scrape started (as Prometheus stamps them). :class:`ScrapeQuerier` answers the judge's
``query_range(promql, start, end, step)`` from them with :mod:`mlserve.rollout.local.promql`, the
way Prometheus answers ``/api/v1/query_range``: the query is evaluated at ``start``, ``start + step``,
... up to ``end``, and each evaluation of ``rate(x[w])`` uses the scrapes of the ``w`` seconds before
it. The judge's step is ``max(step, window)``, so consecutive points use disjoint sets of scrapes:
one independent point per window, per side. Canary and stable are told apart by the ``variant``
label the server puts on its request metrics (the local default analysis selects
``model="{model}",variant="{target}"``).

A window in which a side had no requests gives no point (its series did not move, or does not exist
yet): not enough points is "inconclusive", never a pass. While the server cannot be scraped, queries
raise :class:`~mlserve.errors.InfrastructureError` (the judge retries them up to the analysis's
``consecutive_error_limit``); the windows the outage covered have no points.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable

from mlserve.errors import InfrastructureError
from mlserve.rollout.local import promql

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?\s*$")
_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def parse_exposition(text: str, keep: Callable[[str], bool] = lambda name: True) -> dict[frozenset, float]:
    """Samples of the Prometheus text format: {labels with __name__: value}; comments and other metrics left out."""
    out: dict[frozenset, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None or not keep(m.group(1)):
            continue
        labels = {"__name__": m.group(1)}
        body = m.group(3) or ""
        pos = 0
        while pos < len(body):
            lm = _LABEL.match(body, pos)
            if lm is None:
                break
            labels[lm.group(1)] = re.sub(r"\\(.)", lambda e: "\n" if e.group(1) == "n" else e.group(1), lm.group(2))
            pos = lm.end()
        try:
            value = float(m.group(4))
        except ValueError:
            continue
        out[frozenset(labels.items())] = value
    return out


class Scraper:
    """Scrapes ``url`` every ``interval`` seconds from a daemon thread; keeps ``retention`` seconds of samples."""

    def __init__(self, url: str, *, interval: float, metric_names: set[str] | None = None, retention: float = 3600.0,
                 timeout: float = 5.0, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.interval = max(0.05, interval)
        self.names = metric_names
        self.retention = retention
        self.timeout = timeout
        self.clock = clock
        self.series: dict[frozenset, list[tuple[float, float]]] = {}
        self.scrapes = 0
        self.failures_in_a_row = 0
        self.last_error = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _keep(self, name: str) -> bool:
        return self.names is None or name in self.names

    def scrape_once(self) -> None:
        started = self.clock()
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout) as resp:  # noqa: S310 - the user's own server
                text = resp.read().decode("utf-8", "replace")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            with self._lock:
                self.failures_in_a_row += 1
                self.last_error = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            return
        samples = parse_exposition(text, self._keep)
        with self._lock:
            for labels, value in samples.items():
                self.series.setdefault(labels, []).append((started, value))
            horizon = started - self.retention
            for points in self.series.values():
                while points and points[0][0] < horizon:
                    points.pop(0)
            self.scrapes += 1
            self.failures_in_a_row = 0

    def _loop(self) -> None:
        next_at = self.clock()
        while not self._stop.is_set():
            self.scrape_once()
            next_at += self.interval
            delay = next_at - self.clock()
            if delay < 0:  # a slow scrape: keep the rhythm, skip the missed slots
                next_at = self.clock()
                delay = 0
            self._stop.wait(delay)

    def start(self) -> "Scraper":
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="mlserve-rollout-scraper", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 1)

    def snapshot(self) -> tuple[dict[frozenset, list[tuple[float, float]]], int, str]:
        with self._lock:
            return {k: list(v) for k, v in self.series.items()}, self.failures_in_a_row, self.last_error

    def __enter__(self) -> "Scraper":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ScrapeQuerier:
    """The judge's :class:`~mlserve.rollout.analysis.RangeQuerier` over a :class:`Scraper`'s samples."""

    def __init__(self, scraper: Scraper) -> None:
        self.scraper = scraper
        self._parsed: dict[str, Any] = {}

    def parsed(self, query: str) -> Any:
        if query not in self._parsed:
            self._parsed[query] = promql.parse(query)
        return self._parsed[query]

    def query_range(self, query: str, start: Any, end: Any, step: Any) -> list[tuple[float, float]]:
        from mlserve.errors import UsageError
        from mlserve.rollout.prometheus import to_unix

        node = self.parsed(query)
        series, failing, error = self.scraper.snapshot()
        if failing:
            raise InfrastructureError(f"cannot scrape {self.scraper.url}: {error} ({failing} failed scrape(s) in a row)",
                                      hint="check that mlserve serve is running at --server")
        seconds = step.total_seconds() if hasattr(step, "total_seconds") else \
            float(step) if isinstance(step, (int, float)) else promql.parse_duration(str(step), query)
        evaluator = promql.Evaluator(series, query)
        t, last = to_unix(start), to_unix(end)
        points: list[tuple[float, float]] = []
        while t <= last + 1e-6:
            value = evaluator.at(node, t)
            if isinstance(value, float):
                points.append((t, value))
            elif len(value) == 1:
                points.append((t, next(iter(value.values()))))
            elif len(value) > 1:
                raise UsageError(f"the query {query!r} returned {len(value)} series (e.g. "
                                 f"{[dict(k) for k in list(value)[:3]]}); it must return one",
                                 hint="aggregate it, e.g. sum(...) or sum by () (...)")
            t += seconds
        return points


__all__ = ["Scraper", "ScrapeQuerier", "parse_exposition"]

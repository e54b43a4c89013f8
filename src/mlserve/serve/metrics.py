"""Prometheus metrics of a running server (``GET /metrics``), with prometheus-client.

The request metrics carry the names and labels that ``mlserve rollout``'s default analysis selects
on (``namespace``, ``deployment`` from ``--metrics-label``; ``code``), so a rollout judges a
``serve`` Deployment with no analysis file. Only inference requests are counted there (OIP infer and
``/predict``, over REST and gRPC): health probes and scrapes would otherwise dilute the success rate
and give a canary without traffic points that look like a pass. Every name is listed in docs/serve.md.
"""

from __future__ import annotations

import re
import threading
from typing import Any

REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RESERVED = {"code", "model", "version", "protocol", "sha256", "result", "le", "quantile", "variant", "experiment",
            "assigned_by"}


def parse_metrics_labels(items: list[str]) -> dict[str, str]:
    """``["deployment=iris", "team=ml"]`` -> dict, refusing bad and reserved names (a usage error)."""
    from mlserve.errors import UsageError

    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--metrics-label {item!r}: expected KEY=VALUE")
        if not _LABEL_NAME.match(key) or key.startswith("__"):
            raise UsageError(f"--metrics-label {item!r}: {key!r} is not a Prometheus label name")
        if key in RESERVED:
            raise UsageError(f"--metrics-label {item!r}: {key!r} is set by the server itself",
                             hint=f"reserved: {', '.join(sorted(RESERVED))}")
        if key in out:
            raise UsageError(f"--metrics-label {key!r} is given twice")
        out[key] = value
    return out


def multiprocess_dir() -> str | None:
    import os

    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class ServerMetrics:
    """All metrics of one server, in a registry of their own (nothing from the process's default one)."""

    def __init__(self, const_labels: dict[str, str] | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # the *_created series only double what a scrape must parse

        self.const = dict(const_labels or {})
        c = list(self.const)
        cv = list(self.const.values())
        self._cv = cv
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("http_requests", "Inference requests answered, by status code (gRPC calls as their "
                                "HTTP equivalent).", c + ["code", "model", "version", "protocol", "variant"],
                                registry=r)
        self.duration = Histogram("http_request_duration_seconds", "Time from a request's arrival to its answer.",
                                  c + ["model", "version", "protocol", "variant"], buckets=REQUEST_BUCKETS, registry=r)
        self.queue = Histogram("mlserve_inference_queue_duration_seconds", "Time a request waited in its model's "
                               "queue before its batch started.", c + ["model", "version"], buckets=STAGE_BUCKETS,
                               registry=r)
        self.compute = Histogram("mlserve_inference_compute_duration_seconds", "Time of one model run (a batch).",
                                 c + ["model", "version"], buckets=STAGE_BUCKETS, registry=r)
        self.batch = Histogram("mlserve_batch_size", "Rows per model run.", c + ["model", "version"],
                               buckets=BATCH_BUCKETS, registry=r)
        # multiprocess_mode: how the workers' values add up under --workers > 1 (ignored with one process)
        self.inflight = Gauge("mlserve_inflight_requests", "Inference requests accepted and not yet answered.",
                              c + ["model"], registry=r, multiprocess_mode="livesum")
        self.queued = Gauge("mlserve_queue_depth", "Requests waiting in the model's queue.", c + ["model"], registry=r,
                            multiprocess_mode="livesum")
        self.info = Gauge("model_info", "1 for the version each variant of a model serves now.",
                          c + ["model", "variant", "version", "sha256"], registry=r, multiprocess_mode="livemax")
        self.reloads = Counter("mlserve_model_reloads", "Attempts to switch a model's variant to a new version, by "
                               "result (success, failure).", c + ["model", "variant", "result"], registry=r)
        self.reload_failing = Gauge("mlserve_model_reload_failing", "1 while the latest version a stage named failed "
                                    "to load, verify or warm up (the previous version still serves).",
                                    c + ["model", "variant"], registry=r, multiprocess_mode="livemax")
        self.share = Gauge("mlserve_split_share", "The share of a model's requests its split gives each variant "
                           "(weight / sum of weights).", c + ["model", "experiment", "variant"], registry=r,
                           multiprocess_mode="livemax")
        self.revision = Gauge("mlserve_split_revision", "The revision of each model's split (1 at start, +1 per "
                              "change through the admin endpoint).", c + ["model"], registry=r,
                              multiprocess_mode="livemax")
        self.assignments = Counter("mlserve_split_assignments", "Inference requests assigned to a variant by the "
                                   "split, by how: key (sticky) or weight (random).",
                                   c + ["model", "experiment", "variant", "assigned_by"], registry=r)
        self.ready = Gauge("mlserve_ready", "1 while the server reports ready (0 while starting and draining).", c,
                           registry=r, multiprocess_mode="livemin")
        self._children: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    # cached label children: a labels() lookup per request costs more than the observation itself
    def _child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            with self._lock:
                child = metric.labels(*self._cv, *values)
                self._children[key] = child
        return child

    def request(self, code: int, model: str, version: str, protocol: str, seconds: float, variant: str = "") -> None:
        self._child(self.requests, str(code), model, version, protocol, variant).inc()
        self._child(self.duration, model, version, protocol, variant).observe(seconds)

    def assigned(self, model: str, experiment: str, variant: str, by: str) -> None:
        self._child(self.assignments, model, experiment, variant, by).inc()

    def batch_observer(self, model: str, version: str):  # noqa: ANN201
        queue = self._child(self.queue, model, version)
        compute = self._child(self.compute, model, version)
        batch = self._child(self.batch, model, version)

        def observe(rows: int, queued: float, took: float) -> None:
            queue.observe(queued)
            compute.observe(took)
            batch.observe(rows)

        return observe

    def inflight_gauge(self, model: str) -> Any:
        return self._child(self.inflight, model)

    def queue_gauge(self, model: str) -> Any:
        return self._child(self.queued, model)

    def serving(self, model: str, variant: str, version: str, sha256: str, previous: tuple[str, str] | None) -> None:
        if previous is not None:
            self.not_serving(model, variant, *previous)
        self.info.labels(*self._cv, model, variant, version, sha256).set(1)

    def not_serving(self, model: str, variant: str, version: str, sha256: str) -> None:
        self.info.labels(*self._cv, model, variant, version, sha256).set(0)  # what other workers read until they swap
        if not multiprocess_dir():
            self.info.remove(*self._cv, model, variant, version, sha256)

    def declare_model(self, model: str) -> None:
        """Series that exist from the start at 0, so that rate() and alerts see them before the first event."""
        self.inflight_gauge(model).set(0)
        self.queue_gauge(model).set(0)

    def declare_variant(self, model: str, variant: str) -> None:
        for result in ("success", "failure"):
            self.reloads.labels(*self._cv, model, variant, result)
        self.reload_failing.labels(*self._cv, model, variant).set(0)

    def split(self, model: str, split: Any, previous: Any = None) -> None:
        """The shares and revision of ``split`` (a :class:`~mlserve.serve.repository.Split`) replace ``previous``'s."""
        if previous is not None:
            for name in previous.router.names:
                try:
                    self.share.remove(*self._cv, model, previous.experiment, name)
                except KeyError:
                    pass
        for name, share in zip(split.router.names, split.router.shares()):
            self.declare_variant(model, name)
            self.share.labels(*self._cv, model, split.experiment, name).set(share)
        self.revision.labels(*self._cv, model).set(split.revision)

    def reload(self, model: str, variant: str, ok: bool) -> None:
        self.reloads.labels(*self._cv, model, variant, "success" if ok else "failure").inc()
        self.reload_failing.labels(*self._cv, model, variant).set(0 if ok else 1)

    def set_ready(self, ready: bool) -> None:
        (self.ready.labels(*self._cv) if self._cv else self.ready).set(1 if ready else 0)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if multiprocess_dir():  # --workers > 1: every worker's values, added up as each metric says
            from prometheus_client.multiprocess import MultiProcessCollector

            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def set_failing(self, model: str, variant: str, failing: bool) -> None:
        self.reload_failing.labels(*self._cv, model, variant).set(1 if failing else 0)

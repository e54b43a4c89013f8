"""Turning the command line into :class:`ServeOptions` (flag > env > config file > default)."""

from __future__ import annotations

import sys
from typing import Any

from mlserve import config
from mlserve.serve.batching import BatchingOptions
from mlserve.serve.metrics import parse_metrics_labels
from mlserve.serve.options import ServeOptions


def build_options(p: dict[str, Any]) -> ServeOptions:
    r = config.resolve

    workers = r("serve.workers", p["workers"])
    batching = BatchingOptions(
        max_batch_size=r("serve.max_batch_size", p["max_batch_size"]),
        max_queue_delay=r("serve.max_queue_delay", p["max_queue_delay"]) / 1000.0,
        max_queue=r("serve.max_queue", p["max_queue"]),
        instances=r("serve.instances", p["instances"]),
        request_timeout=r("serve.request_timeout", p["request_timeout"]),
    )
    options = ServeOptions(
        refs=tuple(p["refs"]),
        registry=config.resolve("registry", p["registry"]),
        host=r("serve.host", p["host"]),
        http_port=r("serve.http_port", p["http_port"]),
        grpc_port=r("serve.grpc_port", p["grpc_port"]),
        workers=workers,
        threads=r("serve.threads", p["threads"]),
        device=r("serve.device", p["device"]),
        batching=batching,
        max_request_bytes=r("serve.max_request_bytes", p["max_request_bytes"]),
        drain_delay=r("serve.drain_delay", p["drain_delay"]),
        drain_timeout=r("serve.drain_timeout", p["drain_timeout"]),
        poll_interval=r("serve.poll_interval", p["poll_interval"]),
        metrics_labels=parse_metrics_labels(list(p["metrics_label"] or [])),
        access_log=bool(r("serve.access_log", p["access_log"])),
        allow_non_finite=bool(p["allow_non_finite"]),
    )
    options.check()
    from mlserve.serve.sources import parse_model_ref

    for ref in options.refs:
        parse_model_ref(ref)
    return options


def serve_logger() -> Any:
    from mlserve.serve.state import JsonLog

    return JsonLog(sys.stderr)


def print_listening(http_url: str, grpc_url: str | None) -> None:
    print(f"serving REST (Open Inference Protocol v2, /predict, /metrics) on {http_url}", file=sys.stderr)
    if grpc_url:
        print(f"serving gRPC (inference.GRPCInferenceService) on {grpc_url}", file=sys.stderr, flush=True)
    sys.stderr.flush()

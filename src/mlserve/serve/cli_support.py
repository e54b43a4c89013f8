"""Turning the command line into :class:`ServeOptions` (flag > env > config file > default)."""

from __future__ import annotations

import sys
from typing import Any

from mlserve import config
from mlserve.errors import UsageError
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
        refs=tuple(p["refs"] or ()),
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
        canary=p["canary"],
        canary_weight=_canary_weight(p["canary"], p["canary_weight"]),
        split_files=tuple(p["split"] or ()),
        sticky_header=r("serve.sticky_header", p["sticky_header"]),
        sticky_parameter=r("serve.sticky_parameter", p["sticky_parameter"]),
        experiment=p["experiment"],
        assignment_log=r("serve.assignment_log", p["assignment_log"]),
        admin_token=p["admin_token"] or None,
        admin_host=r("serve.admin_host", p["admin_host"]),
        admin_port=r("serve.admin_port", p["admin_port"]),
    )
    options.check()
    from mlserve.serve.split_files import build_splits

    build_splits(options)  # every REF parsed, every split file read: a typo fails before anything loads
    return options


def serve_logger() -> Any:
    from mlserve.serve.state import JsonLog

    return JsonLog(sys.stderr)


def print_listening(http_url: str, grpc_url: str | None, admin_url: str | None = None) -> None:
    print(f"serving REST (Open Inference Protocol v2, /predict, /metrics) on {http_url}", file=sys.stderr)
    if grpc_url:
        print(f"serving gRPC (inference.GRPCInferenceService) on {grpc_url}", file=sys.stderr, flush=True)
    if admin_url:
        print(f"admin endpoint (/v2/mlserve/split, bearer token) on {admin_url}", file=sys.stderr, flush=True)
    sys.stderr.flush()


def _canary_weight(canary: str | None, weight: float | None) -> float:
    """--canary-weight only means something with --canary: alone it would be silently ignored."""
    if weight is not None and canary is None:
        raise UsageError("--canary-weight needs --canary REF (the version that gets that share)")
    return 10.0 if weight is None else weight

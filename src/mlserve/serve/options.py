"""The server's settings, checked before anything is loaded or bound (a bad value is a usage error)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mlserve.errors import UsageError
from mlserve.serve.batching import BatchingOptions


@dataclass(frozen=True)
class ServeOptions:
    refs: tuple[str, ...]
    registry: Path | None = None
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001  # 0: no gRPC
    workers: int = 1
    threads: int = 1  # ONNX Runtime intra-op threads per session
    device: str = "cpu"
    batching: BatchingOptions = field(default_factory=BatchingOptions)
    max_request_bytes: int = 64 * 1024 * 1024
    drain_delay: float = 5.0
    drain_timeout: float = 30.0
    poll_interval: float = 1.0
    metrics_labels: dict[str, str] = field(default_factory=dict)
    access_log: bool = False
    allow_non_finite: bool = False
    reuse_port: bool = False  # set for the worker processes of --workers > 1 (they share the ports)

    def check(self) -> "ServeOptions":
        if not self.refs:
            raise UsageError("give at least one model: NAME@STAGE, NAME:VERSION or a path to an .onnx file")
        for name, port in (("--http-port", self.http_port), ("--grpc-port", self.grpc_port)):
            if not 0 <= port <= 65535:
                raise UsageError(f"{name} {port}: not a TCP port (0-65535)")
        if self.http_port == 0:
            raise UsageError("--http-port 0: the REST endpoint cannot be disabled (probes and metrics live there)")
        if self.grpc_port and self.grpc_port == self.http_port:
            raise UsageError(f"--grpc-port {self.grpc_port} is the same as --http-port")
        positive = {"--workers": self.workers, "--max-batch-size": self.batching.max_batch_size,
                    "--max-queue": self.batching.max_queue, "--instances": self.batching.instances,
                    "--max-request-bytes": self.max_request_bytes}
        for name, value in positive.items():
            if value < 1:
                raise UsageError(f"{name} {value}: must be at least 1")
        non_negative = {"--threads": self.threads, "--max-queue-delay": self.batching.max_queue_delay,
                        "--request-timeout": self.batching.request_timeout, "--drain-delay": self.drain_delay,
                        "--drain-timeout": self.drain_timeout}
        for name, value in non_negative.items():
            if value < 0:
                raise UsageError(f"{name} {value}: must not be negative")
        if self.poll_interval <= 0:
            raise UsageError(f"--poll-interval {self.poll_interval}: must be above 0")
        from mlserve.serve.runtime import DEVICE_CHOICES

        if self.device not in DEVICE_CHOICES:
            raise UsageError(f"--device {self.device!r}: choose one of {', '.join(DEVICE_CHOICES)}")
        return self

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
    # traffic splitting (docs/serve.md, "Traffic splitting")
    canary: str | None = None  # --canary REF: a second variant of the one model
    canary_weight: float = 10.0  # percent of requests for the canary
    split_files: tuple[str, ...] = ()  # --split FILE: one model's variants and weights each
    sticky_header: str | None = None
    sticky_parameter: str | None = None
    experiment: str | None = None  # names the experiment in the assignment log and salts the hash
    assignment_log: Path | None = None
    admin_token: str | None = field(default=None, repr=False)  # never in a repr, a log or a worker's stdin
    admin_host: str = "127.0.0.1"
    admin_port: int = 8002

    def check(self) -> "ServeOptions":
        if not self.refs and not self.split_files:
            raise UsageError("give at least one model: NAME@STAGE, NAME:VERSION or a path to an .onnx file "
                             "(or --split FILE)")
        for name, port in (("--http-port", self.http_port), ("--grpc-port", self.grpc_port),
                           ("--admin-port", self.admin_port)):
            if not 0 <= port <= 65535:
                raise UsageError(f"{name} {port}: not a TCP port (0-65535)")
        self._check_split()
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

    def _check_split(self) -> None:
        if self.canary is not None:
            if len(self.refs) != 1:
                raise UsageError(f"--canary goes with exactly one REF (given {len(self.refs)}); "
                                 "for several models write a --split file for each")
            if self.split_files:
                raise UsageError("--canary and --split do not go together: put the canary in the split file")
            if not 0 <= self.canary_weight <= 100:
                raise UsageError(f"--canary-weight {self.canary_weight:g}: a percentage, 0 to 100")
        if self.experiment is not None:
            if len(self.refs) + len(self.split_files) != 1:
                raise UsageError("--experiment goes with one served model; with several, name each experiment "
                                 "in its --split file")
            if not self.experiment or "\n" in self.experiment or len(self.experiment) > 256:
                raise UsageError("--experiment must be a non-empty name on one line (at most 256 characters)")
        if self.admin_token is not None:
            token = self.admin_token
            if len(token) < 16 or any(c.isspace() for c in token) or not token.isprintable():
                raise UsageError("the admin token must be at least 16 printable characters without spaces",
                                 hint="e.g. MLSERVE_ADMIN_TOKEN=$(openssl rand -hex 24)")
            if self.workers > 1:
                raise UsageError("the admin endpoint needs one server process: --workers 1 with --admin-token",
                                 hint="run more replicas instead, each with its own admin endpoint")
            if self.admin_port == 0:
                raise UsageError("--admin-port 0: give the admin endpoint a port")
            if self.admin_port in (self.http_port, self.grpc_port):
                raise UsageError(f"--admin-port {self.admin_port} is already the REST or gRPC port")

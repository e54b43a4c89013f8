"""``mlserve serve``: serve registry versions or ONNX files over the Open Inference Protocol (REST + gRPC)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from mlserve import config
from mlserve.cli._options import JsonOpt, RegistryOpt
from mlserve.cli._output import emit


def _opt(flag: str, key: str, help_text: str, **kw: Any) -> Any:
    return typer.Option(flag, envvar=config.env_var(key), show_envvar=True, help=help_text, **kw)


HostOpt = Annotated[Optional[str], _opt("--host", "serve.host", "Address to listen on (default 127.0.0.1; 0.0.0.0 in a container).")]
HttpPortOpt = Annotated[Optional[int], _opt("--http-port", "serve.http_port", "REST port: OIP v2, /predict, probes, /metrics (default 8000).")]
GrpcPortOpt = Annotated[Optional[int], _opt("--grpc-port", "serve.grpc_port", "gRPC port, inference.GRPCInferenceService (default 8001; 0 disables gRPC).")]
WorkersOpt = Annotated[Optional[int], _opt("--workers", "serve.workers", "Server processes sharing the ports, each with its own sessions (default 1).")]
ThreadsOpt = Annotated[Optional[int], _opt("--threads", "serve.threads", "ONNX Runtime intra-op threads per session (default 1; 0: ONNX Runtime's choice).")]
InstancesOpt = Annotated[Optional[int], _opt("--instances", "serve.instances", "Executor threads per model, i.e. runs at once (default 1).")]
DeviceOpt = Annotated[Optional[str], _opt("--device", "serve.device", "Execution provider: cpu, cuda, tensorrt, or auto (CUDA where present) (default cpu).")]
BatchOpt = Annotated[Optional[int], _opt("--max-batch-size", "serve.max_batch_size", "Most rows in one dynamic batch (default 32; 1 turns batching off).")]
DelayOpt = Annotated[Optional[float], _opt("--max-queue-delay", "serve.max_queue_delay", "Milliseconds a free executor waits for a fuller batch (default 0: never waits).")]
QueueOpt = Annotated[Optional[int], _opt("--max-queue", "serve.max_queue", "Requests queued per model before new ones get 503 + Retry-After (default 1024).")]
TimeoutOpt = Annotated[Optional[float], _opt("--request-timeout", "serve.request_timeout", "Seconds from arrival to answer before 504 (default 60; 0: no limit).")]
BytesOpt = Annotated[Optional[int], _opt("--max-request-bytes", "serve.max_request_bytes", "Largest request body or gRPC message; bigger gets 413 (default 64 MiB).")]
DrainDelayOpt = Annotated[Optional[float], _opt("--drain-delay", "serve.drain_delay", "Seconds after SIGTERM of serving while readiness says 503 (default 5).")]
DrainTimeoutOpt = Annotated[Optional[float], _opt("--drain-timeout", "serve.drain_timeout", "Seconds for in-flight requests to finish once listeners close (default 30).")]
PollOpt = Annotated[Optional[float], _opt("--poll-interval", "serve.poll_interval", "Seconds between reads of a followed stage (default 1).")]
AccessLogOpt = Annotated[Optional[bool], _opt("--access-log/--no-access-log", "serve.access_log", "Log one JSON line per request on stderr.")]
LabelOpt = Annotated[Optional[list[str]], typer.Option(
    "--metrics-label", envvar="MLSERVE_SERVE_METRICS_LABELS", show_envvar=True,
    help="Constant label on every metric, KEY=VALUE, repeatable (e.g. namespace=ml deployment=iris; the env var "
         "takes them space-separated).")]
NonFiniteOpt = Annotated[bool, typer.Option("--allow-non-finite", help="Pass NaN and infinite inputs to the model instead of answering 400.")]
CanaryOpt = Annotated[Optional[str], typer.Option("--canary", metavar="REF", help="A second version of the model served under its name: NAME@STAGE (follows the stage), NAME:VERSION or an .onnx file.")]
CanaryWeightOpt = Annotated[Optional[float], typer.Option("--canary-weight", metavar="PERCENT", help="Percent of requests for --canary (0-100, default 10; the REF gets the rest).")]
SplitOpt = Annotated[Optional[list[str]], typer.Option("--split", metavar="FILE", help="A split file (JSON, or TOML for .toml): one model's variants and weights, format in docs/serve.md. Repeatable.")]
StickyHeaderOpt = Annotated[Optional[str], _opt("--sticky-header", "serve.sticky_header", "Assign requests by the key in this header (also gRPC metadata), e.g. X-User-Id: the same key, the same variant.", metavar="NAME")]
StickyParamOpt = Annotated[Optional[str], _opt("--sticky-parameter", "serve.sticky_parameter", "Assign requests by the key in this OIP request parameter (parameters.NAME), when the header is absent.", metavar="NAME")]
ExperimentOpt = Annotated[Optional[str], typer.Option("--experiment", metavar="NAME", help="Experiment name: salts the sticky hash and names the assignment log's records (default: the model's name).")]
AssignLogOpt = Annotated[Optional[Path], _opt("--assignment-log", "serve.assignment_log", "Append each sticky key's variant to FILE (JSON lines, read by 'mlserve ab analyze').", metavar="FILE")]
AdminTokenOpt = Annotated[Optional[str], typer.Option("--admin-token", envvar="MLSERVE_ADMIN_TOKEN", show_envvar=True, metavar="TOKEN", help="Enable the admin endpoint (/v2/mlserve/split) with this bearer token, 16+ characters; prefer the env var (a flag shows in ps).")]
AdminHostOpt = Annotated[Optional[str], _opt("--admin-host", "serve.admin_host", "Address of the admin endpoint (default 127.0.0.1: loopback only).", metavar="HOST")]
AdminPortOpt = Annotated[Optional[int], _opt("--admin-port", "serve.admin_port", "Port of the admin endpoint (default 8002).", metavar="PORT")]


def serve(
    refs: Annotated[Optional[list[str]], typer.Argument(help="NAME@STAGE (follows the stage), NAME:VERSION (pinned) or a path to an .onnx file.", show_default=False)] = None,
    registry: RegistryOpt = None, host: HostOpt = None, http_port: HttpPortOpt = None, grpc_port: GrpcPortOpt = None,
    workers: WorkersOpt = None, threads: ThreadsOpt = None, instances: InstancesOpt = None, device: DeviceOpt = None,
    max_batch_size: BatchOpt = None, max_queue_delay: DelayOpt = None, max_queue: QueueOpt = None,
    request_timeout: TimeoutOpt = None, max_request_bytes: BytesOpt = None, drain_delay: DrainDelayOpt = None,
    drain_timeout: DrainTimeoutOpt = None, poll_interval: PollOpt = None, metrics_label: LabelOpt = None,
    access_log: AccessLogOpt = None, allow_non_finite: NonFiniteOpt = False,
    canary: CanaryOpt = None, canary_weight: CanaryWeightOpt = None, split: SplitOpt = None,
    sticky_header: StickyHeaderOpt = None, sticky_parameter: StickyParamOpt = None, experiment: ExperimentOpt = None,
    assignment_log: AssignLogOpt = None, admin_token: AdminTokenOpt = None, admin_host: AdminHostOpt = None,
    admin_port: AdminPortOpt = None, as_json: JsonOpt = False,
) -> None:
    """Serve ONNX models over the Open Inference Protocol v2 (REST and gRPC) until SIGTERM, then drain.

    Ready only once every model is loaded, checked against the registry and warmed up. A model given as
    NAME@STAGE switches to the version the stage names after 'mlserve promote' or 'rollback', with no
    failed request. Metrics for 'mlserve rollout' are at /metrics. The listening URLs go to stderr.

    Several versions of a model can serve at once with weights (--canary, --split FILE), assigned per
    request or by a sticky key; with an admin token, /v2/mlserve/split on the admin port reads and
    changes the weights at run time.

    \b
    Examples:
      mlserve serve churn@production --metrics-label deployment=churn --access-log
      mlserve serve churn@production --canary churn@staging --canary-weight 10 --sticky-header X-User-Id
      MLSERVE_ADMIN_TOKEN=$(openssl rand -hex 24) mlserve serve --split churn-ab.json --assignment-log ab.jsonl
    """
    from mlserve.serve.cli_support import build_options, print_listening, serve_logger

    options = build_options(locals())  # every check before the serving libraries load
    from mlserve.serve.server import run_server

    result = run_server(options, log=serve_logger(), on_listening=print_listening)
    emit("serve", result, as_json, _render)


def _render(out: Console, r: Any) -> None:
    for m in r.models:
        out.print(f"{m.name}\t{m.variant}\t{m.version}\t{m.follows or '-'}\tweight {m.weight:g}\tswaps {m.swaps}",
                  markup=False, highlight=False)
    print(f"stopped by {r.stopped_by or 'request'} after draining {r.drained_seconds:.1f} s", file=sys.stderr)


def install(app: typer.Typer) -> None:
    """Add the serve command to the root app."""
    app.command("serve")(serve)

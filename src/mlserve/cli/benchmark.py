"""``mlserve benchmark``: latency and throughput of models across backends, batch sizes and concurrency."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mlserve import exitcodes
from mlserve.cli._options import JsonOpt, LockTimeoutOpt, RegistryOpt
from mlserve.cli._output import emit, progress_for

HELP = """Measure latency and throughput like trtexec/perf_analyzer: warm-up, then at least --iterations
calls and --duration seconds per run, split into windows that must agree for the run to count as stable.

MODEL is an ONNX file, a TorchScript (.pt) or torch.export (.pt2) file, a TensorRT engine (.engine, .plan;
tensorrt backend), or a registry reference
(NAME:VERSION, NAME@STAGE). Every backend gets the same seeded inputs. With two or more runs, each is
compared with the first of the same batch size and concurrency (ratio of medians, bootstrap CI).

\b
Examples:
  mlserve benchmark model.onnx --batch-size 1,8,64 --concurrency 1,4
  mlserve benchmark model.onnx model.int8.onnx --fail-if-slower-than churn@production:10 --json
"""


WIDE = 200
"""Width of the table when stdout is not a terminal (CI logs, pipes, files): rich would otherwise assume 80
columns and cut numbers short; nothing wraps lines there, so a wide table stays readable."""


def _ms(value: float) -> str:
    """Milliseconds with 4 significant digits, never in exponent notation."""
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}" if value >= 1e-4 else f"{value:.6f}"


def _render(out: Console, r: Any) -> None:
    if not out.is_terminal:
        out.width = max(out.width, WIDE)
    latency = Table(title=f"benchmark on {r.fingerprint.summary()}", title_justify="left")
    latency.add_column("run", no_wrap=True)
    for name in ("min", "mean", "p50", "p90", "p95", "p99", "p99.9", "max", "std"):
        latency.add_column(f"{name} ms", justify="right", no_wrap=True)
    latency.add_column("cv", justify="right", no_wrap=True)
    for row in r.results:
        s = row.stats
        figures = (s.min_ms, s.mean_ms, s.median_ms, s.p90_ms, s.p95_ms, s.p99_ms, s.p999_ms, s.max_ms, s.std_ms)
        latency.add_row(Text(row.label), *(_ms(v) for v in figures), f"{s.cv:.1%}")
    out.print(latency)
    speed = Table(title="throughput and comparison", title_justify="left")
    speed.add_column("run", no_wrap=True)
    speed.add_column("req/s", justify="right", no_wrap=True)
    speed.add_column("items/s", justify="right", no_wrap=True)
    speed.add_column("stable", no_wrap=True)
    speed.add_column("vs first [CI]", no_wrap=True)
    for row in r.results:
        vs = f"{row.vs_first.ratio:.3f}x [{row.vs_first.ci_low:.3f}, {row.vs_first.ci_high:.3f}]" if row.vs_first else "-"
        speed.add_row(Text(row.label), f"{row.stats.throughput_per_s:,.1f}", f"{row.items_per_s:,.1f}",
                      "yes" if row.stable else "NO", Text(vs))
    out.print(speed)
    shapes = ", ".join(f"{name} {spec['dtype']}[{'x'.join(map(str, spec['shape']))}]" for name, spec in r.inputs.items())
    out.print(f"inputs: {shapes}; seed {r.seed}; threads {r.results[0].threads or 'runtime default'}", markup=False)
    if r.gate is not None:
        verdict = "passed" if r.gate.passed else "FAILED"
        out.print(f"gate --fail-if-slower-than {r.gate.reference}:{r.gate.max_slowdown_pct:g}: {verdict}", markup=False)
        for c in r.gate.checks:
            against = "stored figure" if c.source == "stored-metrics" else "measured now"
            out.print(f"  {c.candidate}: {c.ratio:.3f}x of {c.reference} [{against}] (limit {c.limit:.3f}x)"
                      f" {'ok' if c.passed else 'TOO SLOW'}", markup=False)
        for label in r.gate.uncovered:
            out.print(f"  {label}: NO REFERENCE FIGURE (not gated)", markup=False)
    for key, value in (("recorded on", r.recorded), ("csv", r.csv_path), ("plot", r.plot_path)):
        if value:
            out.print(f"{key}: {value}", markup=False)


def _finish(report: Any, as_json: bool) -> None:
    """After the report is out: a failed gate is exit 6 (under --json the document already says why)."""
    if not report.failures:
        return
    if as_json:
        print(f"error: {report.failure_message()}", file=sys.stderr)
        raise typer.Exit(exitcodes.GATE_FAILED)
    report.raise_for_failures()


def benchmark(
    models: Annotated[list[str], typer.Argument(metavar="MODEL", help="ONNX/TorchScript/.pt2/TensorRT .engine files or registry references (NAME:VERSION, NAME@STAGE).", show_default=False)],
    backend: Annotated[Optional[str], typer.Option("--backend", "-b", help="Comma-separated: ort-cpu, ort-cuda, ort-trt, tensorrt, torch, torch-compile (default: ort-cpu for ONNX, torch for torch files).")] = None,
    batch_size: Annotated[Optional[str], typer.Option("--batch-size", help="Comma-separated batch sizes, e.g. 1,8,64 (default: the model's fixed batch, else 1).")] = None,
    concurrency: Annotated[str, typer.Option("--concurrency", help="Comma-separated numbers of threads calling the model at once, e.g. 1,4.")] = "1",
    warmup: Annotated[float, typer.Option("--warmup", min=0, help="Seconds of untimed warm-up calls before each run.")] = 0.2,
    iterations: Annotated[int, typer.Option("--iterations", min=1, help="Each run makes at least this many timed calls ...")] = 10,
    duration: Annotated[float, typer.Option("--duration", min=0, help="... and lasts at least this many seconds.")] = 3.0,
    max_duration: Annotated[Optional[float], typer.Option("--max-duration", min=0.001, help="Stop a run after this many seconds even if it is still unstable.")] = None,
    windows: Annotated[int, typer.Option("--windows", min=1, help="A run is stable when its last N windows agree.")] = 3,
    tolerance: Annotated[float, typer.Option("--stability-tolerance", min=0.001, help="Windows agree when median latency and throughput are within this fraction of their mean.")] = 0.10,
    retries: Annotated[int, typer.Option("--stability-retries", min=0, help="Extra windows to measure while a run is unstable.")] = 3,
    max_cv: Annotated[Optional[float], typer.Option("--max-cv", min=0.0001, help="Also call a run unstable when its coefficient of variation exceeds this (trtexec warns above 0.01).")] = None,
    fail_unstable: Annotated[bool, typer.Option("--fail-unstable", help="Exit with code 6 when any run is unstable.")] = False,
    fail_if_slower_than: Annotated[Optional[str], typer.Option("--fail-if-slower-than", metavar="REF:PCT", help="Exit with code 6 when a run's median is more than PCT% slower than REF. Every run is gated: against REF's stored figure for the same setup (registry references: latency_p50_ms for batch 1, BACKEND.bN.cN.latency_p50_ms), else against REF's artifact, measured now.")] = None,
    inputs: Annotated[Optional[list[str]], typer.Option("--input", metavar="NAME:DIMS[:DTYPE]", help="Input shape and dtype, e.g. input:Nx3x224x224:float32 (N: the batch size of each run; needed for dynamic non-batch dims and torch files). Repeatable.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="Intra-op threads per session (default: the runtime's choice).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the generated inputs and of the bootstrap.")] = 0,
    confidence: Annotated[float, typer.Option("--confidence", min=0.5, max=0.999, help="Confidence level of the ratio intervals.")] = 0.95,
    csv: Annotated[Optional[Path], typer.Option("--csv", help="Also write one CSV line per run to this file.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also draw the latency distributions to this PNG (needs mlserve[plot]).")] = None,
    record: Annotated[Optional[str], typer.Option("--record", metavar="NAME:VERSION", help="Record the first model's figures as metrics (latency_p50_ms ...) on this registry version (only when no gate failed).")] = None,
    registry: RegistryOpt = None,
    lock_timeout: LockTimeoutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    from mlserve.benchmark.harness import MeasureConfig
    from mlserve.benchmark.run import BenchmarkRequest, parse_int_list, run_benchmark

    request = BenchmarkRequest(
        models=models, backends=[b.strip() for b in backend.split(",") if b.strip()] if backend else None,
        batch_sizes=parse_int_list(batch_size, "--batch-size") if batch_size else None,
        concurrency=parse_int_list(concurrency, "--concurrency"),
        measure=MeasureConfig(warmup_s=warmup, min_iterations=iterations, min_seconds=duration, max_seconds=max_duration,
                              windows=windows, window_tolerance=tolerance, max_extra_windows=retries, max_cv=max_cv),
        inputs=inputs or [], seed=seed, threads=threads, fail_if_slower_than=fail_if_slower_than, fail_unstable=fail_unstable,
        confidence=confidence, csv_path=csv, plot_path=plot, record=record, registry=registry, lock_timeout=lock_timeout,
    )
    report = run_benchmark(request, progress=progress_for(as_json))
    emit("benchmark", report, as_json, _render)
    _finish(report, as_json)


def install(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("benchmark", help=HELP, no_args_is_help=True)(benchmark)

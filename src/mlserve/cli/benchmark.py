"""``mlserve benchmark``: latency and throughput of models across backends, batch sizes and concurrency."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from mlserve import exitcodes
from mlserve.cli._options import (
    DURATION_DEFAULT,
    ITERATIONS_DEFAULT,
    ROUNDS_DEFAULT,
    WARMUP_DEFAULT,
    DurationOpt,
    InputOpt,
    IterationsOpt,
    JsonOpt,
    LockTimeoutOpt,
    RegistryOpt,
    RoundsOpt,
    ThreadsOpt,
    WarmupOpt,
    parse_threads,
)
from mlserve.cli._output import emit, progress_for

HELP = """Measure latency and throughput like trtexec/perf_analyzer: warm-up, then at least --iterations
calls and --duration seconds per run, split into windows that must agree for the run to count as stable.
Runs that are compared (same batch size and threads, one stream) are timed in interleaved rounds.

MODEL is an ONNX file, a TorchScript (.pt) or torch.export (.pt2) file, a TensorRT engine (.engine, .plan;
tensorrt backend), or a registry reference
(NAME:VERSION, NAME@STAGE). Every backend gets the same seeded inputs and the same --threads. With two or
more runs, each is compared with the first of the same batch size, concurrency and threads (median of the
per-round latency ratios, bootstrap CI over rounds).

\b
Examples:
  mlserve benchmark model.onnx --batch-size 1,8,64 --concurrency 1,4
  mlserve benchmark model.onnx model.int8.onnx --threads 1,2 --samples-csv samples.csv
  mlserve benchmark model.onnx model.int8.onnx --fail-if-slower-than churn@production:10 --json
  mlserve benchmark vad.onnx --input 'sr=16000' --input 'state:2x1x128'

"""


def _ms(value: float) -> str:
    """Milliseconds with 4 significant digits, never in exponent notation."""
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}" if value >= 1e-4 else f"{value:.6f}"


def _render(out: Console, r: Any) -> None:
    from mlserve.cli._output import print_table

    header = ["run", "min ms", "mean ms", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "p99.9 ms", "max ms", "std ms", "cv"]
    rows = []
    for row in r.results:
        s = row.stats
        figures = (s.min_ms, s.mean_ms, s.median_ms, s.p90_ms, s.p95_ms, s.p99_ms, s.p999_ms, s.max_ms, s.std_ms)
        rows.append([row.label, *(_ms(v) for v in figures), f"{s.cv:.1%}"])
    print_table(out, header, rows, title=f"benchmark on {r.fingerprint.summary()}", right=set(header[1:]))
    rows = []
    for row in r.results:
        vs = f"{row.vs_first.ratio:.3f}x [{row.vs_first.ci_low:.3f}, {row.vs_first.ci_high:.3f}]" if row.vs_first else "-"
        rounds = f"{len(row.rounds_ms)} rounds" if row.rounds_ms else "alone"
        rows.append([row.label, f"{row.stats.throughput_per_s:,.1f}", f"{row.items_per_s:,.1f}", "yes" if row.stable else "NO", vs, rounds])
    print_table(out, ["run", "req/s", "items/s", "stable", "vs first [CI]", "measured"], rows, title="throughput and comparison",
                right={"req/s", "items/s"})
    shapes = ", ".join(f"{name} {spec['dtype']}[{'x'.join(map(str, spec['shape']))}]" for name, spec in r.inputs.items())
    threads = ",".join(dict.fromkeys(str(row.threads) for row in r.results if row.threads)) or "runtime default"
    out.print(f"inputs: {shapes}; seed {r.seed}; threads {threads}", markup=False)
    if r.gate is not None:
        verdict = "passed" if r.gate.passed else "FAILED"
        out.print(f"gate --fail-if-slower-than {r.gate.reference}:{r.gate.max_slowdown_pct:g}: {verdict}", markup=False)
        for c in r.gate.checks:
            against = "stored figure" if c.source == "stored-metrics" else "measured now"
            out.print(f"  {c.candidate}: {c.ratio:.3f}x of {c.reference} [{against}] (limit {c.limit:.3f}x)"
                      f" {'ok' if c.passed else 'TOO SLOW'}", markup=False)
        for label in r.gate.uncovered:
            out.print(f"  {label}: NO REFERENCE FIGURE (not gated)", markup=False)
    for key, value in (("recorded on", r.recorded), ("csv", r.csv_path), ("samples csv", r.samples_csv_path), ("plot", r.plot_path)):
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
    warmup: WarmupOpt = WARMUP_DEFAULT,
    iterations: IterationsOpt = ITERATIONS_DEFAULT,
    duration: DurationOpt = DURATION_DEFAULT,
    rounds: RoundsOpt = ROUNDS_DEFAULT,
    max_duration: Annotated[Optional[float], typer.Option("--max-duration", min=0.001, help="Stop a run after this many seconds even if it is still unstable.")] = None,
    windows: Annotated[int, typer.Option("--windows", min=1, help="A run is stable when its last N windows agree.")] = 3,
    tolerance: Annotated[float, typer.Option("--stability-tolerance", min=0.001, help="Windows agree when median latency and throughput are within this fraction of their mean.")] = 0.10,
    retries: Annotated[int, typer.Option("--stability-retries", min=0, help="Extra windows to measure while a run is unstable.")] = 3,
    max_cv: Annotated[Optional[float], typer.Option("--max-cv", min=0.0001, help="Also call a run unstable when its coefficient of variation exceeds this (trtexec warns above 0.01).")] = None,
    fail_unstable: Annotated[bool, typer.Option("--fail-unstable", help="Exit with code 6 when any run is unstable.")] = False,
    fail_if_slower_than: Annotated[Optional[str], typer.Option("--fail-if-slower-than", metavar="REF:PCT", help="Exit with code 6 when a run's median is more than PCT% slower than REF. Every run is gated: against REF's stored figure for the same setup (registry references: latency_p50_ms for batch 1, BACKEND.bN.cN.latency_p50_ms), else against REF's artifact, measured now.")] = None,
    inputs: InputOpt = None,
    threads: ThreadsOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the generated inputs and of the bootstrap.")] = 0,
    confidence: Annotated[float, typer.Option("--confidence", min=0.5, max=0.999, help="Confidence level of the ratio intervals.")] = 0.95,
    csv: Annotated[Optional[Path], typer.Option("--csv", help="Also write one CSV line per run to this file.")] = None,
    samples_csv: Annotated[Optional[Path], typer.Option("--samples-csv", metavar="FILE", help="Also write every latency sample (one CSV line each) to this file, to audit or recompute the percentiles.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also draw the latency distributions to this PNG (needs mlserve[plot]).")] = None,
    record: Annotated[Optional[str], typer.Option("--record", metavar="NAME:VERSION", help="Record the first model's figures as metrics (latency_p50_ms ...) on this registry version (only when no gate failed).")] = None,
    registry: RegistryOpt = None,
    lock_timeout: LockTimeoutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    from mlserve.benchmark.harness import MeasureConfig
    from mlserve.benchmark.run import BenchmarkRequest, parse_gate, parse_int_list, run_benchmark
    from mlserve.inputs import parse_inputs

    parse_inputs(inputs, static_batch=True)  # a typo is exit 2 before any model is read
    thread_counts = parse_threads(threads)
    if fail_if_slower_than:
        parse_gate(fail_if_slower_than)
    request = BenchmarkRequest(
        models=models, backends=[b.strip() for b in backend.split(",") if b.strip()] if backend else None,
        batch_sizes=parse_int_list(batch_size, "--batch-size") if batch_size else None,
        concurrency=parse_int_list(concurrency, "--concurrency"),
        measure=MeasureConfig(warmup_s=warmup, min_iterations=iterations, min_seconds=duration, max_seconds=max_duration,
                              windows=windows, window_tolerance=tolerance, max_extra_windows=retries, max_cv=max_cv, rounds=rounds),
        inputs=inputs or [], seed=seed, threads=thread_counts, fail_if_slower_than=fail_if_slower_than, fail_unstable=fail_unstable,
        confidence=confidence, csv_path=csv, samples_csv_path=samples_csv, plot_path=plot, record=record, registry=registry,
        lock_timeout=lock_timeout,
    )
    report = run_benchmark(request, progress=progress_for(as_json))
    emit("benchmark", report, as_json, _render)
    _finish(report, as_json)


def install(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("benchmark", help=HELP, no_args_is_help=True)(benchmark)

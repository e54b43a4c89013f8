"""CLI for `mlserve optimize`: export, build variants, check parity, choose with --auto."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from mlserve.cli._options import JsonOpt, LockTimeoutOpt, RegistryOpt

HELP = """Turn a model into a faster ONNX (or TensorRT) artifact that provably computes the same function.

SOURCE is a model file (.onnx, .pt2 from torch.export, TorchScript .pt/.ts, scikit-learn .joblib/.pkl),
a factory 'package.module:function' returning (module, example_inputs), or a registry reference
(NAME:VERSION, NAME@STAGE).

Every candidate is compared with the source model itself on seeded random inputs (and --data);
one outside tolerance fails with exit code 6.

Examples:

  mlserve optimize model.pt2 --auto --output fast.onnx --report report.json

  mlserve optimize mypkg.models:build --variant int8-static --calibration-data samples.npz --output q.onnx

  mlserve optimize churn@production --auto --register churn
"""


def optimize_command(
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="Model file, package.module:function factory, or registry reference.", show_default=False)],
    auto: Annotated[bool, typer.Option("--auto", help="Build the candidates that fit this hardware, check and measure each, choose the fastest that passes parity.")] = False,
    variant: Annotated[Optional[list[str]], typer.Option("--variant", "-v", metavar="NAME", help="Variant to build (repeatable or comma-separated): fp32, fp16, int8-dynamic, int8-static, trt-fp32, trt-fp16, trt-int8.")] = None,
    candidate: Annotated[Optional[list[Path]], typer.Option("--candidate", metavar="FILE", help="An ONNX file built elsewhere to check against the source like a variant (repeatable).")] = None,
    input_: Annotated[Optional[list[str]], typer.Option("--input", "-i", metavar="NAME:DIMS:DTYPE", help="Input NAME:DIMS:DTYPE, e.g. x:1x3x224x224:float32 (repeatable); needed where the model does not declare shapes.")] = None,
    static_batch: Annotated[bool, typer.Option("--static-batch", help="Pin the batch dimension to the size given in --input instead of keeping it dynamic.")] = False,
    tolerance: Annotated[Optional[list[str]], typer.Option("--tolerance", "-t", metavar="OUT:ATOL:RTOL[:MIN_COSINE[:MIN_TOP1]]", help="Parity tolerance per output ('*' for all): an element fails only outside both ATOL and RTOL; MIN_COSINE and MIN_TOP1 override the lowest accepted cosine similarity and top-1/label agreement (repeatable).")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", metavar="FILE", help="Real inputs (.npz with one array per input, or .npy) added to the parity check.")] = None,
    calibration_data: Annotated[Optional[Path], typer.Option("--calibration-data", metavar="FILE", help="Samples (.npz/.npy) for int8-static calibration (default: --data, else generated data with a warning).")] = None,
    allow_mismatch: Annotated[bool, typer.Option("--allow-mismatch", help="Keep a variant that fails parity (with a loud warning). Never recommended; ignored by --auto.")] = False,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="Allow loading pickle/joblib files. Unpickling runs code from the file: only for files you trust.")] = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FILE", help="Write the chosen artifact here.")] = None,
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", metavar="DIR", help="Write every candidate that was built into this directory (one that failed parity is named NAME.FAILED-PARITY.onnx).")] = None,
    report: Annotated[Optional[Path], typer.Option("--report", metavar="FILE", help="Write the full result (all candidates, parity, latency) as JSON here.")] = None,
    register: Annotated[Optional[str], typer.Option("--register", metavar="NAME", help="Store the chosen artifact as a new version of this registry model, with lineage and figures.")] = None,
    registry: RegistryOpt = None,
    lock_timeout: LockTimeoutOpt = None,
    parity_batches: Annotated[int, typer.Option("--parity-batches", min=1, metavar="N", help="Batches of seeded random inputs for the parity check.")] = 4,
    parity_batch_size: Annotated[int, typer.Option("--parity-batch-size", min=1, metavar="N", help="Rows per parity batch (models with a dynamic batch).")] = 8,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed of the random parity and benchmark inputs.")] = 0,
    no_benchmark: Annotated[bool, typer.Option("--no-benchmark", help="Skip latency measurement (--auto then keeps the FP32 baseline).")] = False,
    warmup: Annotated[float, typer.Option("--warmup", min=0, metavar="SECONDS", help="Seconds of warm-up calls before each measurement.")] = 0.2,
    iterations: Annotated[int, typer.Option("--iterations", min=1, metavar="N", help="At least this many timed calls per measurement.")] = 50,
    min_seconds: Annotated[float, typer.Option("--min-seconds", min=0, metavar="SECONDS", help="And at least this many seconds per measurement.")] = 1.0,
    threads: Annotated[Optional[str], typer.Option("--threads", metavar="LIST", help="ONNX Runtime intra-op thread counts to try, e.g. 1,2 (default under --auto: all cores and 1).")] = None,
    min_gain: Annotated[float, typer.Option("--min-gain", min=0, metavar="PCT", help="Percent by which a lossy variant must beat FP32 to be chosen by --auto.")] = 5.0,
    as_json: JsonOpt = False,
) -> None:
    from mlserve.cli._output import emit, progress_for
    from mlserve.optimize import OptimizeOptions, optimize, parse_input_spec, parse_tolerance, parse_variants
    from mlserve.errors import UsageError
    from mlserve.optimize.timing import TimingSettings

    if static_batch and not input_:
        raise UsageError(
            "--static-batch pins the batch size given in --input, but no --input was given",
            hint="declare the inputs with their batch, e.g. --input x:4x32:float32 --static-batch, or drop --static-batch",
        )
    options = OptimizeOptions(
        auto=auto, variants=parse_variants(variant or []), candidates=list(candidate or []),
        inputs=[parse_input_spec(text, static_batch=static_batch) for text in input_ or []],
        tolerances=[parse_tolerance(text) for text in tolerance or []], data=data, calibration_data=calibration_data,
        allow_mismatch=allow_mismatch, trust_pickle=trust_pickle, output=output, output_dir=output_dir, report=report,
        register_as=register, registry_root=registry, lock_timeout=lock_timeout, parity_batches=parity_batches,
        parity_batch_size=parity_batch_size, seed=seed, benchmark=not no_benchmark,
        timing=TimingSettings(warmup_s=warmup, min_iterations=iterations, min_seconds=min_seconds),
        threads=_parse_threads(threads), min_gain=min_gain / 100.0,
    )
    result = optimize(source, options, progress=progress_for(as_json))
    emit("optimize", result, as_json, render_result)


def _parse_threads(text: str | None) -> list[int]:
    from mlserve.errors import UsageError

    if not text:
        return []
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"bad --threads {text!r}: use comma-separated positive integers, e.g. 1,2") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"bad --threads {text!r}: use comma-separated positive integers, e.g. 1,2")
    return values


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def render_result(console: Any, result: Any) -> None:
    from rich.table import Table

    src = result.source
    where = f"{src.registry_model}:{src.registry_version}" if src.registry_model else src.location
    console.print(f"source: {src.kind} {where} (exported by {src.exporter})", markup=False)
    console.print("inputs: " + ", ".join(spec.describe() for spec in src.inputs), markup=False)
    if src.latency:
        console.print(f"source p50: {src.latency.p50_ms:.3f} ms", markup=False)
    table = Table(show_lines=False)
    for column in ("candidate", "verdict", "p50 ms", "vs source", "vs fp32", "size", "max abs err", "cosine", "top-1"):
        left = column in ("candidate", "verdict")
        table.add_column(column, justify="left" if left else "right", no_wrap=left)
    order = {"chosen": 0, "passed": 1, "slower": 2, "mismatch-allowed": 3, "failed-parity": 4, "error": 5, "skipped": 6}
    built = [c for c in result.candidates if c.verdict != "skipped"]
    for c in sorted(built, key=lambda c: order.get(c.verdict, 9)):
        outs = c.parity.outputs if c.parity else []
        top1 = [o.top1_agreement for o in outs if o.top1_agreement is not None]
        table.add_row(
            c.name, c.verdict, _fmt(c.latency.p50_ms if c.latency else None, ".3f"), _fmt(c.speedup_vs_source, ".2f", "x"),
            _fmt(c.speedup_vs_fp32, ".2f", "x"), _size(c.size_bytes), _fmt(max((o.max_abs_err for o in outs), default=None), ".2e"),
            _fmt(min((o.cosine for o in outs), default=None), ".6f"), _fmt(min(top1) if top1 else None, ".3f"),
        )
    if not console.is_terminal:  # CI logs and pipes: rich would assume 80 columns and cut the figures short ("0.0…")
        console.width = max(console.width, 200)
    console.print(table)
    for c in built:
        if c.reason:
            console.print(f"{c.name}: {c.reason}", markup=False)
    skipped: dict[str, list[str]] = {}
    for c in result.candidates:
        if c.verdict == "skipped":
            skipped.setdefault(c.reason or "", []).append(c.name)
    for reason, names in skipped.items():
        console.print(f"skipped {', '.join(names)}: {reason}", markup=False)
    if result.chosen:
        chosen = next(c for c in result.candidates if c.name == result.chosen)
        speed = f" ({chosen.speedup_vs_source:.2f}x the source's speed)" if chosen.speedup_vs_source else ""
        console.print(f"chosen: {result.chosen}{speed}", markup=False)
    if result.output:
        console.print(f"written: {result.output}", markup=False)
    if result.output_dir:
        console.print(f"candidates written to: {result.output_dir}", markup=False)
    if result.report:
        console.print(f"report: {result.report}", markup=False)
    if result.registered:
        reg = result.registered
        note = "" if reg.created else " (identical content was already stored there; the figures and lineage were recorded on it)"
        console.print(f"registered: {reg.model}:{reg.version}{note}", markup=False)


def install(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("optimize", help=HELP, no_args_is_help=True)(optimize_command)

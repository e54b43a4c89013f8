"""CLI for `mlserve optimize`: export, build variants, check parity, choose with --auto."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

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

HELP = """Turn a model into a faster ONNX (or TensorRT) artifact that provably computes the same function.

SOURCE is a model file (.onnx, .pt2 from torch.export, TorchScript .pt/.ts, scikit-learn .joblib/.pkl),
a local Hugging Face transformers model directory (config.json, weights, tokenizer), a factory
'package.module:function' returning (module, example_inputs), or a registry reference (NAME:VERSION, NAME@STAGE).

Every candidate is compared with the source model itself on seeded example inputs (and --data);
one outside tolerance fails with exit code 6. The source and every candidate are timed at the same
thread counts, in interleaved rounds; a speedup is the median of the per-round ratios, with an interval.
Give --output, --output-dir or --register (or --dry-run to write nothing).

Examples:

  mlserve optimize model.pt2 --auto --output fast.onnx --report report.json

  mlserve optimize mypkg.models:build --variant int8-static --calibration-data samples.npz --output q.onnx

  mlserve optimize silero_vad.onnx --auto --input 'sr=16000' --output vad.onnx

  mlserve optimize ./minilm --auto --text 'a sentence of yours' --padding-mask attention_mask -o minilm.onnx

  mlserve optimize churn@production --auto --register churn
"""


def optimize_command(
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="Model file, Hugging Face model directory, package.module:function factory, or registry reference.", show_default=False)],
    auto: Annotated[bool, typer.Option("--auto", help="Build the candidates that fit this model and hardware, check and measure each, choose the fastest that passes parity.")] = False,
    variant: Annotated[Optional[list[str]], typer.Option("--variant", metavar="NAME", help="Variant to build (repeatable or comma-separated): fp32, fp32-fused, fp16, int8-dynamic, int8-static, trt-fp32, trt-fp16, trt-int8.")] = None,
    candidate: Annotated[Optional[list[Path]], typer.Option("--candidate", metavar="FILE", help="An ONNX file built elsewhere to check against the source like a variant (repeatable).")] = None,
    input_: InputOpt = None,
    static_batch: Annotated[bool, typer.Option("--static-batch", help="Pin the batch dimension to the size given in --input instead of keeping it dynamic.")] = False,
    text: Annotated[Optional[list[str]], typer.Option("--text", metavar="TEXT", help="A sentence for a Hugging Face model's tokenizer to make example inputs from (repeatable; default: a few built-in sentences).")] = None,
    tolerance: Annotated[Optional[list[str]], typer.Option("--tolerance", "-t", metavar="OUT:ATOL:RTOL[:MIN_COSINE[:MIN_TOP1]]", help="Parity tolerance per output ('*' for all): an element fails only outside both ATOL and RTOL; MIN_COSINE and MIN_TOP1 override the lowest accepted cosine and top-1 agreement; named fields KEY=VALUE (atol, rtol, cosine, top1, rel_l2, row_cosine) set any criterion, e.g. 'logits:rel_l2=0.2:top1=0.99' (repeatable).")] = None,
    padding_mask: Annotated[Optional[list[str]], typer.Option("--padding-mask", metavar="INPUT[=OUT,...]", help="An input that marks padding (an attention mask): positions where it is 0 are left out of the parity figures of every output they line up with (or of the outputs named).")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", metavar="FILE", help="Real inputs (.npz with one array per input, or .npy) added to the parity check.")] = None,
    parity_on: Annotated[Optional[str], typer.Option("--parity-on", metavar="WHAT", help="What parity is checked on: generated, data (only --data: for models whose inputs cannot be made up) or both (default with --data).")] = None,
    calibration_data: Annotated[Optional[Path], typer.Option("--calibration-data", metavar="FILE", help="Samples (.npz/.npy) for int8-static calibration (default: --data, else generated data with a warning).")] = None,
    allow_mismatch: Annotated[bool, typer.Option("--allow-mismatch", help="Keep a variant that fails parity (with a loud warning). Never recommended; ignored by --auto.")] = False,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="Allow loading pickle/joblib files. Unpickling runs code from the file: only for files you trust.")] = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FILE", help="Write the chosen artifact here.")] = None,
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", metavar="DIR", help="Write every candidate that was built into this directory (one that failed parity is named NAME.FAILED-PARITY.onnx).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check and measure the candidates but write no artifact (without it, --output, --output-dir or --register is required).")] = False,
    report: Annotated[Optional[Path], typer.Option("--report", metavar="FILE", help="Write the full result (all candidates, parity, latency, measurement setup) as JSON here.")] = None,
    register: Annotated[Optional[str], typer.Option("--register", metavar="NAME", help="Store the chosen artifact as a new version of this registry model, with lineage and figures.")] = None,
    registry: RegistryOpt = None,
    lock_timeout: LockTimeoutOpt = None,
    parity_batches: Annotated[int, typer.Option("--parity-batches", min=1, metavar="N", help="Batches of seeded example inputs for the parity check.")] = 4,
    parity_batch_size: Annotated[int, typer.Option("--parity-batch-size", min=1, metavar="N", help="Rows per parity batch (models with a dynamic batch).")] = 8,
    min_parity_samples: Annotated[int, typer.Option("--min-parity-samples", min=1, metavar="N", help="At least this many rows are compared: a model with a fixed batch runs as many batches as that takes.")] = 32,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed of the example parity and benchmark inputs.")] = 0,
    no_benchmark: Annotated[bool, typer.Option("--no-benchmark", help="Skip latency measurement (--auto then keeps the FP32 baseline).")] = False,
    warmup: WarmupOpt = WARMUP_DEFAULT,
    iterations: IterationsOpt = ITERATIONS_DEFAULT,
    duration: DurationOpt = DURATION_DEFAULT,
    rounds: RoundsOpt = ROUNDS_DEFAULT,
    threads: ThreadsOpt = None,
    min_gain: Annotated[float, typer.Option("--min-gain", min=0, metavar="PCT", help="Percent by which a lossy variant must beat the fastest lossless candidate to be chosen by --auto.")] = 5.0,
    as_json: JsonOpt = False,
) -> None:
    """Example: mlserve optimize model.onnx --auto --output fast.onnx"""
    from mlserve.cli._output import emit, progress_for
    from mlserve.errors import UsageError
    from mlserve.inputs import parse_inputs
    from mlserve.optimize.specs import parse_tolerance, parse_variants
    from mlserve.optimize.timing import TimingSettings

    if static_batch and not input_:
        raise UsageError(
            "--static-batch pins the batch size given in --input, but no --input was given",
            hint="declare the inputs with their batch, e.g. --input x:4x32:float32 --static-batch, or drop --static-batch",
        )
    if parity_on is not None and parity_on not in ("generated", "data", "both"):
        raise UsageError(f"bad --parity-on {parity_on!r}: use generated, data or both")
    if not (output or output_dir or register or dry_run):
        raise UsageError("nothing would be written: give --output FILE, --output-dir DIR or --register NAME",
                         hint="or --dry-run to check and measure without writing an artifact")
    options = dict(
        auto=auto, variants=parse_variants(variant or []), candidates=list(candidate or []),
        inputs=parse_inputs(input_, static_batch=static_batch), texts=list(text or []),
        tolerances=[parse_tolerance(t) for t in tolerance or []], padding_masks=_parse_masks(padding_mask),
        data=data, parity_on=parity_on, calibration_data=calibration_data,
        allow_mismatch=allow_mismatch, trust_pickle=trust_pickle, output=output, output_dir=output_dir, report=report,
        register_as=register, registry_root=registry, lock_timeout=lock_timeout, parity_batches=parity_batches,
        parity_batch_size=parity_batch_size, min_parity_samples=min_parity_samples, seed=seed, benchmark=not no_benchmark,
        timing=TimingSettings(warmup_s=warmup, min_iterations=iterations, min_seconds=duration, rounds=rounds),
        threads=parse_threads(threads), min_gain=min_gain / 100.0,
    )
    from mlserve.optimize import OptimizeOptions, optimize  # after every option is checked

    result = optimize(source, OptimizeOptions(**options), progress=progress_for(as_json))
    emit("optimize", result, as_json, render_result)


def _parse_masks(texts: list[str] | None) -> dict[str, list[str] | None]:
    from mlserve.errors import UsageError

    masks: dict[str, list[str] | None] = {}
    for text in texts or []:
        name, eq, outs = text.partition("=")
        if not name.strip() or (eq and not outs.strip()):
            raise UsageError(f"bad --padding-mask {text!r}: use INPUT or INPUT=OUTPUT[,OUTPUT...], e.g. attention_mask")
        masks[name.strip()] = [o.strip() for o in outs.split(",") if o.strip()] if eq else None
    return masks


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


def _exported(src: Any) -> str:
    if src.exporter in (None, "none"):
        return "the ONNX file as given, nothing exported" if src.kind == "onnx" else "not exported"
    return {"dynamo": "exported with torch.onnx (dynamo exporter)", "torchscript": "exported with torch.onnx (TorchScript exporter)",
            "skl2onnx": "converted with skl2onnx"}.get(src.exporter, f"exported by {src.exporter}")


def _speedup(c: Any) -> str:
    if c.speedup is None:
        return "-"
    return f"{c.speedup.ratio:.2f}x [{c.speedup.ci_low:.2f}, {c.speedup.ci_high:.2f}]"


def render_result(console: Any, result: Any) -> None:
    from mlserve.cli._output import print_table

    src = result.source
    where = f"{src.registry_model}:{src.registry_version}" if src.registry_model else src.location
    console.print(f"source: {src.kind} {where} ({_exported(src)})", markup=False)
    console.print("inputs: " + ", ".join(spec.describe() for spec in src.inputs), markup=False)
    for lat in src.latency_by_threads:
        console.print(f"source p50: {lat.p50_ms:.3f} ms at {lat.threads if lat.threads else 'its own'} threads", markup=False)
    m = result.measurement
    if m is not None:
        console.print(f"measured: batch {m.batch or 'as declared'}, threads {','.join(map(str, m.threads))} for the source and every"
                      f" candidate, {m.rounds} interleaved rounds; speedup = median of per-round ratios [{m.confidence:.0%} interval]",
                      markup=False)
    header = ["candidate", "verdict", "p50 ms", "threads", "vs source", "vs fp32", "size", "max abs err", "rel L2", "cosine", "top-1"]
    order = {"chosen": 0, "passed": 1, "slower": 2, "mismatch-allowed": 3, "failed-parity": 4, "error": 5, "skipped": 6}
    built = [c for c in result.candidates if c.verdict != "skipped"]
    rows = []
    for c in sorted(built, key=lambda c: order.get(c.verdict, 9)):
        outs = c.parity.outputs if c.parity else []
        top1 = [o.top1_agreement for o in outs if o.top1_agreement is not None]
        rows.append([
            c.name, c.verdict, _fmt(c.latency.p50_ms if c.latency else None, ".3f"), c.latency.threads if c.latency else "-",
            _speedup(c), _fmt(c.speedup_vs_fp32, ".2f", "x"), _size(c.size_bytes),
            _fmt(max((o.max_abs_err for o in outs), default=None), ".2e"), _fmt(max((o.rel_l2_err for o in outs), default=None), ".2e"),
            _fmt(min((o.cosine for o in outs), default=None), ".6f"), _fmt(min(top1) if top1 else None, ".3f"),
        ])
    print_table(console, header, rows, right={"p50 ms", "threads", "vs source", "vs fp32", "size", "max abs err", "rel L2", "cosine", "top-1"})
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
        speed = (f" ({chosen.speedup.ratio:.2f}x the source's speed at {chosen.speedup.threads} threads on both sides)"
                 if chosen.speedup else "")
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

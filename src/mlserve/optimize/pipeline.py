"""``optimize``: export, build candidates, check parity, measure, choose, write, register."""

from __future__ import annotations

import copy
import math
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from pydantic import BaseModel, Field

from mlserve._deps import require
from mlserve.errors import CapabilityUnavailableError, MlserveError, NotFoundError, ParityError, UsageError
from mlserve.inputs import InputSpec, make_feeds
from mlserve.optimize.feeds import load_user_data
from mlserve.optimize.models import Candidate, OptimizeResult, SourceInfo
from mlserve.optimize.outputs import write_outputs
from mlserve.optimize.parity import check_parity
from mlserve.optimize.sources import LoadedSource, load_source
from mlserve.optimize.specs import VARIANTS, ToleranceOverride, check_tolerance_outputs
from mlserve.optimize.timing import TimingSettings, measure_all, setup, usable_cores
from mlserve.optimize.variants import BUILDERS, BuildContext, Built, VariantSkipped, auto_variants, cpu_flags, has_vnni
from mlserve.progress import NULL_PROGRESS, Progress

ORIGINAL = "original"
"""The candidate that is an ONNX source itself, as given: --auto never hands back something slower than it."""


class OptimizeOptions(BaseModel):
    auto: bool = False
    variants: list[str] = Field(default_factory=list, description="variants to build when not --auto")
    candidates: list[Path] = Field(default_factory=list, description="ONNX files built elsewhere, checked like variants")
    inputs: list[InputSpec] = Field(default_factory=list)
    texts: list[str] = Field(default_factory=list, description="example texts for a Hugging Face source's tokenizer")
    tolerances: list[ToleranceOverride] = Field(default_factory=list)
    padding_masks: dict[str, Optional[list[str]]] = Field(
        default_factory=dict, description="mask input -> outputs (None: every output it lines up with); positions where it is 0 are not compared")
    data: Optional[Path] = None
    parity_on: Optional[Literal["generated", "data", "both"]] = Field(
        None, description="what parity is checked on (None: both with --data, else generated)")
    calibration_data: Optional[Path] = None
    allow_mismatch: bool = False
    trust_pickle: bool = False
    output: Optional[Path] = None
    output_dir: Optional[Path] = None
    report: Optional[Path] = None
    register_as: Optional[str] = None
    registry_root: Optional[Path] = None
    lock_timeout: Optional[float] = None
    parity_batches: int = Field(4, ge=1)
    parity_batch_size: int = Field(8, ge=1)
    min_parity_samples: int = Field(32, ge=1, description="a model with a fixed batch runs as many batches as this takes")
    seed: int = 0
    benchmark: bool = True
    timing: TimingSettings = Field(default_factory=TimingSettings)
    threads: list[int] = Field(default_factory=list, description="intra-op thread counts, for the source and every candidate alike (empty: the usable cores)")
    min_gain: float = Field(0.05, ge=0, description="a lossy variant must beat the fastest lossless candidate by this fraction to be chosen")


def optimize(source: str, options: OptimizeOptions, *, progress: Progress = NULL_PROGRESS) -> OptimizeResult:
    _validate(options)
    loaded = load_source(
        source, inputs=options.inputs, trust_pickle=options.trust_pickle, registry_root=options.registry_root,
        lock_timeout=options.lock_timeout, texts=options.texts, progress=progress,
    )
    with tempfile.TemporaryDirectory(prefix="mlserve-optimize-") as tmp:
        return _run(loaded, options, Path(tmp), progress)


def _validate(options: OptimizeOptions) -> None:
    if options.auto and options.variants:
        raise UsageError("--auto chooses the variants itself; drop --variant or drop --auto")
    if not options.auto and not options.variants and not options.candidates:
        raise UsageError("nothing to build", hint="pass --auto, or --variant fp32|fp16|int8-dynamic|int8-static|trt-fp16...")
    if options.parity_on == "data" and options.data is None:
        raise UsageError("--parity-on data checks parity on --data only, but no --data was given", hint="add --data FILE.npz")
    for path in options.candidates:
        if not path.is_file():
            raise NotFoundError(f"candidate file {path} does not exist")
    if not options.auto and options.output and len(options.variants) + len(options.candidates) > 1:
        raise UsageError("--output takes one artifact but several variants were asked for", hint="use --output-dir, or --auto to choose one")
    if options.register_as and not (options.auto or len(options.variants) + len(options.candidates) == 1):
        raise UsageError("--register stores one artifact: use it with --auto or with a single --variant")
    if options.register_as:
        from mlserve.registry.names import check_model_name

        try:
            check_model_name(options.register_as)  # before any work is done
        except UsageError as exc:
            raise UsageError(f"--register {options.register_as!r}: {exc.message}", hint=exc.hint) from None
    for flag, path in (("--output", options.output), ("--report", options.report)):
        if path is None:
            continue
        if path.is_dir():
            raise UsageError(f"{flag} {path} is a directory", hint=f"give {flag} a file name, e.g. {path / ('model.onnx' if flag == '--output' else 'report.json')}")
        _check_parent(flag, path.parent)
    if options.output_dir is not None:
        if options.output_dir.exists() and not options.output_dir.is_dir():
            raise UsageError(f"--output-dir {options.output_dir} exists and is not a directory", hint="give --output-dir a directory")
        _check_parent("--output-dir", options.output_dir)


def _check_parent(flag: str, path: Path) -> None:
    """The nearest existing ancestor must be a writable directory (it is created later if missing)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UsageError(f"{flag}: {probe} is a file, not a directory", hint=f"choose another path for {flag}")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{flag}: cannot write into {probe} (permission denied)", hint=f"choose another path for {flag}")


def _parity_feeds(source: LoadedSource, options: OptimizeOptions) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Optional[int]]:
    """(generated feeds, user feeds, batch of the generated feeds: None for a model with fixed shapes)."""
    tensors = [s for s in source.inputs if not s.python_arg and s.shape]
    dynamic = bool(tensors) and all(s.dynamic_batch for s in tensors)
    batch = options.parity_batch_size if dynamic else None
    parity_on = options.parity_on or ("both" if options.data else "generated")
    user = load_user_data(options.data, source.inputs, batch=options.parity_batch_size) if options.data else []
    if parity_on == "data":
        return [], user, batch
    if source.example_feeds:  # inputs the source brings (tokenized text): realistic, so they replace random ones
        return list(source.example_feeds), user if parity_on == "both" else [], batch
    rows = batch or (tensors[0].concrete_shape(None)[0] if tensors and tensors[0].shape else 1)
    # a fixed-batch model would otherwise get parity_batches x its batch rows only (4 for a batch of 1)
    count = max(options.parity_batches, math.ceil(options.min_parity_samples / max(rows, 1)))
    feeds = [make_feeds(source.inputs, batch=batch, seed=options.seed + i) for i in range(count)]
    if batch is not None:
        # latency is measured (and models are served) at batch 1: prove parity there too, and at an odd size,
        # so that an export specialised to one batch size cannot pass on batches of --parity-batch-size only
        for extra, size in enumerate(sorted({1, 3} - {batch})):
            feeds.append(make_feeds(source.inputs, batch=size, seed=options.seed + count + extra))
    return feeds, user if parity_on == "both" else [], batch


def _run_source(source: LoadedSource, feeds: list[dict[str, Any]], what: str) -> list[dict[str, Any]]:
    from mlserve.optimize.source_torch import source_failed

    outputs = []
    for feed in feeds:
        try:
            outputs.append(source.reference(feed))
        except MlserveError:
            raise
        except Exception as exc:  # noqa: BLE001 - the source model itself refuses these inputs: not a bug of ours
            error = source_failed(exc, source.inputs)
            if what != "generated":
                error.message = error.message.replace("the generated inputs", what)
                error.args = (error.message,)
            raise error from None
    return outputs


def _run(source: LoadedSource, options: OptimizeOptions, workdir: Path, progress: Progress) -> OptimizeResult:
    check_tolerance_outputs(options.tolerances, source.output_names)
    unknown_masks = [m for m in options.padding_masks if m not in {s.name for s in source.inputs}]
    if unknown_masks:
        raise UsageError(f"--padding-mask names {', '.join(unknown_masks)}, which the model does not take as input",
                         hint=f"its inputs: {', '.join(s.name for s in source.inputs)}")
    feeds, user_feeds, batch = _parity_feeds(source, options)
    with progress.task("running the source model on the parity inputs"):
        reference_outputs = _run_source(source, feeds, "generated")
        reference_outputs += _run_source(source, user_feeds, f"the rows of --data {options.data.name if options.data else ''}")
    all_feeds = feeds + user_feeds
    parity_on = "data" if not feeds else "both" if user_feeds else "generated"

    export_path = workdir / "export.onnx"
    exporter = source.write_onnx(export_path, progress)
    warnings = list(source.warnings)
    info = SourceInfo(
        kind=source.kind, location=source.location, path=str(source.path) if source.path else None, sha256=source.sha256,
        registry_model=source.registry_model, registry_version=source.registry_version, exporter=exporter,
        inputs=source.inputs, outputs=source.output_names,
    )

    calibration = None
    cal_path = options.calibration_data or options.data
    if cal_path:
        calibration = load_user_data(cal_path, source.inputs, batch=1)
    elif source.example_feeds:  # the tokenizer's own inputs are real data: calibrate on them, row by row
        calibration = [{k: v[i:i + 1] for k, v in feed.items()} for feed in source.example_feeds[:1]
                       for i in range(len(next(iter(feed.values()))))]
    ctx = BuildContext(source_onnx=export_path, workdir=workdir, specs=source.inputs, calibration=calibration, progress=progress,
                       calibration_origin="user data" if cal_path else "the source's tokenized example texts",
                       fusion_export=source.fusion_export, fusion_hints=source.fusion_hints)

    if options.auto:
        names, skipped = auto_variants(export_path)
    else:
        names, skipped = list(options.variants), {}
    candidates: list[Candidate] = []
    artifacts: dict[str, Path] = {}
    errors: dict[str, MlserveError] = {}
    for name, reason in skipped.items():
        candidates.append(Candidate(name=name, precision=VARIANTS[name][0], verdict="skipped", reason=reason))

    plan: list[tuple[str, str, Callable[[], Built]]] = [(n, VARIANTS[n][0], lambda n=n: BUILDERS[n](ctx)) for n in names]
    if options.auto and source.kind == "onnx" and source.path is not None:
        original = source.path
        plan.append((ORIGINAL, "fp32", lambda: Built(original, {"variant": ORIGINAL, "file": str(original),
                                                                 "note": "the ONNX source as given, default session options"})))
    for path in options.candidates:
        plan.append((f"file:{path.name}", "fp32", lambda path=path: Built(path, {"variant": "external", "file": str(path)})))

    for name, precision, build in plan:
        try:
            built = build()
        except VariantSkipped as exc:
            candidates.append(Candidate(name=name, precision=precision, verdict="skipped", reason=str(exc)))
            continue
        except MlserveError as exc:
            if not options.auto:
                raise
            errors[name] = exc
            candidates.append(Candidate(name=name, precision=precision, verdict="error", reason=str(exc)))
            continue
        with progress.task(f"{name}: checking parity against the source"):
            try:
                runner = _runner_for(built.path, source.output_names)
                report = check_parity(
                    source.reference, runner, all_feeds, source.output_names, precision=precision, overrides=options.tolerances,
                    user_batches=len(user_feeds), reference_outputs=reference_outputs, padding_masks=options.padding_masks,
                    inputs=parity_on,
                )
            except UsageError as exc:
                if exc.message.startswith("--padding-mask"):
                    raise
                why = str(exc)
                if not options.auto:
                    raise UsageError(f"{name} cannot run: {why}") from None
                errors[name] = UsageError(f"{name} cannot run: {why}")
                candidates.append(Candidate(name=name, precision=precision, verdict="error", reason=f"cannot run: {why}", recipe=built.recipe))
                continue
            except Exception as exc:  # noqa: BLE001 - under --auto a candidate that cannot run is rejected, not fatal
                why = " ".join(f"{type(exc).__name__}: {str(exc)[:300]}".split())
                if not options.auto:
                    raise UsageError(f"{name} cannot run: {why}") from None
                errors[name] = UsageError(f"{name} cannot run: {why}")
                candidates.append(Candidate(name=name, precision=precision, verdict="error", reason=f"cannot run: {why}", recipe=built.recipe))
                continue
        verdict = "passed" if report.passed else "failed-parity"
        worst = report.worst()
        candidates.append(
            Candidate(
                name=name, precision=precision, verdict=verdict, reason=f"{worst.name}: {worst.reason}" if worst else None,
                size_bytes=built.path.stat().st_size, parity=report, recipe=built.recipe,
            )
        )
        artifacts[name] = built.path
    warnings.extend(ctx.warnings)
    if options.auto:
        _raise_baseline_error(errors)  # before anything is measured

    if not options.auto:
        if not artifacts and all(c.verdict == "skipped" for c in candidates):
            reasons = "; ".join(f"{c.name}: {c.reason}" for c in candidates)
            raise CapabilityUnavailableError(f"no variant could be built here ({reasons})")
        for c in candidates:
            if c.verdict == "skipped":
                warnings.append(f"{c.name} was skipped: {c.reason}")
        failing = [c for c in candidates if c.verdict == "failed-parity"]
        if failing and not options.allow_mismatch:
            c = failing[0]
            raise ParityError(
                f"{c.name} does not compute the same function as the source: {c.reason}",
                hint=failure_hint(c),
                details={"candidate": c.name, "parity": c.parity.model_dump(mode="json") if c.parity else None},
            )
        for c in failing:
            c.verdict = "mismatch-allowed"
            warnings.append(f"PARITY FAILED for {c.name} and was ignored because of --allow-mismatch: {c.reason}")
    elif options.allow_mismatch:
        warnings.append("--allow-mismatch has no effect with --auto: a candidate that fails parity is never chosen")

    measured = [c for c in candidates if c.verdict in ("passed", "mismatch-allowed")]
    if options.benchmark and measured:
        _measure(source, info, measured, artifacts, batch, options, progress)

    chosen = _choose(candidates, options) if options.auto else _single(candidates)
    if chosen is not None and chosen.verdict != "mismatch-allowed":  # that verdict must stay visible
        chosen.verdict = "chosen"
    if chosen is not None and chosen.speedup is not None and chosen.speedup.ci_high < 1.0:
        warnings.append(f"{chosen.name} is slower than the source ({chosen.speedup.ratio:.2f}x at {chosen.speedup.threads} threads)")
    if chosen is not None and chosen.speedup is not None and chosen.speedup.ci_low > 0 and chosen.speedup.ci_high / chosen.speedup.ci_low > 1.5:
        sp = chosen.speedup
        warnings.append(f"the speedup of {chosen.name} is uncertain ({sp.ratio:.2f}x, interval {sp.ci_low:.2f}-{sp.ci_high:.2f}): the rounds "
                        "disagree, as on a busy machine; rerun on a quiet one (or with more --rounds, fewer --threads) before quoting it")

    result = OptimizeResult(
        source=info, mode="auto" if options.auto else "variants", candidates=candidates, chosen=chosen.name if chosen else None,
        measurement=setup(options.timing, options.threads or [usable_cores()], batch=1 if batch else None, source_kind=source.kind,
                          source_threads_apply=source.threads_apply) if info.latency else None,
        hardware=_hardware(), tools=_tools(), warnings=warnings,
    )
    write_outputs(result, candidates, artifacts, chosen, options, source)
    return result


def _measure(source: LoadedSource, info: SourceInfo, measured: list[Candidate], artifacts: dict[str, Path], batch: Optional[int],
             options: OptimizeOptions, progress: Progress) -> None:
    """The source and every candidate that may be chosen, at each thread count, in interleaved rounds, at batch 1."""
    if source.example_feeds:
        import numpy as np

        first = source.example_feeds[0]
        one = {k: np.ascontiguousarray(v[:1]) if np.ndim(v) else v for k, v in first.items()}
    else:
        one = make_feeds(source.inputs, batch=1 if batch else None, seed=options.seed + 9999)
    grid = options.threads or [usable_cores()]
    outputs = source.output_names
    calls = {c.name: (lambda t, path=artifacts[c.name]: _timed_call_for(path, one, t, outputs)) for c in measured}
    per_threads = measure_all(lambda t: source.make_timed_call(one, t), calls, grid, options.timing,
                              source_threads_apply=source.threads_apply, seed=options.seed, progress=progress)
    info.latency_by_threads = [r.source for r in per_threads]
    info.latency = min(info.latency_by_threads, key=lambda lat: lat.p50_ms)
    for c in measured:
        c.latency_by_threads = [r.candidates[c.name] for r in per_threads]
        best = min(per_threads, key=lambda r: r.candidates[c.name].p50_ms)
        c.latency = best.candidates[c.name]
        c.speedup = best.speedups[c.name]
        c.speedup_vs_source = c.speedup.ratio
        c.speedup_vs_fp32 = best.vs_fp32.get(c.name)
        c.recipe = {**c.recipe, "session": {"intra_op_num_threads": best.threads, "inter_op_num_threads": 1}}


def _raise_baseline_error(errors: dict[str, MlserveError]) -> None:
    """An FP32 baseline that could not be built or run fails with its own error and exit code, not as a parity failure."""
    if "fp32" not in errors:
        return
    carried = copy.copy(errors["fp32"])  # keeps its class, so its own exit code (2, 7...)
    carried.message = f"the FP32 ONNX baseline could not be built, so no candidate can be trusted: {carried.message}"
    carried.args = (carried.message,)
    raise carried


def _choose(candidates: list[Candidate], options: OptimizeOptions) -> Candidate | None:
    """The fastest lossless (fp32) candidate that passed; a lossy one only when it beats that by --min-gain."""
    fp32 = next((c for c in candidates if c.name == "fp32"), None)
    if fp32 is None or fp32.verdict != "passed":
        why = fp32.reason if fp32 else "it was not built"
        raise ParityError(
            f"the FP32 ONNX baseline does not match the source model ({why}); no candidate can be trusted",
            hint="check the export (--input shapes and values, unsupported ops); see 'When parity fails' in docs/optimize.md",
            details={"candidates": [c.model_dump(mode="json") for c in candidates]},
        )
    if fp32.latency is None:  # --no-benchmark: nothing proves another candidate is faster
        return fp32
    passed = [c for c in candidates if c.verdict == "passed" and c.latency is not None]
    lossless = [c for c in passed if c.precision == "fp32"]
    produced = [c for c in lossless if c.name != ORIGINAL]
    best = min(produced or lossless, key=lambda c: c.latency.p50_ms)  # type: ignore[union-attr]
    original = next((c for c in lossless if c.name == ORIGINAL), None)
    if original is not None and best is not original and best.speedup is not None and best.speedup.ci_high < 1.0:
        # the ONNX file as given is faster than anything built from it, beyond the rounds' noise: hand it back
        best = original
    for c in lossless:
        if c is not best:
            c.verdict = "slower"
            c.reason = c.reason or f"slower than {best.name} ({c.latency.p50_ms:.3f} vs {best.latency.p50_ms:.3f} ms)"  # type: ignore[union-attr]
    winner = best
    for c in passed:
        if c.precision == "fp32":
            continue
        if c.latency.p50_ms > best.latency.p50_ms * (1 - options.min_gain):  # type: ignore[union-attr]
            c.verdict = "slower"
            c.reason = c.reason or (
                f"not {options.min_gain:.0%} faster than {best.name} ({c.latency.p50_ms:.3f} vs {best.latency.p50_ms:.3f} ms)"  # type: ignore[union-attr]
            )
            continue
        if c.latency.p50_ms < winner.latency.p50_ms:  # type: ignore[union-attr]
            winner = c
    for c in passed:
        if c is not winner and c.verdict == "passed":
            c.verdict = "slower"
            c.reason = c.reason or f"slower than {winner.name} ({c.latency.p50_ms:.3f} vs {winner.latency.p50_ms:.3f} ms)"  # type: ignore[union-attr]
    return winner


_CHECK_WORDS = {
    "elements": "elements outside ATOL/RTOL", "rel-l2": "the relative L2 error", "cosine": "the cosine similarity",
    "row-cosine": "the cosine similarity of a row", "top1": "top-1 agreement", "labels": "label agreement",
}


def failure_hint(candidate: Candidate) -> str:
    """What to do about a parity failure. It says which criterion failed and by how much (the message has the
    figures); it never offers a ready-made --tolerance: one sized to this failure would accept a broken model."""
    worst = candidate.parity.worst() if candidate.parity else None
    if worst is None:
        return "see 'When parity fails' in docs/optimize.md"
    checks = set(worst.failed_checks)
    if checks & {"shape", "missing", "nan-inf"}:
        return ("no --tolerance accepts a shape difference, a missing output or NaN/Inf the source does not produce; "
                "check the export (--input shapes and values, batch-dependent code)")
    failed = [w for k, w in _CHECK_WORDS.items() if k in checks]
    return (f"failed on {', '.join(failed)}; if you expected a loss (a quantized model), judge it on your own inputs "
            "(--data FILE.npz --parity-on data) and accept only what your use needs, e.g. keeping the top-1 class: see "
            "'Accepting a lossy model' in docs/optimize.md")


def _single(candidates: list[Candidate]) -> Candidate | None:
    usable = [c for c in candidates if c.verdict in ("passed", "mismatch-allowed")]
    return usable[0] if len(usable) == 1 else None


def _runner_for(path: Path, outputs: list[str], threads: int = 0) -> Callable[[dict[str, Any]], dict[str, Any]]:
    if path.suffix == ".engine":
        from mlserve.optimize.tensorrt import engine_runner

        return engine_runner(path, outputs)
    session = _session(path, threads)
    return lambda feeds: dict(zip(outputs, session.run(outputs, feeds)))


def _session(path: Path, threads: int) -> Any:
    ort = require("onnxruntime", purpose="running ONNX models")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 4  # errors come back as exceptions; ORT log lines stay off stderr
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():  # onnxruntime-gpu: fp16 candidates run where they pay off
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), opts, providers=providers)
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"ONNX Runtime cannot load {path.name}: {str(exc).splitlines()[0][:300]}") from None


def _timed_call_for(path: Path, feeds: dict[str, Any], threads: int, outputs: list[str]) -> Callable[[], Any]:
    if path.suffix == ".engine":
        from mlserve.optimize.tensorrt import engine_runner

        run = engine_runner(path, outputs)
        return lambda: run(feeds)
    session = _session(path, threads)
    return lambda: session.run(None, feeds)


def _hardware() -> dict[str, Any]:
    from mlserve.optimize.variants import cuda_available

    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    except OSError:
        pass
    flags = cpu_flags()
    return {
        "cpu": model or platform.processor(),
        "logical_cores": os.cpu_count(),
        "avx2": "avx2" in flags,
        "avx512": "avx512f" in flags,
        "vnni": has_vnni(),
        "cuda": cuda_available(),
    }


def _tools() -> dict[str, str]:
    import importlib.metadata as md

    versions = {}
    for dist in ("mlserve", "torch", "onnx", "onnxruntime", "onnxscript", "scikit-learn", "skl2onnx", "transformers", "tensorrt"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    return versions



"""``optimize``: export, build candidates, check parity, measure, choose, write, register."""

from __future__ import annotations

import copy
import math
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

from pydantic import BaseModel, Field

from mlserve._deps import require
from mlserve.errors import CapabilityUnavailableError, MlserveError, NotFoundError, ParityError, UsageError
from mlserve.optimize.feeds import load_user_data, make_feeds
from mlserve.optimize.models import Candidate, Latency, OptimizeResult, Registered, SourceInfo
from mlserve.optimize.parity import check_parity
from mlserve.optimize.sources import LoadedSource, load_source
from mlserve.optimize.specs import TOLERANCE_FORMAT, VARIANTS, InputSpec, ToleranceOverride, check_tolerance_outputs, tolerance_for
from mlserve.optimize.timing import TimingSettings, measure
from mlserve.optimize.variants import BUILDERS, BuildContext, Built, VariantSkipped, auto_variants, cpu_flags, has_vnni
from mlserve.progress import NULL_PROGRESS, Progress


class OptimizeOptions(BaseModel):
    auto: bool = False
    variants: list[str] = Field(default_factory=list, description="variants to build when not --auto")
    candidates: list[Path] = Field(default_factory=list, description="ONNX files built elsewhere, checked like variants")
    inputs: list[InputSpec] = Field(default_factory=list)
    tolerances: list[ToleranceOverride] = Field(default_factory=list)
    data: Optional[Path] = None
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
    seed: int = 0
    benchmark: bool = True
    timing: TimingSettings = Field(default_factory=TimingSettings)
    threads: list[int] = Field(default_factory=list, description="ORT intra-op thread counts to try (empty: cores and 1 under --auto)")
    min_gain: float = Field(0.05, ge=0, description="a lossy variant must beat FP32 by this fraction to be chosen")


def optimize(source: str, options: OptimizeOptions, *, progress: Progress = NULL_PROGRESS) -> OptimizeResult:
    _validate(options)
    loaded = load_source(
        source, inputs=options.inputs, trust_pickle=options.trust_pickle, registry_root=options.registry_root,
        lock_timeout=options.lock_timeout, progress=progress,
    )
    with tempfile.TemporaryDirectory(prefix="mlserve-optimize-") as tmp:
        return _run(loaded, options, Path(tmp), progress)


def _validate(options: OptimizeOptions) -> None:
    if options.auto and options.variants:
        raise UsageError("--auto chooses the variants itself; drop --variant or drop --auto")
    if not options.auto and not options.variants and not options.candidates:
        raise UsageError("nothing to build", hint="pass --auto, or --variant fp32|fp16|int8-dynamic|int8-static|trt-fp16...")
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


def _run(source: LoadedSource, options: OptimizeOptions, workdir: Path, progress: Progress) -> OptimizeResult:
    export_path = workdir / "export.onnx"
    exporter = source.write_onnx(export_path, progress)
    warnings = list(source.warnings)
    info = SourceInfo(
        kind=source.kind, location=source.location, path=str(source.path) if source.path else None, sha256=source.sha256,
        registry_model=source.registry_model, registry_version=source.registry_version, exporter=exporter,
        inputs=source.inputs, outputs=source.output_names,
    )

    check_tolerance_outputs(options.tolerances, source.output_names)

    # the same seeded inputs for every candidate, plus the user's own rows
    batch = options.parity_batch_size if all(s.dynamic_batch for s in source.inputs) else None
    feeds = [make_feeds(source.inputs, batch=batch, seed=options.seed + i) for i in range(options.parity_batches)]
    if batch is not None:
        # latency is measured (and models are served) at batch 1: prove parity there too, and at an odd size,
        # so that an export specialised to one batch size cannot pass on batches of --parity-batch-size only
        for extra, size in enumerate(sorted({1, 3} - {batch})):
            feeds.append(make_feeds(source.inputs, batch=size, seed=options.seed + options.parity_batches + extra))
    user_feeds = load_user_data(options.data, source.inputs, batch=options.parity_batch_size) if options.data else []
    all_feeds = feeds + user_feeds
    with progress.task("running the source model on the parity inputs"):
        reference_outputs = [source.reference(f) for f in all_feeds]

    calibration = None
    cal_path = options.calibration_data or options.data
    if cal_path:
        calibration = load_user_data(cal_path, source.inputs, batch=1)
    ctx = BuildContext(source_onnx=export_path, workdir=workdir, specs=source.inputs, calibration=calibration, progress=progress)

    if options.auto:
        names, skipped = auto_variants()
    else:
        names, skipped = list(options.variants), {}
    candidates: list[Candidate] = []
    artifacts: dict[str, Path] = {}
    errors: dict[str, MlserveError] = {}
    for name, reason in skipped.items():
        candidates.append(Candidate(name=name, precision=VARIANTS[name][0], verdict="skipped", reason=reason))

    plan: list[tuple[str, str, Callable[[], Built]]] = [(n, VARIANTS[n][0], lambda n=n: BUILDERS[n](ctx)) for n in names]
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
                    user_batches=len(user_feeds), reference_outputs=reference_outputs,
                )
            except Exception as exc:  # noqa: BLE001 - under --auto a candidate that cannot run is rejected, not fatal
                why = str(exc) if isinstance(exc, MlserveError) else f"{type(exc).__name__}: {str(exc)[:300]}"
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
                hint=_loosen_hint(c, options.tolerances),
                details={"candidate": c.name, "parity": c.parity.model_dump(mode="json") if c.parity else None},
            )
        for c in failing:
            c.verdict = "mismatch-allowed"
            warnings.append(f"PARITY FAILED for {c.name} and was ignored because of --allow-mismatch: {c.reason}")
    elif options.allow_mismatch:
        warnings.append("--allow-mismatch has no effect with --auto: a candidate that fails parity is never chosen")

    # measure: the source as its users run it, then every candidate that may be chosen
    if options.benchmark and any(c.verdict in ("passed", "mismatch-allowed") for c in candidates):
        one = make_feeds(source.inputs, batch=1 if batch else None, seed=options.seed + 9999)
        info.latency = measure(source.make_timed_call(one), options.timing, label=f"measuring the source ({source.kind})", progress=progress)
        grid = options.threads or (sorted({os.cpu_count() or 1, 1}, reverse=True) if options.auto else [0])
        for c in candidates:
            if c.verdict not in ("passed", "mismatch-allowed"):
                continue
            best: Latency | None = None
            for threads in grid:
                call = _timed_call_for(artifacts[c.name], one, threads, source.output_names)
                figures = measure(call, options.timing, label=f"measuring {c.name} ({threads or 'default'} threads)", threads=threads or None, progress=progress)
                if best is None or figures.p50_ms < best.p50_ms:
                    best = figures
            c.latency = best
            if best and info.latency:
                c.speedup_vs_source = info.latency.p50_ms / best.p50_ms
            if best and best.threads:
                c.recipe = {**c.recipe, "session": {"intra_op_num_threads": best.threads}}
        baseline = next((c for c in candidates if c.name == "fp32" and c.latency), None)
        for c in candidates:
            if baseline and c.latency:
                c.speedup_vs_fp32 = baseline.latency.p50_ms / c.latency.p50_ms  # type: ignore[union-attr]

    chosen = _choose(candidates, options) if options.auto else _single(candidates)
    if chosen is not None and chosen.verdict != "mismatch-allowed":  # that verdict must stay visible
        chosen.verdict = "chosen"

    result = OptimizeResult(
        source=info, mode="auto" if options.auto else "variants", candidates=candidates, chosen=chosen.name if chosen else None,
        hardware=_hardware(), tools=_tools(), warnings=warnings,
    )
    _write(result, candidates, artifacts, chosen, options, source)
    return result


def _raise_baseline_error(errors: dict[str, MlserveError]) -> None:
    """An FP32 baseline that could not be built or run fails with its own error and exit code, not as a parity failure."""
    if "fp32" not in errors:
        return
    carried = copy.copy(errors["fp32"])  # keeps its class, so its own exit code (2, 7...)
    carried.message = f"the FP32 ONNX baseline could not be built, so no candidate can be trusted: {carried.message}"
    carried.args = (carried.message,)
    raise carried


def _choose(candidates: list[Candidate], options: OptimizeOptions) -> Candidate | None:
    fp32 = next((c for c in candidates if c.name == "fp32"), None)
    if fp32 is None or fp32.verdict != "passed":
        why = fp32.reason if fp32 else "it was not built"
        raise ParityError(
            f"the FP32 ONNX baseline does not match the source model ({why}); no candidate can be trusted",
            hint="check the export (--input shapes, unsupported ops) or loosen --tolerance",
            details={"candidates": [c.model_dump(mode="json") for c in candidates]},
        )
    if fp32.latency is None:  # --no-benchmark: nothing proves another variant is faster
        return fp32
    best = fp32
    for c in candidates:
        if c is fp32 or c.verdict != "passed" or c.latency is None:
            continue
        if c.latency.p50_ms > fp32.latency.p50_ms * (1 - options.min_gain):
            c.verdict = "slower"
            c.reason = c.reason or (
                f"not {options.min_gain:.0%} faster than fp32 ({c.latency.p50_ms:.3f} vs {fp32.latency.p50_ms:.3f} ms)"
            )
            continue
        if c.latency.p50_ms < best.latency.p50_ms:  # type: ignore[union-attr]
            best = c
    return best


def _loosen_hint(candidate: Candidate, overrides: list[ToleranceOverride]) -> str:
    """What to pass to accept this failure, for the criterion that actually failed."""
    worst = candidate.parity.worst() if candidate.parity else None
    if worst is None:
        return f"loosen with --tolerance {TOLERANCE_FORMAT} if that error is acceptable, or --allow-mismatch (not recommended)"
    tol = tolerance_for(worst.name, candidate.parity.precision, overrides)  # type: ignore[union-attr]
    checks = set(worst.failed_checks)
    if checks & {"shape", "missing", "nan-inf"}:
        return "no --tolerance accepts a shape difference, a missing output or NaN/Inf the source does not produce; check the export (--input shapes, batch-dependent code)"
    atol = f"{max(tol.atol, worst.max_abs_err * 1.1):.3g}" if "elements" in checks else f"{tol.atol:g}"
    rtol = f"{tol.rtol:g}"
    cosine = f"{min(tol.min_cosine, worst.cosine * 0.999):.6g}" if "cosine" in checks else f"{tol.min_cosine:g}"
    agreement = worst.top1_agreement if worst.top1_agreement is not None else tol.min_top1
    top1 = f"{math.floor(min(tol.min_top1, agreement) * 1000) / 1000:g}" if checks & {"top1", "labels"} else f"{tol.min_top1:g}"
    fields = []
    if "elements" in checks:
        fields.append("ATOL/RTOL")
    if "cosine" in checks:
        fields.append("MIN_COSINE (the 4th field)")
    if checks & {"top1", "labels"}:
        fields.append("MIN_TOP1 (the 5th field)")
        example = f"{worst.name}:{atol}:{rtol}:{cosine}:{top1}"
    elif "cosine" in checks:
        example = f"{worst.name}:{atol}:{rtol}:{cosine}"
    else:
        example = f"{worst.name}:{atol}:{rtol}"
    what = " and ".join(fields) or "the tolerance"
    return f"if that error is acceptable, loosen {what} with --tolerance {TOLERANCE_FORMAT}, e.g. --tolerance '{example}'; or --allow-mismatch (not recommended)"


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
    opts.log_severity_level = 3
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
    for dist in ("mlserve", "torch", "onnx", "onnxruntime", "onnxscript", "scikit-learn", "skl2onnx", "tensorrt"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    return versions


def _write(result: OptimizeResult, candidates: list[Candidate], artifacts: dict[str, Path], chosen: Candidate | None, options: OptimizeOptions, source: LoadedSource) -> None:
    if options.output_dir:
        options.output_dir.mkdir(parents=True, exist_ok=True)
        for c in candidates:
            if c.name not in artifacts:
                continue
            # every candidate that was built is kept; one that failed parity says so in its name
            tag = ".FAILED-PARITY" if c.verdict == "failed-parity" else ""
            suffix = artifacts[c.name].suffix
            target = options.output_dir / f"{_stem(source)}.{c.name.replace(':', '-')}{tag}{suffix}"
            _atomic_copy(artifacts[c.name], target)
            c.path = str(target)
        result.output_dir = str(options.output_dir)
    chosen_path: Path | None = None
    if chosen is not None:
        chosen_path = artifacts[chosen.name]
        if options.output:
            _atomic_copy(chosen_path, options.output)
            result.output = str(options.output)
            chosen_path = options.output
    elif options.output or options.register_as:
        raise UsageError("no candidate was chosen, so nothing can be written to --output or registered")
    if options.report:
        result.report = str(options.report)
        _write_report(result, options.report)  # before registering: a failed registration keeps the report
    if options.register_as and chosen is not None and chosen_path is not None:
        result.registered = _register(options, result, chosen, chosen_path)
        if options.report:
            _write_report(result, options.report)  # now with the registered version


def _write_report(result: OptimizeResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, scratch = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(result.model_dump_json(indent=2) + "\n")
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def _atomic_copy(source: Path, target: Path) -> None:
    """Copy next to the target, then rename: an interrupted run never leaves a half-written artifact."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, scratch = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, scratch)
        os.replace(scratch, target)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def _stem(source: LoadedSource) -> str:
    if source.path:
        return source.path.stem
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in source.location).strip("-") or "model"


def _register(options: OptimizeOptions, result: OptimizeResult, chosen: Candidate, path: Path) -> Registered:
    from mlserve.registry import Registry

    metrics: dict[str, float] = {}
    if chosen.latency:
        metrics["latency_p50_ms"] = chosen.latency.p50_ms
        metrics["latency_p90_ms"] = chosen.latency.p90_ms
    if chosen.speedup_vs_source:
        metrics["speedup_vs_source"] = chosen.speedup_vs_source
    if chosen.parity:
        metrics["parity_max_abs_err"] = max(o.max_abs_err for o in chosen.parity.outputs)
        metrics["parity_min_cosine"] = min(o.cosine for o in chosen.parity.outputs)
        top1 = [o.top1_agreement for o in chosen.parity.outputs if o.top1_agreement is not None]
        if top1:
            metrics["parity_top1_agreement"] = min(top1)
    meta = {
        "optimize": {
            "variant": chosen.name,
            "recipe": chosen.recipe,
            "source": result.source.model_dump(mode="json", include={"kind", "location", "sha256", "registry_model", "registry_version", "exporter"}),
            "tools": result.tools,
            "hardware": result.hardware,
            "parity": chosen.parity.model_dump(mode="json") if chosen.parity else None,
            "candidates": [
                {"name": c.name, "verdict": c.verdict, "p50_ms": c.latency.p50_ms if c.latency else None, "reason": c.reason}
                for c in result.candidates
            ],
        }
    }
    reg = Registry(root=options.registry_root, lock_timeout=options.lock_timeout)
    done = reg.register(options.register_as, path, metrics=metrics, meta=meta)  # type: ignore[arg-type]
    if done.duplicate_of:
        # identical content is never stored twice: the figures and lineage go on the version that holds it
        reg.record_metrics(done.model, done.version, metrics, meta=meta, reason="mlserve optimize: figures of identical content")
        result.warnings.append(
            f"the chosen artifact is identical to {done.model}:{done.duplicate_of}; no new version was created, "
            f"its figures and lineage were recorded on {done.model}:{done.duplicate_of}"
        )
    else:
        result.warnings.extend(done.warnings)
    return Registered(model=done.model, version=str(done.version), sha256=done.sha256, created=done.created, duplicate_of=done.duplicate_of)

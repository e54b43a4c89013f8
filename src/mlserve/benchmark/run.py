"""``mlserve benchmark``: measure models x backends x batch sizes x concurrency, compare, gate, record.

:func:`run_benchmark` is the one entry point the CLI calls. It returns a :class:`BenchmarkReport`
whose ``failures`` list says which gates said no (``--fail-if-slower-than``, ``--fail-unstable``);
the caller decides how to exit (:meth:`BenchmarkReport.raise_for_failures`).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from mlserve._deps import require
from mlserve.benchmark import backends as bk
from mlserve.benchmark.fingerprint import Fingerprint, collect
from mlserve.benchmark.harness import Comparison, LatencyStats, MeasureConfig, Measurement, Stability, compare, measure_callable
from mlserve.errors import CapabilityUnavailableError, GateFailedError, NotFoundError, UsageError
from mlserve.progress import NULL_PROGRESS, Progress

MODEL_SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".pth": "torchscript", ".ts": "torchscript", ".jit": "torchscript", ".pt2": "torch-export"}
STORED_KEYS = {  # registry metric name -> LatencyStats field
    "latency_p50_ms": "median_ms", "latency_mean_ms": "mean_ms", "latency_p90_ms": "p90_ms",
    "latency_p95_ms": "p95_ms", "latency_p99_ms": "p99_ms", "latency_p999_ms": "p999_ms",
    "latency_min_ms": "min_ms", "latency_max_ms": "max_ms", "latency_std_ms": "std_ms",
    "throughput_per_s": "throughput_per_s",
}


# ------------------------------------------------------------------ request and report


class BenchmarkRequest(BaseModel):
    models: list[str] = Field(min_length=1, description="ONNX/TorchScript/.pt2 files or registry references")
    backends: list[str] | None = Field(None, description="None: ort-cpu for ONNX files, torch for torch files")
    batch_sizes: list[int] | None = Field(None, description="None: the model's fixed batch, else 1")
    concurrency: list[int] = Field(default_factory=lambda: [1])
    measure: MeasureConfig = Field(default_factory=MeasureConfig)
    inputs: list[str] = Field(default_factory=list, description="NAME:DIMS[:DTYPE] overrides")
    seed: int = 0
    threads: int | None = Field(None, description="intra-op threads per session (None: the runtime's default)")
    fail_if_slower_than: str | None = Field(None, description="REF:PCT")
    fail_unstable: bool = False
    confidence: float = 0.95
    resamples: int = 2000
    csv_path: Path | None = None
    plot_path: Path | None = None
    record: str | None = Field(None, description="NAME:VERSION to record the first model's figures on")
    registry: Path | None = None
    lock_timeout: float | None = None


class ModelSource(BaseModel):
    text: str
    path: Path
    kind: str = Field(description="onnx, torchscript or torch-export")
    ref: str | None = Field(None, description="NAME:VERSION when it came from the registry")
    stored_metrics: dict[str, float] = Field(default_factory=dict)
    stored_meta: dict[str, Any] = Field(default_factory=dict)


class ResultRow(BaseModel):
    label: str
    role: str = Field(description="'candidate' or 'reference' (the --fail-if-slower-than baseline)")
    model: str
    path: str
    ref: str | None = None
    backend: str
    provider: str
    threads: int | None
    batch_size: int
    concurrency: int
    stats: LatencyStats
    items_per_s: float
    stable: bool
    stability: Stability
    vs_first: Comparison | None = Field(None, description="median ratio against the first row with the same batch and concurrency")
    baseline: str | None = None


class SkippedRun(BaseModel):
    model: str
    backend: str
    why: str = Field(description="'unavailable' (no GPU, no TensorRT ...) or 'not-applicable' (wrong file type)")
    reason: str


class GateCheck(BaseModel):
    candidate: str
    reference: str
    source: str = Field(description="'measured' or 'stored-metrics'")
    candidate_median_ms: float
    reference_median_ms: float
    ratio: float
    ci_low: float | None = None
    ci_high: float | None = None
    limit: float
    passed: bool


class GateResult(BaseModel):
    reference: str
    max_slowdown_pct: float
    checks: list[GateCheck]
    passed: bool


class BenchmarkReport(BaseModel):
    fingerprint: Fingerprint
    config: MeasureConfig
    seed: int
    inputs: dict[str, dict[str, Any]] = Field(description="name -> shape (at the first batch size) and dtype")
    results: list[ResultRow]
    skipped: list[SkippedRun] = Field(default_factory=list)
    gate: GateResult | None = None
    recorded: str | None = None
    csv_path: str | None = None
    plot_path: str | None = None
    failures: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    def failure_message(self) -> str:
        """One line: the first failure, and how many more the report lists."""
        more = len(self.failures) - 1
        return self.failures[0] + (f" (and {more} more failure{'s' if more > 1 else ''} in the report)" if more else "")

    def raise_for_failures(self) -> None:
        if self.failures:
            raise GateFailedError(self.failure_message(), details={"failures": self.failures})


# ------------------------------------------------------------------ parsing


def parse_int_list(text: str, what: str) -> list[int]:
    """``"1,8,64"`` -> [1, 8, 64]; every entry a positive integer."""
    values = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) <= 0:
            raise UsageError(f"bad {what} {text!r}: give positive integers separated by commas, e.g. 1,8,64")
        values.append(int(part))
    return list(dict.fromkeys(values))


def parse_gate(text: str) -> tuple[str, float]:
    """``REF:PCT`` (REF may contain ':' itself, e.g. ``model:3:10``) -> (REF, PCT)."""
    ref, sep, pct_text = text.rpartition(":")
    try:
        pct = float(pct_text.rstrip("%"))
    except ValueError:
        pct = math.nan
    if not sep or not ref or not math.isfinite(pct) or pct < 0:
        raise UsageError(f"bad --fail-if-slower-than {text!r}: expected REF:PCT, e.g. model.onnx:10 or mymodel@production:5")
    return ref, pct


# ------------------------------------------------------------------ sources


def _registry(request: BenchmarkRequest) -> Any:
    from mlserve.registry import Registry

    return Registry(request.registry, lock_timeout=request.lock_timeout)


def _artifact_file(path: Path) -> Path:
    """A registry artifact may be a directory: use its one model file."""
    if path.is_file():
        return path
    found = sorted(p for p in path.rglob("*") if p.suffix in MODEL_SUFFIXES and p.is_file())
    onnx_files = [p for p in found if p.suffix == ".onnx"]
    if len(onnx_files) == 1:
        return onnx_files[0]
    if len(found) == 1:
        return found[0]
    raise UsageError(f"{path} holds {len(found)} model files; cannot tell which one to benchmark")


def _kind(path: Path) -> str:
    """The model's format from its suffix, else from its content (zip: torch; protobuf: ONNX)."""
    kind = MODEL_SUFFIXES.get(path.suffix.lower())
    if kind is not None:
        return kind
    import zipfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        return "torch-export" if any(n.endswith("archive_format") for n in names) else "torchscript"
    onnx = require("onnx", purpose="reading ONNX files")
    try:
        onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf decode errors
        raise UsageError(
            f"{path}: cannot tell the model format (suffix {path.suffix or '(none)'}; expected one of {', '.join(MODEL_SUFFIXES)})"
        ) from exc
    return "onnx"


def resolve_source(text: str, request: BenchmarkRequest) -> ModelSource:
    """An existing path is a file; otherwise a registry reference; otherwise not found."""
    path = Path(text).expanduser()
    if path.exists():
        path = _artifact_file(path) if path.is_dir() else path
        return ModelSource(text=text, path=path, kind=_kind(path))
    looks_like_file = "/" in text or "\\" in text or path.suffix.lower() in MODEL_SUFFIXES
    from mlserve.registry import parse_ref

    if looks_like_file or parse_ref(text) is None:
        raise NotFoundError(f"model file not found: {text}")
    resolved = _registry(request).resolve(text)
    artifact = _artifact_file(Path(resolved.artifact_path))
    return ModelSource(
        text=text, path=artifact, kind=_kind(artifact), ref=f"{resolved.model}:{resolved.version}",
        stored_metrics=dict(resolved.metrics), stored_meta=dict(resolved.meta),
    )


def _backends_for(source: ModelSource, requested: list[str] | None) -> tuple[list[str], list[str]]:
    """(backends to run for this model, backends that do not apply to its file type)."""
    native = bk.ONNX_BACKENDS if source.kind == "onnx" else bk.TORCH_BACKENDS
    if requested is None:
        return [native[0]], []
    return [b for b in requested if b in native], [b for b in requested if b not in native]


# ------------------------------------------------------------------ running


def _input_specs(sources: list[ModelSource], overrides: list[bk.InputSpec]) -> dict[str, list[bk.InputSpec]]:
    """Per model path: its declared ONNX inputs with overrides; torch files borrow the first ONNX model's."""
    per_model: dict[str, list[bk.InputSpec]] = {}
    first_onnx: list[bk.InputSpec] | None = None
    for source in sources:
        if source.kind == "onnx":
            specs = bk.resolve_specs(bk.onnx_input_specs(source.path), overrides)
            per_model[str(source.path)] = specs
            first_onnx = first_onnx or specs
    for source in sources:
        if source.kind != "onnx":
            specs = overrides or first_onnx
            if not specs:
                raise UsageError(f"{source.text} does not declare its inputs: describe them with --input NAME:DIMS:DTYPE")
            per_model[str(source.path)] = list(specs)
    return per_model


def _default_batch(specs: list[bk.InputSpec]) -> int:
    first = specs[0].shape[0] if specs and specs[0].shape else None
    return first if isinstance(first, int) and len(specs[0].shape) > 1 else 1


def _measure_source(
    source: ModelSource,
    role: str,
    backends: list[str],
    specs: list[bk.InputSpec],
    request: BenchmarkRequest,
    progress: Progress,
    skipped: list[SkippedRun],
) -> list[ResultRow]:
    rows: list[ResultRow] = []
    batches = request.batch_sizes or [_default_batch(specs)]
    for backend in backends:
        available, why = bk.backend_available(backend)
        if not available:
            skipped.append(SkippedRun(model=source.text, backend=backend, why="unavailable", reason=why))
            continue
        if backend == "tensorrt" and max(request.concurrency) > 1:
            raise UsageError("the tensorrt backend measures one stream at a time: use --concurrency 1 (or ort-trt)")
        for batch in batches:
            inputs = bk.make_inputs(specs, batch, request.seed)
            runner = bk.make_runner(backend, source.path, inputs, threads=request.threads)
            try:
                for conc in request.concurrency:
                    name = Path(source.text).name if Path(source.text).exists() else source.text
                    label = f"{'reference ' if role == 'reference' else ''}{name} ({backend} b{batch} c{conc})"
                    config = request.measure.model_copy(update={"concurrency": conc})
                    measured: Measurement = measure_callable(runner.call, config, progress=progress, label=label)
                    rows.append(ResultRow(
                        label=label, role=role, model=source.text, path=str(source.path), ref=source.ref,
                        backend=backend, provider=runner.provider, threads=runner.threads, batch_size=batch,
                        concurrency=conc, stats=measured.stats, items_per_s=measured.stats.throughput_per_s * batch,
                        stable=measured.stable, stability=measured.stability,
                    ))
            finally:
                runner.close()
    return rows


def _compare_rows(rows: list[ResultRow], request: BenchmarkRequest) -> None:
    first: dict[tuple[int, int], ResultRow] = {}
    for row in rows:
        key = (row.batch_size, row.concurrency)
        if key not in first:
            first[key] = row
            continue
        base = first[key]
        row.vs_first = _compare(base, row, request)
        row.baseline = base.label


def _compare(a: ResultRow, b: ResultRow, request: BenchmarkRequest) -> Comparison:
    ma = Measurement(stats=a.stats, stable=a.stable, stability=a.stability, warmup_iterations=0, concurrency=a.concurrency)
    mb = Measurement(stats=b.stats, stable=b.stable, stability=b.stability, warmup_iterations=0, concurrency=b.concurrency)
    return compare(ma, mb, confidence=request.confidence, resamples=request.resamples, seed=request.seed)


def _gate_measured(ref_text: str, pct: float, candidates: list[ResultRow], references: list[ResultRow], request: BenchmarkRequest) -> GateResult:
    checks = []
    limit = 1 + pct / 100
    for row in candidates:
        match = [r for r in references if (r.backend, r.batch_size, r.concurrency) == (row.backend, row.batch_size, row.concurrency)]
        match = match or [r for r in references if (r.batch_size, r.concurrency) == (row.batch_size, row.concurrency)]
        if not match:
            continue
        ref = match[0]
        comp = _compare(ref, row, request)
        checks.append(GateCheck(
            candidate=row.label, reference=ref.label, source="measured", candidate_median_ms=row.stats.median_ms,
            reference_median_ms=ref.stats.median_ms, ratio=comp.ratio, ci_low=comp.ci_low, ci_high=comp.ci_high,
            limit=limit, passed=comp.ratio <= limit,
        ))
    return GateResult(reference=ref_text, max_slowdown_pct=pct, checks=checks, passed=all(c.passed for c in checks))


def _stored_median(source: ModelSource, row: ResultRow) -> float | None:
    """The recorded p50 for this row's setup; the plain ``latency_p50_ms`` stands for batch 1, one stream."""
    specific = source.stored_metrics.get(f"{row.backend}.b{row.batch_size}.c{row.concurrency}.latency_p50_ms")
    if specific is not None:
        return specific
    return source.stored_metrics.get("latency_p50_ms") if (row.batch_size, row.concurrency) == (1, 1) else None


def _gate_stored(ref_text: str, pct: float, source: ModelSource, candidates: list[ResultRow]) -> GateResult:
    checks = []
    limit = 1 + pct / 100
    for row in candidates:
        median = _stored_median(source, row)
        if median is None or median <= 0:
            continue
        ratio = row.stats.median_ms / median
        checks.append(GateCheck(
            candidate=row.label, reference=f"{source.ref} (stored latency_p50_ms)", source="stored-metrics",
            candidate_median_ms=row.stats.median_ms, reference_median_ms=median, ratio=ratio, limit=limit,
            passed=ratio <= limit,
        ))
    return GateResult(reference=ref_text, max_slowdown_pct=pct, checks=checks, passed=all(c.passed for c in checks))


def _stored_figures_warning(reference: ModelSource) -> list[str]:
    recorded_by = reference.stored_meta.get("benchmark")
    cpu_then = recorded_by.get("cpu") if isinstance(recorded_by, dict) else None
    now = collect().summary()
    if cpu_then == now:
        return []
    return [f"{reference.ref}'s stored latency was measured on {cpu_then or 'an unrecorded machine'}, not this one ({now})"]


def _gate_failures(gate: GateResult) -> list[str]:
    if not gate.checks:
        return [f"--fail-if-slower-than {gate.reference}: no figure of the reference matches any run's backend,"
                " batch size and concurrency (nothing to compare)"]
    return [
        f"{check.candidate} is {check.ratio - 1:+.1%} vs {check.reference}"
        f" (median {check.candidate_median_ms:.4g} ms vs {check.reference_median_ms:.4g} ms; limit +{gate.max_slowdown_pct:g}%)"
        for check in gate.checks if not check.passed
    ]


def _record_target(request: BenchmarkRequest) -> tuple[str, str] | None:
    """``--record NAME:VERSION``, checked before anything is measured."""
    if request.record is None:
        return None
    from mlserve.registry import parse_ref

    ref = parse_ref(request.record, default_stage=None)
    if ref is None or ref.version is None:
        raise UsageError(f"bad --record {request.record!r}: expected NAME:VERSION")
    _registry(request).resolve(f"{ref.model}:{ref.version}")  # NotFoundError now, not after minutes of measuring
    return ref.model, ref.version


def _record_metrics(request: BenchmarkRequest, target: tuple[str, str], rows: list[ResultRow], fingerprint: Fingerprint) -> str:
    """Every run of the first model under ``BACKEND.bN.cN.`` keys; its first batch-1, one-stream run also
    under the plain keys (``latency_p50_ms`` ...), which the gate and ``promote --require`` read."""
    first_model = rows[0].model
    metrics: dict[str, float] = {}
    plain_done = False
    for row in (r for r in rows if r.model == first_model):
        plain = not plain_done and (row.batch_size, row.concurrency) == (1, 1)
        plain_done = plain_done or plain
        for key, field in STORED_KEYS.items():
            value = float(getattr(row.stats, field))
            metrics[f"{row.backend}.b{row.batch_size}.c{row.concurrency}.{key}"] = value
            if plain:
                metrics[key] = value
    meta = {"benchmark": {
        "cpu": fingerprint.summary(), "model": first_model, "seed": request.seed,
        "packages": fingerprint.packages, "config": request.measure.model_dump(mode="json"),
    }}
    _registry(request).record_metrics(target[0], target[1], metrics, meta=meta, reason="mlserve benchmark")
    return f"{target[0]}:{target[1]}"


def write_csv(path: Path, rows: list[ResultRow]) -> None:
    fields = ["label", "role", "model", "backend", "provider", "threads", "batch_size", "concurrency", "count",
              "min_ms", "mean_ms", "median_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms", "std_ms", "cv",
              "throughput_per_s", "items_per_s", "wall_s", "stable", "ratio_vs_first", "ci_low", "ci_high"]
    partial = path.with_name(f".{path.name}.partial")  # renamed into place at the end: never a half-written file
    try:
        with partial.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            for row in rows:
                stats = row.stats.model_dump()
                writer.writerow({
                    **{k: getattr(row, k) for k in ("label", "role", "model", "backend", "provider", "threads", "batch_size", "concurrency", "items_per_s", "stable")},
                    **{k: stats[k] for k in fields if k in stats},
                    "ratio_vs_first": row.vs_first.ratio if row.vs_first else "",
                    "ci_low": row.vs_first.ci_low if row.vs_first else "",
                    "ci_high": row.vs_first.ci_high if row.vs_first else "",
                })
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise UsageError(f"cannot write CSV to {path}: {exc.strerror or exc}") from exc


def _matplotlib() -> Any:
    return require("matplotlib", purpose="--plot")


def write_plot(path: Path, rows: list[ResultRow]) -> None:
    """Box plots of each row's latency samples (log scale), one line per row."""
    mpl = _matplotlib()
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 1.0 + 0.45 * len(rows)))
    version = tuple(int(part) for part in mpl.__version__.split(".")[:2] if part.isdigit())
    sideways = {"orientation": "horizontal"} if version >= (3, 10) else {"vert": False}  # 'vert' is deprecated in 3.10
    ax.boxplot([r.stats.samples_ms for r in rows], showfliers=False, **sideways)
    ax.set_yticks(range(1, len(rows) + 1), [r.label for r in rows])
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms), whiskers 1.5 IQR")
    ax.invert_yaxis()
    fig.tight_layout()
    partial = path.with_name(f".{path.name}.partial")
    try:
        fig.savefig(partial, dpi=110, format="png")
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise UsageError(f"cannot write plot to {path}: {exc.strerror or exc}") from exc
    finally:
        plt.close(fig)


def _check_output_dirs(request: BenchmarkRequest) -> None:
    for path in (request.csv_path, request.plot_path):
        if path is not None and not path.expanduser().absolute().parent.is_dir():
            raise NotFoundError(f"cannot write {path}: directory {path.parent} does not exist")
    if request.plot_path is not None:
        _matplotlib()  # fail before measuring, not after


def run_benchmark(request: BenchmarkRequest, *, progress: Progress = NULL_PROGRESS) -> BenchmarkReport:
    """Measure every model on every applicable backend, batch size and concurrency level."""
    for backend in request.backends or []:
        if backend not in bk.BACKENDS:
            raise UsageError(f"unknown backend {backend!r}: choose from {', '.join(bk.BACKENDS)}")
    _check_output_dirs(request)
    overrides = [bk.parse_input_override(text) for text in request.inputs]
    gate = parse_gate(request.fail_if_slower_than) if request.fail_if_slower_than else None
    record_target = _record_target(request)

    sources = [resolve_source(text, request) for text in request.models]
    reference: ModelSource | None = None
    if gate is not None:
        reference = resolve_source(gate[0], request)
    use_stored = reference is not None and reference.ref is not None and any(
        key.endswith("latency_p50_ms") for key in reference.stored_metrics)
    measured_sources = sources + ([reference] if reference is not None and not use_stored else [])
    specs = _input_specs(measured_sources, overrides)

    warnings: list[str] = []
    skipped: list[SkippedRun] = []
    rows: list[ResultRow] = []
    plan = []
    for source in sources:
        run, wrong = _backends_for(source, request.backends)
        for backend in wrong:
            skipped.append(SkippedRun(model=source.text, backend=backend, why="not-applicable", reason=f"does not run {source.kind} files"))
        plan.append((source, run))
    if not any(run for _, run in plan):
        raise UsageError("no requested backend can run the given models (ONNX files: ort-*, tensorrt; torch files: torch, torch-compile)")

    for source, run in plan:
        rows += _measure_source(source, "candidate", run, specs[str(source.path)], request, progress, skipped)
    if not rows:
        reasons = "; ".join(f"{s.backend}: {s.reason}" for s in skipped)
        raise CapabilityUnavailableError(f"none of the requested backends can run here ({reasons})")
    for s in skipped:
        if s.why == "unavailable":
            warnings.append(f"skipped {s.backend} for {s.model}: {s.reason}")
    _compare_rows(rows, request)

    failures: list[str] = []
    gate_result: GateResult | None = None
    if gate is not None and reference is not None:
        if use_stored:
            gate_result = _gate_stored(gate[0], gate[1], reference, rows)
            warnings += _stored_figures_warning(reference)
        else:
            used = sorted({r.backend for r in rows}, key=list(bk.BACKENDS).index)
            ref_run = _backends_for(reference, used)[0] or _backends_for(reference, None)[0]
            ref_rows = _measure_source(reference, "reference", ref_run, specs[str(reference.path)], request, progress, [])
            gate_result = _gate_measured(gate[0], gate[1], rows, ref_rows, request)
            rows += ref_rows
        failures += _gate_failures(gate_result)
    unstable = [r.label for r in rows if not r.stable]
    if unstable:
        message = f"unstable measurement: {', '.join(unstable)} (windows disagree; see stability; try a longer --duration)"
        (failures if request.fail_unstable else warnings).append(message)

    fingerprint = collect()
    candidates = [r for r in rows if r.role == "candidate"]
    recorded = _record_metrics(request, record_target, candidates, fingerprint) if record_target else None
    if request.csv_path is not None:
        write_csv(request.csv_path, rows)
    if request.plot_path is not None:
        write_plot(request.plot_path, rows)
    first_specs = specs[str(sources[0].path)]
    first_batch = (request.batch_sizes or [_default_batch(first_specs)])[0]
    return BenchmarkReport(
        fingerprint=fingerprint,
        config=request.measure,
        seed=request.seed,
        inputs={s.name: {"shape": list(bk.concrete_shape(s, first_batch)), "dtype": s.dtype} for s in first_specs},
        results=rows,
        skipped=skipped,
        gate=gate_result,
        recorded=recorded,
        csv_path=str(request.csv_path) if request.csv_path else None,
        plot_path=str(request.plot_path) if request.plot_path else None,
        failures=failures,
        warnings=warnings,
    )


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
from mlserve.benchmark.harness import (
    Comparison,
    LatencyStats,
    MeasureConfig,
    Measurement,
    Stability,
    compare,
    measure_callable,
    measure_interleaved,
    rounds_ratio,
)
from mlserve.errors import CapabilityUnavailableError, GateFailedError, NotFoundError, UsageError
from mlserve.inputs import InputSpec, batch_axis, parse_inputs, resolve
from mlserve.progress import NULL_PROGRESS, Progress

MODEL_SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".pth": "torchscript", ".ts": "torchscript", ".jit": "torchscript", ".pt2": "torch-export",
                  ".engine": "tensorrt-engine", ".plan": "tensorrt-engine"}
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
    inputs: list[str] = Field(default_factory=list, description="--input values (mlserve.inputs grammar)")
    seed: int = 0
    threads: list[int] = Field(default_factory=list, description="intra-op thread counts; every run is measured at each (empty: the usable cores)")
    fail_if_slower_than: str | None = Field(None, description="REF:PCT")
    fail_unstable: bool = False
    confidence: float = 0.95
    resamples: int = 2000
    csv_path: Path | None = None
    samples_csv_path: Path | None = Field(None, description="every latency sample, one CSV line each")
    plot_path: Path | None = None
    record: str | None = Field(None, description="NAME:VERSION to record the first model's figures on")
    registry: Path | None = None
    lock_timeout: float | None = None


class ModelSource(BaseModel):
    text: str
    path: Path
    kind: str = Field(description="onnx, torchscript, torch-export or tensorrt-engine")
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
    vs_first: Comparison | None = Field(None, description="latency ratio against the first row with the same batch, concurrency and threads")
    baseline: str | None = None
    rounds_ms: list[float] = Field(default_factory=list, description="median latency in each interleaved round (empty: measured alone)")


class SkippedRun(BaseModel):
    model: str
    backend: str
    why: str = Field(description="'unavailable' (no GPU, no TensorRT ...) or 'not-applicable' (wrong file type)")
    reason: str


class GateCheck(BaseModel):
    candidate: str
    reference: str
    source: str = Field(description="'measured' (the reference run named in 'reference') or 'stored-metrics' (its recorded figure)")
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
    checks: list[GateCheck] = Field(description="one per candidate run that has a reference figure")
    uncovered: list[str] = Field(default_factory=list, description="candidate runs without any reference figure (a failure)")
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
    samples_csv_path: str | None = None
    plot_path: str | None = None
    measurement: str = Field("", description="how the runs were measured and compared")
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
    native = bk.backends_for_kind(source.kind)
    if requested is None:
        return native[:1], []
    return [b for b in requested if b in native], [b for b in requested if b not in native]


# ------------------------------------------------------------------ running


def _input_specs(sources: list[ModelSource], overrides: list[InputSpec]) -> dict[str, list[InputSpec]]:  # noqa: C901
    """Per model path: its declared ONNX inputs with overrides; torch files borrow the first ONNX model's."""
    per_model: dict[str, list[InputSpec]] = {}
    first_onnx: list[InputSpec] | None = None
    for source in sources:
        if source.kind == "onnx":
            specs = resolve(bk.onnx_input_specs(source.path), overrides, model=source.path.name)
            per_model[str(source.path)] = specs
            first_onnx = first_onnx or specs
    for source in sources:
        if source.kind != "onnx":
            specs = resolve([], overrides, model=source.path.name, allow_new=True) if overrides else first_onnx
            if not specs and source.kind == "tensorrt-engine":
                # an engine declares its inputs, but only TensorRT (with a GPU) can read them; without one
                # the tensorrt backend is skipped as unavailable before any input is needed
                specs = bk.engine_input_specs(source.path) if bk.backend_available("tensorrt")[0] else []
                per_model[str(source.path)] = list(specs)
                continue
            if not specs:
                raise UsageError(f"{source.text} does not declare its inputs: describe them with --input NAME:DIMS:DTYPE")
            per_model[str(source.path)] = list(specs)
    return per_model


def _default_batch(specs: list[InputSpec]) -> int:
    """1 for a model with a batch axis; else the fixed first dimension of its first input (what items/s counts)."""
    if batch_axis(specs):
        return 1
    first = specs[0].shape[0] if specs and specs[0].shape else None
    return first if isinstance(first, int) and len(specs[0].shape or []) > 1 else 1


def _batches(specs: list[InputSpec], request: BenchmarkRequest, text: str) -> list[int]:
    """The batch sizes to run. A model without a batch axis runs as is (its declared or --input shapes)."""
    if not request.batch_sizes:
        return [_default_batch(specs)]
    if not batch_axis(specs) and request.batch_sizes != [_default_batch(specs)]:
        raise UsageError(
            f"{text} has no dynamic batch axis ({', '.join(s.describe() for s in specs)}): it runs at its own shapes",
            hint="drop --batch-size, or give other shapes with --input NAME:DIMS",
        )
    return request.batch_sizes


def _measure_source(
    source: ModelSource,
    role: str,
    backends: list[str],
    specs: list[InputSpec],
    request: BenchmarkRequest,
    progress: Progress,
    skipped: list[SkippedRun],
) -> list[ResultRow]:
    """One model measured run by run (the gate's reference, when it was not measured with the candidates)."""
    rows: list[ResultRow] = []
    batches = _batches(specs, request, source.text)
    for backend in backends:
        if not _runnable(source, backend, request, skipped):
            continue
        from mlserve.optimize.timing import usable_cores

        grid = request.threads or [usable_cores()]
        for batch in batches:
            for threads in grid:
                inputs = bk.make_inputs(specs, batch if batch_axis(specs) else None, request.seed)
                runner = bk.make_runner(backend, source.path, inputs, threads=threads)
                try:
                    for conc in request.concurrency:
                        label = _label(source, role, backend, batch, conc, threads, len(grid) > 1)
                        config = request.measure.model_copy(update={"concurrency": conc})
                        measured: Measurement = measure_callable(runner.call, config, progress=progress, label=label)
                        rows.append(_row(source, role, backend, runner, batch, conc, label, measured))
                finally:
                    runner.close()
    return rows


def _runnable(source: ModelSource, backend: str, request: BenchmarkRequest, skipped: list[SkippedRun]) -> bool:
    """Whether ``backend`` can run here (if not, the skip is recorded); refuses what it can never measure."""
    available, why = bk.backend_available(backend)
    if not available:
        skipped.append(SkippedRun(model=source.text, backend=backend, why="unavailable", reason=why))
        return False
    if backend == "tensorrt" and max(request.concurrency) > 1:
        raise UsageError("the tensorrt backend measures one stream at a time: use --concurrency 1 (or ort-trt)")
    return True


def _label(source: ModelSource, role: str, backend: str, batch: int, conc: int, threads: int | None, show_threads: bool) -> str:
    name = Path(source.text).name if Path(source.text).exists() else source.text
    t = f" t{threads}" if show_threads else ""
    return f"{'reference ' if role == 'reference' else ''}{name} ({backend} b{batch} c{conc}{t})"


def _row(source: ModelSource, role: str, backend: str, runner: bk.Runner, batch: int, conc: int, label: str,
         measured: Measurement, rounds_ms: list[float] | None = None) -> ResultRow:
    return ResultRow(
        label=label, role=role, model=source.text, path=str(source.path), ref=source.ref, backend=backend,
        provider=runner.provider, threads=runner.threads, batch_size=batch, concurrency=conc, stats=measured.stats,
        items_per_s=measured.stats.throughput_per_s * batch, stable=measured.stable, stability=measured.stability,
        rounds_ms=list(rounds_ms or []),
    )


def _measure_candidates(
    plan: list[tuple[ModelSource, list[str], str]],
    specs: dict[str, list[InputSpec]],
    request: BenchmarkRequest,
    progress: Progress,
    skipped: list[SkippedRun],
) -> list[ResultRow]:
    """Every (model, backend) at every batch size, concurrency and thread count; ``plan`` entries are
    (model, backends, role), the role "candidate" or "reference" (a --fail-if-slower-than file). Runs that
    are compared with each other (same batch, threads, one stream) are measured together in interleaved rounds."""
    from mlserve.optimize.timing import usable_cores

    grid = request.threads or [usable_cores()]
    jobs: list[tuple[ModelSource, str, str]] = []
    for source, run, role in plan:
        for backend in run:
            if _runnable(source, backend, request, skipped):
                jobs.append((source, backend, role))
    groups: dict[tuple[int, int], list[tuple[int, ModelSource, str]]] = {}
    roles = {j: role for j, (_, _, role) in enumerate(jobs)}
    order: dict[tuple[int, int, int, int], int] = {}
    for j, (source, backend, _role) in enumerate(jobs):
        for b_index, batch in enumerate(_batches(specs[str(source.path)], request, source.text)):
            for t_index, threads in enumerate(grid):
                groups.setdefault((batch, threads), []).append((j, source, backend))
                order[(j, batch, threads, 0)] = (j * 1000 + b_index) * 1000 + t_index
    keyed: list[tuple[tuple[int, int, int], ResultRow]] = []
    for (batch, threads), members in groups.items():
        runners: list[tuple[int, ModelSource, str, bk.Runner]] = []
        try:
            for j, source, backend in members:
                sp = specs[str(source.path)]
                inputs = bk.make_inputs(sp, batch if batch_axis(sp) else None, request.seed)
                runners.append((j, source, backend, bk.make_runner(backend, source.path, inputs, threads=threads)))
            for c_index, conc in enumerate(request.concurrency):
                labels = [_label(src, roles[j], be, batch, conc, threads, len(grid) > 1) for j, src, be, _ in runners]
                if len(runners) > 1 and conc == 1:
                    inter = measure_interleaved({lab: r.call for lab, (_, _, _, r) in zip(labels, runners)}, request.measure,
                                                progress=progress, label=f"{len(runners)} runs at batch {batch}, {threads} threads, interleaved")
                    for lab, (j, src, be, r) in zip(labels, runners):
                        row = _row(src, roles[j], be, r, batch, conc, lab, inter.measurements[lab], inter.round_medians_ms[lab])
                        keyed.append(((order[(j, batch, threads, 0)], c_index, 0), row))
                    continue
                for lab, (j, src, be, r) in zip(labels, runners):
                    config = request.measure.model_copy(update={"concurrency": conc})
                    measured = measure_callable(r.call, config, progress=progress, label=lab)
                    keyed.append(((order[(j, batch, threads, 0)], c_index, 0), _row(src, roles[j], be, r, batch, conc, lab, measured)))
        finally:
            for *_, r in runners:
                r.close()
    keyed.sort(key=lambda item: (item[0][0] // 1_000_000, item[0][0] % 1_000_000 // 1000, item[0][1], item[0][0] % 1000))
    return [row for _, row in keyed]


def _compare_rows(rows: list[ResultRow], request: BenchmarkRequest) -> None:
    first: dict[tuple[int, int, int | None], ResultRow] = {}
    for row in rows:
        key = (row.batch_size, row.concurrency, row.threads)
        if key not in first:
            first[key] = row
            continue
        base = first[key]
        row.vs_first = _compare(base, row, request)
        row.baseline = base.label


def _compare(a: ResultRow, b: ResultRow, request: BenchmarkRequest) -> Comparison:
    if a.rounds_ms and len(a.rounds_ms) == len(b.rounds_ms):  # measured in the same interleaved rounds
        return rounds_ratio(a.rounds_ms, b.rounds_ms, confidence=request.confidence, resamples=request.resamples, seed=request.seed)
    ma = Measurement(stats=a.stats, stable=a.stable, stability=a.stability, warmup_iterations=0, concurrency=a.concurrency)
    mb = Measurement(stats=b.stats, stable=b.stable, stability=b.stability, warmup_iterations=0, concurrency=b.concurrency)
    return compare(ma, mb, confidence=request.confidence, resamples=request.resamples, seed=request.seed)


def _measured_check(row: ResultRow, references: list[ResultRow], limit: float, request: BenchmarkRequest) -> GateCheck | None:
    """Gate ``row`` against the reference run of the same backend, batch and concurrency (else batch and concurrency)."""
    match = [r for r in references if (r.backend, r.batch_size, r.concurrency, r.threads) == (row.backend, row.batch_size, row.concurrency, row.threads)]
    match = match or [r for r in references if (r.batch_size, r.concurrency, r.threads) == (row.batch_size, row.concurrency, row.threads)]
    if not match:
        return None
    ref = match[0]
    comp = _compare(ref, row, request)
    return GateCheck(
        candidate=row.label, reference=ref.label, source="measured", candidate_median_ms=row.stats.median_ms,
        reference_median_ms=ref.stats.median_ms, ratio=comp.ratio, ci_low=comp.ci_low, ci_high=comp.ci_high,
        limit=limit, passed=comp.ratio <= limit,
    )


class StoredFigure(BaseModel):
    """A recorded ``latency_p50_ms`` of the reference and, as far as it was recorded, how it was measured."""

    key: str
    median_ms: float
    origin: str = Field(description="'benchmark' (mlserve benchmark --record), 'optimize' (optimize --register) or 'unknown'")
    backend: str | None = None
    threads: int | None = Field(None, description="intra-op threads; None: the runtime's default")
    threads_known: bool = False
    machine: str | None = Field(None, description="the machine it was measured on, as recorded")
    same_machine: bool | None = Field(None, description="None: not recorded")


def _ort_default_threads(fingerprint: Fingerprint) -> int | None:
    """What ONNX Runtime uses without an explicit thread count: one thread per physical core."""
    return fingerprint.physical_cores or fingerprint.usable_cores or fingerprint.logical_cores


def _machine_of(origin: str, meta: dict[str, Any], now: Fingerprint) -> tuple[str | None, bool | None]:
    if origin == "benchmark":
        bench = meta.get("benchmark") if isinstance(meta.get("benchmark"), dict) else {}
        cpu = bench.get("cpu")
        if not cpu:
            return None, None
        same = cpu == now.summary()
        if "cpu_model" in bench:  # recorded since the summary gained a structured twin
            same = bench.get("cpu_model") == now.cpu_model and bench.get("logical_cores") == now.logical_cores
        return str(cpu), same
    if origin == "optimize":
        optimize = meta.get("optimize") if isinstance(meta.get("optimize"), dict) else {}
        hardware = optimize.get("hardware") if isinstance(optimize.get("hardware"), dict) else {}
        cpu = hardware.get("cpu")
        if not cpu:
            return None, None
        cores = hardware.get("logical_cores")
        same = cpu == now.cpu_model and (cores is None or cores == now.logical_cores)
        return f"{cpu} ({cores or '?'} logical cores)", same
    return None, None


def _stored_figure(source: ModelSource, row: ResultRow, now: Fingerprint) -> StoredFigure | None:
    """The recorded p50 for this row's setup: ``BACKEND.bN.cN.latency_p50_ms``, else the plain
    ``latency_p50_ms``, which stands for batch 1, one stream (written by ``benchmark --record`` or
    ``optimize --register``), with what is known of how it was measured."""
    metrics, meta = source.stored_metrics, source.stored_meta
    bench = meta.get("benchmark") if isinstance(meta.get("benchmark"), dict) else None
    optimize = meta.get("optimize") if isinstance(meta.get("optimize"), dict) else None
    key = f"{row.backend}.b{row.batch_size}.c{row.concurrency}.latency_p50_ms"
    if key in metrics:
        fig = StoredFigure(key=key, median_ms=metrics[key], origin="benchmark", backend=row.backend)
        if bench is not None and "threads" in bench:
            fig.threads, fig.threads_known = bench["threads"], True
    elif "latency_p50_ms" in metrics and (row.batch_size, row.concurrency) == (1, 1):
        key = "latency_p50_ms"
        fig = StoredFigure(key=key, median_ms=metrics[key], origin="unknown")
        plain = bench.get("plain") if bench is not None else None
        if isinstance(plain, dict) and plain.get("latency_p50_ms", metrics[key]) == metrics[key]:
            # benchmark --record says which run the plain keys came from (unless something wrote them since)
            fig.origin, fig.backend = "benchmark", plain.get("backend")
            fig.threads, fig.threads_known = plain.get("threads"), "threads" in plain
        elif optimize is not None and (bench is None or "plain" in bench):
            # optimize --register times batch 1 on ONNX Runtime (TensorRT for trt-* variants)
            variant = str(optimize.get("variant") or "")
            fig.origin = "optimize"
            fig.backend = "tensorrt" if variant.startswith("trt") else None
            recipe = optimize.get("recipe") if isinstance(optimize.get("recipe"), dict) else {}
            session = recipe.get("session") if isinstance(recipe.get("session"), dict) else {}
            fig.threads, fig.threads_known = session.get("intra_op_num_threads"), not variant.startswith("trt")
        elif bench is not None:  # recorded by an older mlserve: backend and threads unknown
            fig.origin = "benchmark"
    else:
        return None
    fig.machine, fig.same_machine = _machine_of(fig.origin, meta, now)
    return fig


def _unlike(fig: StoredFigure, row: ResultRow, now: Fingerprint) -> str | None:
    """Why the stored figure was not measured like ``row`` (None: like for like as far as recorded)."""
    if fig.backend is not None and fig.backend != row.backend:
        return f"it was measured on {fig.backend}, this run is {row.backend}"
    if fig.origin == "optimize" and fig.backend is None and not row.backend.startswith("ort-"):
        return f"it was measured on ONNX Runtime, this run is {row.backend}"
    if fig.threads_known and row.backend.startswith("ort-"):
        default = _ort_default_threads(now)
        then, here = fig.threads or default, row.threads or default
        if then != here:
            return f"it was measured with {then} intra-op threads, this run with {here}"
    return None


def _stored_check(fig: StoredFigure, source: ModelSource, row: ResultRow, limit: float) -> GateCheck:
    ratio = row.stats.median_ms / fig.median_ms
    return GateCheck(
        candidate=row.label, reference=f"{source.ref} (stored {fig.key})", source="stored-metrics",
        candidate_median_ms=row.stats.median_ms, reference_median_ms=fig.median_ms, ratio=ratio, limit=limit,
        passed=ratio <= limit,
    )


def _run_gate(
    ref_text: str,
    pct: float,
    reference: ModelSource,
    candidates: list[ResultRow],
    reference_specs: Any,
    request: BenchmarkRequest,
    progress: Progress,
    *,
    premeasured: list[ResultRow] | None = None,
    premeasured_skipped: list[SkippedRun] | None = None,
) -> tuple[GateResult, list[ResultRow], list[str]]:
    """Gate every candidate run: against the reference's stored figure for the same setup where there is one
    (registry references), else against the reference's artifact, measured now for the runs that need it.

    Returns the gate, the reference runs measured, and warnings."""
    limit = 1 + pct / 100
    now = collect()
    warnings: list[str] = []
    stored: dict[int, StoredFigure] = {}
    if reference.ref is not None:
        for i, row in enumerate(candidates):
            fig = _stored_figure(reference, row, now)
            if fig is None or not (fig.median_ms > 0 and math.isfinite(fig.median_ms)):
                continue
            why = _unlike(fig, row, now)
            if why is not None:
                warnings.append(f"{reference.ref}'s stored {fig.key} is not comparable with {row.label} ({why}): its artifact was measured instead")
                continue
            stored[i] = fig
    ref_rows: list[ResultRow] = list(premeasured or [])
    ref_skipped: list[SkippedRun] = list(premeasured_skipped or [])
    missing = [row for i, row in enumerate(candidates) if i not in stored]
    if missing and premeasured is None:  # a registry reference without a comparable stored figure: measured after
        specs = reference_specs()
        wanted = list(dict.fromkeys(r.backend for r in missing))
        backends = _backends_for(reference, wanted)[0] or _backends_for(reference, None)[0]
        for batch in dict.fromkeys(r.batch_size for r in missing):
            concs = list(dict.fromkeys(r.concurrency for r in missing if r.batch_size == batch))
            threads = list(dict.fromkeys(r.threads for r in missing if r.batch_size == batch and r.threads))
            sub = request.model_copy(update={"batch_sizes": [batch], "concurrency": concs, "threads": threads or request.threads})
            ref_rows += _measure_source(reference, "reference", backends, specs, sub, progress, ref_skipped)
    checks: list[GateCheck] = []
    uncovered: list[str] = []
    for i, row in enumerate(candidates):
        check = _stored_check(stored[i], reference, row, limit) if i in stored else _measured_check(row, ref_rows, limit, request)
        if check is None:
            uncovered.append(row.label)
        else:
            checks.append(check)
    if uncovered and ref_skipped:  # a capability missing here, not a verdict on the candidate
        reasons = "; ".join(dict.fromkeys(f"{s.backend}: {s.reason}" for s in ref_skipped))
        raise CapabilityUnavailableError(
            f"--fail-if-slower-than {ref_text}: the reference cannot be measured here for {', '.join(uncovered)} ({reasons})")
    used = {id(f): f for f in stored.values()}.values()
    for machine, same in dict.fromkeys((f.machine, f.same_machine) for f in used):
        if same is None:
            warnings.append(f"{reference.ref}'s stored latency was measured on an unrecorded machine, not necessarily this one ({now.summary()})")
        elif not same:
            warnings.append(f"{reference.ref}'s stored latency was measured on {machine}, not this one ({now.summary()})")
    result = GateResult(
        reference=ref_text, max_slowdown_pct=pct, checks=checks, uncovered=uncovered,
        passed=bool(checks) and not uncovered and all(c.passed for c in checks),
    )
    return result, ref_rows, list(dict.fromkeys(warnings))


def _gate_failures(gate: GateResult) -> list[str]:
    failures = []
    if not gate.checks:
        failures.append(f"--fail-if-slower-than {gate.reference}: the reference could not be measured like any run"
                        " (nothing to compare; see the warnings)")
    elif gate.uncovered:
        failures.append(f"--fail-if-slower-than {gate.reference}: no reference figure for {', '.join(gate.uncovered)}"
                        " (the reference could not be measured like these runs; see the warnings)")
    failures += [
        f"{check.candidate} is {check.ratio - 1:+.1%} vs {check.reference}"
        f" (median {check.candidate_median_ms:.4g} ms vs {check.reference_median_ms:.4g} ms; limit +{gate.max_slowdown_pct:g}%)"
        for check in gate.checks if not check.passed
    ]
    return failures


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
    plain_row: ResultRow | None = None
    for row in (r for r in rows if r.model == first_model):
        plain = plain_row is None and (row.batch_size, row.concurrency) == (1, 1)
        plain_row = row if plain else plain_row
        for key, field in STORED_KEYS.items():
            value = float(getattr(row.stats, field))
            metrics[f"{row.backend}.b{row.batch_size}.c{row.concurrency}.{key}"] = value
            if plain:
                metrics[key] = value
    meta = {"benchmark": {
        "cpu": fingerprint.summary(), "cpu_model": fingerprint.cpu_model, "logical_cores": fingerprint.logical_cores,
        "model": first_model, "seed": request.seed, "threads": plain_row.threads if plain_row else rows[0].threads,
        "packages": fingerprint.packages, "config": request.measure.model_dump(mode="json"),
        # which run the plain keys (latency_p50_ms ...) describe; None: this record wrote none
        "plain": {"backend": plain_row.backend, "threads": plain_row.threads, "batch_size": 1, "concurrency": 1,
                  "latency_p50_ms": plain_row.stats.median_ms} if plain_row else None,
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


def write_samples_csv(path: Path, rows: list[ResultRow]) -> None:
    """Every latency sample behind the figures (label, backend, batch, concurrency, threads, index, ms), so that
    percentiles can be audited or recomputed elsewhere."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["label", "role", "backend", "batch_size", "concurrency", "threads", "sample", "latency_ms"])
            for row in rows:
                for i, value in enumerate(row.stats.samples_ms):
                    writer.writerow([row.label, row.role, row.backend, row.batch_size, row.concurrency, row.threads, i, repr(value)])
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise UsageError(f"cannot write samples CSV to {path}: {exc.strerror or exc}") from exc


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
    for path in (request.csv_path, request.samples_csv_path, request.plot_path):
        if path is not None and not path.expanduser().absolute().parent.is_dir():
            raise NotFoundError(f"cannot write {path}: directory {path.parent} does not exist")
    if request.plot_path is not None:
        _matplotlib()  # fail before measuring, not after


def run_benchmark(request: BenchmarkRequest, *, progress: Progress = NULL_PROGRESS) -> BenchmarkReport:
    """Measure every model on every applicable backend, batch size and concurrency level."""
    for backend in request.backends or []:
        bk.get_backend(backend)
    _check_output_dirs(request)
    overrides = parse_inputs(request.inputs, static_batch=True)  # an explicit shape is run exactly
    gate = parse_gate(request.fail_if_slower_than) if request.fail_if_slower_than else None
    record_target = _record_target(request)

    sources = [resolve_source(text, request) for text in request.models]
    reference: ModelSource | None = None
    if gate is not None:
        reference = resolve_source(gate[0], request)
    specs = _input_specs(sources, overrides)

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
        raise UsageError("no requested backend can run the given models (ONNX files: ort-*, tensorrt; torch files: torch, torch-compile;"
                         " TensorRT engines: tensorrt)")
    if reference is not None:  # check the reference's inputs before measuring anything (torch candidates may borrow them)
        try:
            specs = _input_specs(sources + [reference], overrides)
        except UsageError:
            if reference.ref is None:  # a file is always measured
                raise
            # a registry reference may need no measuring (stored figures): complain only if it must be measured

    roles = [(source, run, "candidate") for source, run in plan]
    premeasured: list[ResultRow] | None = None
    ref_skipped: list[SkippedRun] = []
    if reference is not None and reference.ref is None:  # a file reference is always measured: with the candidates, interleaved
        wanted = list(dict.fromkeys(b for _, run in plan for b in run))
        roles.append((reference, _backends_for(reference, wanted)[0] or _backends_for(reference, None)[0], "reference"))
    measured = _measure_candidates(roles, specs, request, progress, skipped)
    rows += [r for r in measured if r.role == "candidate"]
    if reference is not None and reference.ref is None:
        premeasured = [r for r in measured if r.role == "reference"]
        ref_skipped = [s for s in skipped if s.model == reference.text]
        skipped = [s for s in skipped if s.model != reference.text]
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
        ref = reference
        gate_result, ref_rows, gate_warnings = _run_gate(
            gate[0], gate[1], ref, rows, lambda: _input_specs(sources + [ref], overrides)[str(ref.path)], request, progress,
            premeasured=premeasured, premeasured_skipped=ref_skipped)
        rows += ref_rows
        warnings += gate_warnings
        failures += _gate_failures(gate_result)
    unstable = [r.label for r in rows if not r.stable]
    if unstable:
        message = f"unstable measurement: {', '.join(unstable)} (windows disagree; see stability; try a longer --duration)"
        (failures if request.fail_unstable else warnings).append(message)

    fingerprint = collect()
    candidates = [r for r in rows if r.role == "candidate"]
    recorded = None
    if record_target and failures:  # a failed run must never become a later gate's baseline
        warnings.append(f"nothing was recorded on {record_target[0]}:{record_target[1]}: the benchmark failed"
                        f" ({len(failures)} failure{'s' if len(failures) > 1 else ''}, see the error)")
    elif record_target:
        recorded = _record_metrics(request, record_target, candidates, fingerprint)
    if request.csv_path is not None:
        write_csv(request.csv_path, rows)
    if request.samples_csv_path is not None:
        write_samples_csv(request.samples_csv_path, rows)
    if request.plot_path is not None:
        write_plot(request.plot_path, rows)
    first_specs = specs[str(sources[0].path)]
    first_batch = _batches(first_specs, request, sources[0].text)[0]
    return BenchmarkReport(
        fingerprint=fingerprint,
        config=request.measure,
        seed=request.seed,
        inputs={s.name: {"shape": s.concrete_shape(first_batch if batch_axis(first_specs) else None), "dtype": s.dtype} for s in first_specs},
        results=rows,
        skipped=skipped,
        gate=gate_result,
        recorded=recorded,
        csv_path=str(request.csv_path) if request.csv_path else None,
        samples_csv_path=str(request.samples_csv_path) if request.samples_csv_path else None,
        measurement=("runs of the same batch size and thread count, one stream, are measured together in"
                     f" {request.measure.rounds} interleaved rounds; a ratio is the median of the per-round ratios"
                     " with a bootstrap interval over rounds; other runs are measured one after the other"),
        plot_path=str(request.plot_path) if request.plot_path else None,
        failures=failures,
        warnings=warnings,
    )


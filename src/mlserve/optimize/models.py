"""Typed results of ``mlserve optimize`` (rendered as a table or a JSON document by the CLI)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, Field, PlainSerializer

from mlserve.inputs import InputSpec

Figure = Annotated[float, PlainSerializer(lambda v: v if math.isfinite(v) else None, return_type=Optional[float], when_used="json")]
"""A float that is written as null in JSON when it is infinite or NaN (e.g. a relative error against 0)."""

Verdict = Literal["chosen", "passed", "slower", "failed-parity", "skipped", "error", "mismatch-allowed"]


class OutputParity(BaseModel):
    """How one output of a candidate compares with the source model's."""

    name: str
    max_abs_err: Figure
    max_rel_err: Figure
    mean_abs_err: Figure
    cosine: Figure
    rel_l2_err: Figure = Field(0.0, description="||candidate - source|| / ||source|| over the compared elements")
    min_row_cosine: Figure = Field(1.0, description="lowest cosine similarity of one row (sample) whose error exceeds atol")
    mismatched: int = Field(description="elements outside both atol and rtol")
    elements: int
    excluded: int = Field(0, description="elements left out of every figure: padding positions (--padding-mask)")
    nan: int = Field(description="NaN elements in the candidate's output that the source does not have")
    inf: int = Field(description="Inf elements in the candidate's output that the source does not have")
    top1_agreement: Optional[float] = Field(None, description="argmax (or label) agreement, for classifier outputs")
    atol: float
    rtol: float
    passed: bool
    reason: Optional[str] = None
    failed_checks: list[str] = Field(
        default_factory=list,
        description="which criteria failed: shape, missing, labels, nan-inf, elements (atol/rtol), rel-l2, cosine, row-cosine, top1",
    )
    limits: dict[str, float] = Field(default_factory=dict, description="the tolerance applied (defaults of the precision and --tolerance)")


class ParityReport(BaseModel):
    precision: str
    samples: int = Field(description="input rows compared (seeded random plus user data)")
    user_samples: int = 0
    inputs: str = Field("generated", description="what parity was checked on: generated, data (--data only) or both")
    passed: bool
    outputs: list[OutputParity]

    def worst(self) -> Optional[OutputParity]:
        failing = [o for o in self.outputs if not o.passed]
        return failing[0] if failing else None


class Latency(BaseModel):
    p50_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    iterations: int
    threads: Optional[int] = Field(None, description="intra-op threads it ran with (None: the runtime has no such setting)")
    stable: Optional[bool] = Field(None, description="whether its last rounds agreed (see mlserve benchmark)")
    harness: str = Field(description="which measurement loop produced the figures")


class Speedup(BaseModel):
    """Source latency over candidate latency, both at ``threads``, measured in interleaved rounds."""

    ratio: float
    ci_low: float
    ci_high: float
    confidence: float
    rounds: int
    threads: int = Field(description="the candidate's ONNX Runtime intra-op threads")
    source_threads: Optional[int] = Field(description="the source's intra-op threads (None: not settable, e.g. scikit-learn)")
    method: str = "interleaved-rounds"


class MeasurementSetup(BaseModel):
    """How the figures were measured (the report states it so that a ratio can be quoted with its setup)."""

    method: str
    rounds: int
    threads: list[int] = Field(description="thread counts measured; the source and every candidate ran at each")
    batch: Optional[int] = Field(description="rows per call (None: the model's fixed shapes)")
    warmup_s: float
    min_iterations: int
    min_seconds: float
    source_threads: str = Field(description="how the source's threads were set")
    candidate_threads: str = Field(description="how the candidates' threads were set")
    ratio: str = Field(description="how speedups are computed")
    confidence: float


class Candidate(BaseModel):
    name: str
    precision: str
    verdict: Verdict
    reason: Optional[str] = None
    size_bytes: Optional[int] = None
    latency: Optional[Latency] = Field(None, description="at the thread count where this candidate was fastest")
    latency_by_threads: list[Latency] = Field(default_factory=list)
    speedup_vs_source: Optional[float] = Field(None, description="speedup.ratio")
    speedup: Optional[Speedup] = Field(None, description="against the source at the same thread count (that of latency)")
    speedup_vs_fp32: Optional[float] = None
    parity: Optional[ParityReport] = None
    recipe: dict[str, Any] = Field(default_factory=dict)
    path: Optional[str] = Field(None, description="where the artifact was written (--output-dir), else None")


class SourceInfo(BaseModel):
    kind: str = Field(description="onnx, torchscript, torch-export, factory, sklearn")
    location: str = Field(description="the path, factory or registry reference given")
    path: Optional[str] = None
    sha256: Optional[str] = None
    registry_model: Optional[str] = None
    registry_version: Optional[str] = None
    exporter: Optional[str] = Field(None, description="what produced the ONNX graph: dynamo, torchscript, skl2onnx, none (an ONNX source)")
    inputs: list[InputSpec]
    outputs: list[str]
    latency: Optional[Latency] = Field(None, description="at the thread count where it was fastest")
    latency_by_threads: list[Latency] = Field(default_factory=list)


class Registered(BaseModel):
    model: str
    version: str
    sha256: str
    created: bool = Field(True, description="False when identical content was already stored as this version")
    duplicate_of: Optional[str] = Field(None, description="the existing version holding identical content, if any")


class OptimizeResult(BaseModel):
    source: SourceInfo
    mode: Literal["auto", "variants"]
    candidates: list[Candidate]
    chosen: Optional[str] = None
    output: Optional[str] = None
    output_dir: Optional[str] = None
    report: Optional[str] = None
    registered: Optional[Registered] = None
    measurement: Optional[MeasurementSetup] = Field(None, description="how latency and speedups were measured (None: --no-benchmark)")
    hardware: dict[str, Any] = Field(default_factory=dict)
    tools: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)

"""Typed results of planning and analysing an experiment (what ``--json`` prints and the tables show)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, Field

MetricKind = Literal["binary", "continuous"]
Verdict = Literal["ship", "no difference", "inconclusive", "worse", "invalid"]


# ------------------------------------------------------------------------------------------ plan


class VariantSize(BaseModel):
    name: str
    weight: float
    """Share of the traffic planned for this variant (the weights add up to 1)."""
    sample_size: int
    """Exposed units (keys) this variant needs."""


class ExperimentPlan(BaseModel):
    metric: MetricKind
    baseline: float
    """The control's conversion rate (binary) or mean (continuous)."""
    std: Optional[float] = None
    """Standard deviation per unit (continuous metrics), assumed the same in every variant."""
    mde_absolute: float
    """Smallest difference treatment - control the test must detect (sign ignored: the test is two-sided)."""
    mde_relative: Optional[float]
    """The MDE as a fraction of the baseline (None when the baseline is 0)."""
    alpha: float
    """Family-wise false-positive rate asked for."""
    alpha_per_comparison: float
    """alpha divided by the number of comparisons (Bonferroni), or alpha itself with correction 'none'."""
    correction: Literal["bonferroni", "none"]
    comparisons: int
    """Treatments against control, times the number of metrics that will be tested together."""
    power: float
    """Power asked for, for each treatment against control."""
    achieved_power: float
    """Power at the planned sizes (the smallest treatment's, when there are several)."""
    test: str
    """The test the figures assume."""
    variants: list[VariantSize]
    total_sample_size: int
    daily_traffic: Optional[float] = None
    days: Optional[int] = None
    """Whole days until every variant has its sample size, at daily_traffic exposures a day."""
    warnings: list[str] = Field(default_factory=list)


# ------------------------------------------------------------------------------------------ analysis


class SampleRatio(BaseModel):
    """The sample-ratio-mismatch check: were units assigned in the planned proportions?"""

    counts: dict[str, int]
    planned: dict[str, float]
    """Planned share of each variant (adds up to 1)."""
    expected: dict[str, float]
    chi2: float
    df: int
    p_value: float
    threshold: float
    """The check fails when p_value is below this (default 0.001)."""
    passed: bool


class GroupStats(BaseModel):
    variant: str
    n: int
    mean: float
    std: Optional[float]
    """Sample standard deviation (None with fewer than 2 units)."""
    successes: Optional[int] = None
    """Binary metrics: units with outcome 1."""


class Cuped(BaseModel):
    covariate: str
    theta: float
    """Slope of the outcome on the pre-period covariate, pooled over all variants."""
    variance_reduction: float
    """1 - (variance of the adjusted difference / variance of the raw difference)."""


class MannWhitney(BaseModel):
    u: float
    """The treatment's U statistic: pairs (treatment, control) where treatment is larger, plus half the ties."""
    p_value: float
    method: Literal["exact", "normal"]
    auc: float
    """U / (n_treatment * n_control): the probability that a random treatment unit beats a random control unit."""


class Comparison(BaseModel):
    metric: str
    kind: MetricKind
    control: str
    treatment: str
    test: str
    """Which test gave the p-value: 'z' (pooled two-proportion), 'fisher' (exact), 'welch', 'msprt'."""
    control_mean: float
    treatment_mean: float
    absolute_lift: float
    """treatment - control (CUPED-adjusted where a covariate was given)."""
    absolute_ci: Optional[tuple[float, float]]
    relative_lift: Optional[float]
    """treatment / control - 1 (None when the control's mean is 0)."""
    relative_ci: Optional[tuple[float, float]]
    p_value: Optional[float]
    """None when the comparison cannot be tested (no variance, too few units)."""
    p_adjusted: Optional[float] = None
    """Holm-adjusted across every comparison of the analysis."""
    significant: bool = False
    direction: Literal["better", "worse", "none"] = "none"
    """Whether a significant difference is good or bad for the metric ('none': not significant)."""
    lower_is_better: bool = False
    confidence: float
    cuped: Optional[Cuped] = None
    mann_whitney: Optional[MannWhitney] = None
    note: Optional[str] = None


class MetricSummary(BaseModel):
    name: str
    kind: MetricKind
    primary: bool
    lower_is_better: bool
    groups: list[GroupStats]
    missing: int = 0
    """Exposed units without a value, counted as 0 or dropped (per --missing-outcomes)."""


class TreatmentVerdict(BaseModel):
    treatment: str
    verdict: Verdict
    reason: str


class ExperimentAnalysis(BaseModel):
    source: str
    experiment: Optional[str] = None
    control: str
    variants: list[str]
    exposures: int
    """Units (distinct keys) counted, over every variant."""
    excluded_keys: int = 0
    """Keys left out because they could not be counted once (--drop-duplicate-keys)."""
    unmatched_outcomes: int = 0
    """Rows of the outcomes file whose key was never exposed (ignored)."""
    first_exposure: Optional[str] = None
    last_exposure: Optional[str] = None
    sample_ratio: SampleRatio
    metrics: list[MetricSummary]
    comparisons: list[Comparison]
    alpha: float
    sequential: bool
    tau: Optional[float] = None
    """mSPRT mixing standard deviation, in standard deviations of the metric (sequential mode)."""
    margin: Optional[float] = None
    """Absolute margin on the primary metric within which a difference counts as none ('no difference')."""
    verdict: Verdict
    reason: str
    winner: Optional[str] = None
    """The variant to ship (verdict 'ship')."""
    treatments: list[TreatmentVerdict]
    plot_path: Optional[str] = None
    warnings: list[str] = Field(default_factory=list)

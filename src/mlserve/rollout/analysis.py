"""The rollout judge: thresholds (like Flagger) and a canary-versus-stable comparison (like Kayenta).

An :class:`AnalysisSpec` lists metrics as PromQL templates. For one analysis window the judge runs
each template twice over the same time range, once for the canary and once for stable, and decides
per metric:

1. **Threshold** (when ``threshold`` is set): a statistic of the canary's points (``threshold_on``,
   default the median) must stay ``<= threshold`` (``direction: max``, e.g. latency, error rate)
   or ``>= threshold`` (``direction: min``, e.g. success rate). Violated: verdict ``fail``.
2. **Comparison** (when ``compare`` is true): a two-sided Mann-Whitney U test of canary against
   stable points and the Hodges-Lehmann shift ``canary - stable`` with its confidence interval.
   The canary is *High* (or *Low*) when the interval lies wholly above (below) zero **and** the
   estimated shift is larger than the metric's allowance: ``max(tolerance, allowed_increase_pct%
   of |stable median|)`` (``allowed_decrease_pct`` for Low). A shift in the bad direction (up for
   ``max`` metrics, down for ``min`` metrics, either with ``fail_on: either``) gives the verdict
   ``high``/``low``; a significant improvement passes.
3. Fewer than ``min_points`` finite points on a side that a check needs: ``inconclusive``, never a
   pass. A real threshold failure is still reported as ``fail``. Samples too small for a bounded
   interval at ``confidence`` make the comparison ``inconclusive`` too; a ``min_points`` that
   allows such samples for a compared metric is refused when the spec is validated.

With ``AnalysisContext.compare`` false (stable serves no traffic, e.g. at a 100 % step) only
thresholds are checked; a metric that has none is ``skipped`` and left out of the score.

Score (Kayenta): ``passed / all metrics x 100``; a failed critical metric forces 0. The analysis
verdict is ``pass`` at ``>= pass_score``, ``marginal`` at ``>= marginal_score``, else ``fail``.
Missing data can never promote: with an inconclusive metric and nothing failed the verdict is
``inconclusive`` (no score); with failures too it is scored but never better than ``marginal``.

Templates use ``{target}`` (the canary's or stable's workload name), ``{namespace}``, ``{window}``
(the spec's ``window``, for ``rate(...[{window}])``) and ``{model}``; other braces are PromQL's own.

Independent points. A ``rate(x[1m])`` sampled every 15 s shares three quarters of its data with
the next point: such points are not independent, and the rank test's error rate is then far above
its nominal level. The judge samples every :meth:`AnalysisSpec.sample_interval` (the larger of
``step`` and ``window``), so each point covers its own stretch of time, and it starts one
``window`` plus one ``scrape_interval`` after the traffic of the step started (:meth:`AnalysisSpec.warmup`),
so no point mixes in the previous step's traffic. ``min_range()`` is the shortest pause that gives
every metric its ``min_points`` that way; ``points_in(pause)`` is what a pause gives.

Query errors. A Prometheus query that fails (unreachable, 5xx) is retried every ``step``; after more
than ``consecutive_error_limit`` failures in a row (4, like Argo Rollouts) the step fails as an
infrastructure error. A query error is never a pass.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlserve.errors import NotFoundError, UsageError

PLACEHOLDERS = ("target", "namespace", "window", "model")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

Direction = Literal["max", "min"]
MetricVerdict = Literal["pass", "high", "low", "inconclusive", "fail", "skipped"]
AnalysisVerdict = Literal["pass", "marginal", "fail", "inconclusive"]


def parse_duration(text: str) -> timedelta:
    """A duration in the rollout grammar (:mod:`mlserve.rollout.durations`: ``15s``, ``1m30s``, ``1.5s``) as a timedelta."""
    from mlserve.rollout.durations import seconds

    return timedelta(seconds=seconds(text))


def render_query(template: str, **values: str) -> str:
    """Fill ``{target}``-style placeholders and leave PromQL's own braces alone."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            return match.group(0)
        # Values go inside PromQL string literals: escape what would end the literal.
        return str(values[name]).replace("\\", "\\\\").replace('"', '\\"')

    return _PLACEHOLDER.sub(substitute, template)


class MetricSpec(BaseModel):
    """One metric of an analysis: a PromQL template and how to judge its values."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Name shown in reports.")
    query: str = Field(min_length=1, description="PromQL template returning ONE series; placeholders {target} {namespace} {window} {model}.")
    direction: Direction = Field(description="'max': lower is better and the value must stay <= threshold; 'min': higher is better, >= threshold.")
    threshold: float | None = Field(default=None, description="Limit for the canary's value (see direction); None: no threshold check.")
    threshold_on: Literal["median", "mean", "last", "worst"] = Field(
        default="median", description="Which statistic of the canary's points is held to the threshold ('worst': max for direction max, min for min)."
    )
    compare: bool = Field(default=True, description="Compare canary against stable (Mann-Whitney + Hodges-Lehmann).")
    fail_on: Literal["worse", "either"] = Field(
        default="worse", description="'worse': only a shift in the bad direction fails; 'either': any significant shift fails."
    )
    allowed_increase_pct: float = Field(default=10.0, ge=0, description="A significant increase smaller than this % of the stable median still passes.")
    allowed_decrease_pct: float = Field(default=10.0, ge=0, description="A significant decrease smaller than this % of the stable median still passes.")
    tolerance: float = Field(default=0.0, ge=0, description="A significant shift up to this absolute amount still passes (for metrics whose stable median is ~0).")
    critical: bool = Field(default=False, description="A failure of this metric fails the whole analysis (score 0).")
    min_points: int = Field(default=10, ge=1, description="Fewer finite points than this on a side: inconclusive. Points are "
                                                         "one per sample interval (the larger of step and window), so they are independent.")

    @field_validator("query")
    @classmethod
    def _known_placeholders(cls, query: str) -> str:
        unknown = sorted({m for m in _PLACEHOLDER.findall(query) if m not in PLACEHOLDERS})
        if unknown:
            raise ValueError(f"unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
        return query

    @model_validator(mode="after")
    def _checks_something(self) -> "MetricSpec":
        if self.threshold is None and not self.compare:
            raise ValueError(f"metric {self.name!r} checks nothing: set a threshold or compare: true")
        return self


class AnalysisSpec(BaseModel):
    """What the judge measures and the limits of its verdict."""

    model_config = ConfigDict(extra="forbid")

    metrics: list[MetricSpec] = Field(min_length=1)
    step: str = Field(default="15s", description="Query resolution; points are taken every max(step, window), and "
                                                 "failed queries retried every step.")
    window: str = Field(default="1m", description="Value of {window} in the templates, e.g. rate(x[{window}]).")
    scrape_interval: str = Field(default="15s", description="Prometheus's scrape interval for these series: a new "
                                                             "workload's first rate point needs one scrape more than the window.")
    consecutive_error_limit: int = Field(default=4, ge=0, description="Failed queries in a row tolerated before the step fails.")
    pass_score: float = Field(default=95.0, ge=0, le=100)
    marginal_score: float = Field(default=75.0, ge=0, le=100)
    confidence: float = Field(default=0.95, gt=0, lt=1, description="Confidence of the shift's interval.")

    @field_validator("step", "window", "scrape_interval")
    @classmethod
    def _duration(cls, value: str) -> str:
        if parse_duration(value) <= timedelta(0):
            raise ValueError("must be longer than zero")
        return value

    def sample_interval(self) -> timedelta:
        """One point per this much time: the rate windows of consecutive points do not overlap."""
        return max(parse_duration(self.step), parse_duration(self.window))

    def warmup(self) -> timedelta:
        """How long after the traffic starts the first point's window lies wholly in it."""
        return parse_duration(self.window) + parse_duration(self.scrape_interval)

    def points_in(self, seconds: float) -> int:
        """Points per metric and side that a range of ``seconds`` (from when its traffic started) gives."""
        usable = seconds - self.warmup().total_seconds()
        if usable < 0:
            return 0
        return int(usable // self.sample_interval().total_seconds() + 1e-9) + 1

    @model_validator(mode="after")
    def _consistent(self) -> "AnalysisSpec":
        if self.marginal_score > self.pass_score:
            raise ValueError(f"marginal_score ({self.marginal_score:g}) must not exceed pass_score ({self.pass_score:g})")
        names = [m.name for m in self.metrics]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"metric names must be unique, repeated: {', '.join(duplicates)}")
        from mlserve.rollout.stats import smallest_bounded_sample

        smallest = smallest_bounded_sample(self.confidence)
        for i, metric in enumerate(self.metrics):
            if metric.compare and metric.min_points < smallest:
                raise _FieldError(
                    ("metrics", i, "min_points"),
                    f"{metric.min_points} point(s) per side cannot give a bounded {self.confidence:.4g} confidence "
                    f"interval for the comparison of {metric.name!r}; use min_points >= {smallest} (or a lower confidence)",
                )
        return self

    def min_range(self) -> timedelta:
        """The shortest analysis range (from when the step's traffic started) that gives every metric its ``min_points``.

        The warm-up (window + scrape interval) plus ``min_points - 1`` sample intervals. A rollout
        refuses up front a pause shorter than this: the judge could only say "inconclusive".
        """
        most = max(m.min_points for m in self.metrics)
        return self.warmup() + self.sample_interval() * max(most - 1, 0)


class _FieldError(ValueError):
    """A problem found by a model-level check that belongs to one field (``loc``), e.g. ``metrics.0.min_points``."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


def _spec_error(source: str, exc: ValidationError) -> UsageError:
    """One line naming every problem, unknown keys (typos) first, separated by "; "."""
    problems = []
    for e in exc.errors():
        cause = (e.get("ctx") or {}).get("error")
        if isinstance(cause, _FieldError):
            loc, msg = cause.loc, cause.message
        else:
            loc, msg = e["loc"], e["msg"]
        problems.append((e["type"] != "extra_forbidden", [str(part) for part in loc], msg))
    problems.sort(key=lambda p: p[0])  # stable: unknown keys first, the rest in pydantic's order
    text = "; ".join(f"{'.'.join(loc) or '(top level)'}: {msg}" for _, loc, msg in problems)
    return UsageError(f"{source}: {text}", details={"errors": [{"loc": loc, "msg": msg} for _, loc, msg in problems]})


def analysis_from_dict(doc: Any, *, source: str = "analysis", selector: str | None = None) -> AnalysisSpec:
    """Validate a parsed analysis document; a ``defaults:`` mapping adds the ready-made checks.

    ``defaults: {}`` (or with :func:`default_analysis` arguments such as ``min_success_rate``)
    puts the success-rate and p99-latency checks before the file's own ``metrics``. ``selector``:
    the ``defaults``' selector when the file sets none (``--target local``: the server's variants).
    """
    if not isinstance(doc, dict):
        raise UsageError(f"{source}: expected a mapping with a 'metrics' list, got {type(doc).__name__}")
    doc = dict(doc)
    defaults = doc.pop("defaults", None)
    try:
        if defaults is not None:
            if not isinstance(defaults, dict):
                raise UsageError(f"{source}: defaults: expected a mapping of default_analysis() options")
            unknown = sorted(set(defaults) - set(DEFAULT_OPTIONS))
            if unknown:
                raise UsageError(f"{source}: defaults: unknown option(s) {', '.join(unknown)}; known: {', '.join(DEFAULT_OPTIONS)}")
            if selector is not None:
                defaults = {"selector": selector, **defaults}
            base = default_analysis(**defaults)
            own = doc.pop("metrics", None) or []
            merged = {**base.model_dump(exclude={"metrics"}), **doc}
            merged["metrics"] = [m.model_dump() for m in base.metrics] + list(own)
            return AnalysisSpec.model_validate(merged)
        return AnalysisSpec.model_validate(doc)
    except ValidationError as exc:
        raise _spec_error(source, exc) from exc


def load_analysis(path: str | Path, *, selector: str | None = None) -> AnalysisSpec:
    """Read an analysis file (YAML, or JSON by its ``.json`` suffix); errors name the file and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise NotFoundError(f"analysis file {path} does not exist", hint="check the --analysis path") from exc
    except OSError as exc:
        raise UsageError(f"cannot read analysis file {path}: {exc.strerror or exc}") from exc
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    else:
        from mlserve._deps import require

        yaml_mod = require("ruamel.yaml", purpose="reading the analysis file")
        try:
            doc = yaml_mod.YAML(typ="safe", pure=True).load(text)
        except yaml_mod.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
            raise UsageError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from exc
    return analysis_from_dict(doc, source=str(path), selector=selector)


DEFAULT_OPTIONS = (
    "selector",
    "requests_metric",
    "code_label",
    "error_codes",
    "latency_histogram",
    "min_success_rate",
    "max_p99_seconds",
    "min_points",
    "critical",
    "step",
    "window",
    "pass_score",
    "marginal_score",
    "confidence",
    "scrape_interval",
    "consecutive_error_limit",
)


def default_analysis(
    *,
    selector: str = 'namespace="{namespace}",deployment="{target}"',
    requests_metric: str = "http_requests_total",
    code_label: str = "code",
    error_codes: str = "5..",
    latency_histogram: str = "http_request_duration_seconds",
    min_success_rate: float = 0.99,
    max_p99_seconds: float = 0.5,
    min_points: int = 10,
    critical: bool = True,
    **spec_overrides: Any,
) -> AnalysisSpec:
    """The common case: request success rate (``>= min_success_rate``) and p99 latency.

    * ``selector``: label matchers that pick one side's series (``{target}`` is the canary's or
      stable's Deployment name, ``{namespace}`` its namespace); e.g. ``service="{target}"`` or
      ``pod=~"{target}-[a-z0-9]+-[a-z0-9]+"`` for kubelet-discovered pods.
    * ``requests_metric``: a request counter with a status-code label ``code_label``; codes that
      match the regex ``error_codes`` are failures.
    * ``latency_histogram``: a Prometheus histogram in seconds (its ``_bucket`` series is used).

    Success rate: ``1 - errors/total`` where no errors at all count as 0 (an all-failing canary
    must not look like "no data"); no traffic at all gives no point. The p99 is
    ``histogram_quantile(0.99, ...)`` of the summed bucket rates. Any other keyword goes to
    :class:`AnalysisSpec` (``step``, ``window``, ``pass_score``...).
    """
    sel = selector
    success = (
        f'1 - ((sum(rate({requests_metric}{{{sel},{code_label}=~"{error_codes}"}}[{{window}}])) or vector(0))'
        f" / sum(rate({requests_metric}{{{sel}}}[{{window}}])))"
    )
    p99 = f"histogram_quantile(0.99, sum by (le) (rate({latency_histogram}_bucket{{{sel}}}[{{window}}])))"
    metrics = [
        MetricSpec(
            name="success-rate",
            query=success,
            direction="min",
            threshold=min_success_rate,
            # A ratio near 1: a percentage of it makes no sense; half a percentage point is noise.
            allowed_increase_pct=0.0,
            allowed_decrease_pct=0.0,
            tolerance=0.005,
            critical=critical,
            min_points=min_points,
        ),
        MetricSpec(
            name="latency-p99",
            query=p99,
            direction="max",
            threshold=max_p99_seconds,
            allowed_increase_pct=10.0,
            tolerance=0.001,  # 1 ms
            critical=critical,
            min_points=min_points,
        ),
    ]
    try:
        return AnalysisSpec(metrics=metrics, **spec_overrides)
    except ValidationError as exc:
        raise _spec_error("default analysis", exc) from exc


class AnalysisContext(BaseModel):
    """Who is compared and over which time range (both sides over the same range)."""

    canary: str
    stable: str
    namespace: str
    model: str
    start: datetime
    end: datetime
    # False when stable serves no traffic in the range (a 100 % step): comparisons are skipped,
    # thresholds still apply, and a comparison-only metric is reported as "skipped" (not scored).
    compare: bool = True
    # True (a rollout step): the range starts when the step's traffic started, so the first
    # window + scrape interval are skipped. False (``analyze``): the range is used as given.
    warmup: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> "AnalysisContext":
        if _aware(self.end) <= _aware(self.start):
            raise ValueError("end must be after start")
        return self


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


class MetricResult(BaseModel):
    name: str
    verdict: MetricVerdict
    reason: str
    critical: bool
    direction: Direction
    queries: dict[str, str]  # side -> the PromQL actually sent
    canary_points: int
    stable_points: int
    dropped_points: int = 0  # NaN/Inf values left out (e.g. 0/0 when a side had no traffic)
    canary_median: float | None = None
    stable_median: float | None = None
    threshold: float | None = None
    threshold_value: float | None = None  # the canary statistic held to the threshold
    threshold_verdict: Literal["pass", "fail", "inconclusive"] | None = None
    comparison: Literal["pass", "high", "low", "inconclusive"] | None = None  # None: not compared
    mann_whitney_u: float | None = None
    p_value: float | None = None
    shift: float | None = None  # Hodges-Lehmann estimate of canary - stable
    shift_low: float | None = None  # its confidence interval (None: unbounded at this sample size)
    shift_high: float | None = None
    allowance: float | None = None  # how large a significant shift may be and still pass


class AnalysisResult(BaseModel):
    verdict: AnalysisVerdict
    score: float | None  # None when inconclusive
    reason: str
    metrics: list[MetricResult]
    start: datetime
    end: datetime
    pass_score: float
    marginal_score: float
    warnings: list[str] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def summary_lines(self) -> list[str]:
        """Plain-text lines for people: the verdict, then one line per metric (no markup)."""
        score = "-" if self.score is None else f"{self.score:.0f}"
        lines = [f"verdict: {self.verdict} (score {score}; pass >= {self.pass_score:g}, marginal >= {self.marginal_score:g}): {self.reason}"]
        for m in self.metrics:
            flag = " [critical]" if m.critical else ""
            lines.append(
                f"  {m.name}{flag}: {m.verdict}, canary {_fmt(m.canary_median)} ({m.canary_points} pts), "
                f"stable {_fmt(m.stable_median)} ({m.stable_points} pts): {m.reason}"
            )
        return lines


def _statistic(values: list[float], how: str, direction: Direction) -> float:
    from mlserve.rollout.stats import median

    if how == "median":
        return float(median(values))  # type: ignore[arg-type]
    if how == "mean":
        return sum(values) / len(values)
    if how == "last":
        return values[-1]
    return max(values) if direction == "max" else min(values)


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.6g}"


def judge_metric(metric: MetricSpec, canary: list[float], stable: list[float], *, confidence: float) -> MetricResult:
    """Judge one metric from finite canary and stable values (no Prometheus involved)."""
    from mlserve.rollout import stats

    result = MetricResult(
        name=metric.name,
        verdict="pass",
        reason="",
        critical=metric.critical,
        direction=metric.direction,
        queries={},
        canary_points=len(canary),
        stable_points=len(stable),
        canary_median=stats.median(canary),
        stable_median=stats.median(stable),
        threshold=metric.threshold,
    )
    reasons: list[str] = []
    enough_canary = len(canary) >= metric.min_points
    worse = False  # the comparison found a significant shift in a direction that fails

    if metric.threshold is not None:
        if not enough_canary:
            result.threshold_verdict = "inconclusive"
            reasons.append(f"canary has {len(canary)} point(s), {metric.min_points} needed")
        else:
            value = _statistic(canary, metric.threshold_on, metric.direction)
            result.threshold_value = value
            ok = value <= metric.threshold if metric.direction == "max" else value >= metric.threshold
            result.threshold_verdict = "pass" if ok else "fail"
            sign = "<=" if metric.direction == "max" else ">="
            if not ok:
                reasons.append(f"canary {metric.threshold_on} {value:.6g} is not {sign} {metric.threshold:g}")

    if metric.compare:
        if not enough_canary or len(stable) < metric.min_points:
            result.comparison = "inconclusive"
            if enough_canary or metric.threshold is None:
                reasons.append(
                    f"comparison needs {metric.min_points} point(s) per side, canary has {len(canary)}, stable has {len(stable)}"
                )
        else:
            a, b = stats.limit_pairs(canary, stable)
            mw = stats.mann_whitney(a, b)
            hl = stats.hodges_lehmann(a, b, confidence)
            result.mann_whitney_u, result.p_value = mw.u, mw.p_value
            result.shift, result.shift_low, result.shift_high = hl.estimate, hl.low, hl.high
            if hl.low is None or hl.high is None:
                # Too few points for an interval at this confidence: nothing can be concluded, and
                # "no significant shift" would let any regression through.
                result.comparison = "inconclusive"
                reasons.append(
                    f"comparison: {len(a)} canary and {len(b)} stable point(s) are too few for a bounded {confidence:.4g} "
                    f"confidence interval; use min_points >= {stats.smallest_bounded_sample(confidence)}"
                )
            else:
                base = abs(result.stable_median or 0.0)
                up = max(metric.tolerance, metric.allowed_increase_pct / 100.0 * base)
                down = max(metric.tolerance, metric.allowed_decrease_pct / 100.0 * base)
                above = hl.low is not None and hl.low > 0 and hl.estimate > up
                below = hl.high is not None and hl.high < 0 and -hl.estimate > down
                result.comparison = "high" if above else "low" if below else "pass"
                result.allowance = up if hl.estimate >= 0 else down
                worse = (above or below) and (
                    metric.fail_on == "either" or (above and metric.direction == "max") or (below and metric.direction == "min")
                )
                if worse:
                    reasons.append(
                        f"canary is {'higher' if above else 'lower'} than stable by {abs(hl.estimate):.6g} "
                        f"({confidence:.0%} CI {_fmt(hl.low)}..{_fmt(hl.high)}, p={mw.p_value:.3g}, allowance {result.allowance:.6g})"
                    )

    if result.threshold_verdict == "fail":
        result.verdict = "fail"
    elif worse:
        result.verdict = result.comparison  # type: ignore[assignment]
    elif "inconclusive" in (result.threshold_verdict, result.comparison):
        result.verdict = "inconclusive"
    else:
        result.verdict = "pass"
    if not reasons:
        parts = []
        if result.threshold_verdict == "pass":
            sign = "<=" if metric.direction == "max" else ">="
            parts.append(f"canary {metric.threshold_on} {result.threshold_value:.6g} {sign} {metric.threshold:g}")
        if result.comparison == "pass":
            parts.append("no significant shift from stable")
        elif result.comparison in ("high", "low"):
            parts.append(f"canary significantly {'higher' if result.comparison == 'high' else 'lower'}, an improvement")
        reasons = parts or ["ok"]
    result.reason = "; ".join(reasons)
    return result


def score_analysis(spec: AnalysisSpec, metrics: list[MetricResult]) -> tuple[AnalysisVerdict, float | None, str]:
    """Kayenta's scoring: passed/all x 100, critical failure forces 0, inconclusive never passes."""
    metrics = [m for m in metrics if m.verdict != "skipped"]
    if not metrics:
        return "inconclusive", None, "no metric could be judged (comparisons are off and no metric has a threshold)"
    failed = [m for m in metrics if m.verdict in ("fail", "high", "low")]
    inconclusive = [m for m in metrics if m.verdict == "inconclusive"]
    critical = [m for m in failed if m.critical]
    if critical:
        return "fail", 0.0, f"critical metric(s) failed: {', '.join(m.name for m in critical)}"
    if inconclusive and not failed:
        return "inconclusive", None, f"not enough data for: {', '.join(m.name for m in inconclusive)}"
    score = 100.0 * sum(m.verdict == "pass" for m in metrics) / len(metrics)
    failed_names = ", ".join(m.name for m in failed) or "none"
    if score >= spec.pass_score and not inconclusive:
        return "pass", score, f"score {score:.0f} >= {spec.pass_score:g}" + (f" (failed: {failed_names})" if failed else "")
    if score >= spec.marginal_score:
        why = f"not enough data for {', '.join(m.name for m in inconclusive)}" if score >= spec.pass_score else f"failed: {failed_names}"
        return "marginal", score, f"score {score:.0f}, marginal ({why})"
    return "fail", score, f"score {score:.0f} < {spec.marginal_score:g}; failed: {failed_names}"


class RangeQuerier(Protocol):
    """What the judge needs from Prometheus (:class:`~mlserve.rollout.prometheus.PrometheusClient` has it)."""

    def query_range(self, promql: str, start: datetime, end: datetime, step: str) -> list[tuple[float, float]]: ...


def _skipped(metric: MetricSpec) -> MetricResult:
    return MetricResult(
        name=metric.name,
        verdict="skipped",
        reason="comparison-only metric skipped: comparisons are off for this range (stable serves no traffic)",
        critical=metric.critical,
        direction=metric.direction,
        queries={},
        canary_points=0,
        stable_points=0,
    )


def judge(spec: AnalysisSpec, ctx: AnalysisContext, prometheus: RangeQuerier) -> AnalysisResult:
    """Query every metric for canary and stable over ``ctx``'s range and give the verdict.

    ``prometheus`` is a :class:`~mlserve.rollout.prometheus.PrometheusClient` (or any
    :class:`RangeQuerier`). Its :class:`~mlserve.errors.InfrastructureError` and
    :class:`~mlserve.errors.UsageError` propagate: an unreachable Prometheus is not a verdict.
    """
    warnings: list[str] = []
    start, end = _aware(ctx.start) + (spec.warmup() if ctx.warmup else timedelta(0)), _aware(ctx.end)
    sample = spec.sample_interval()
    from mlserve.rollout.durations import prometheus_duration

    step_param = prometheus_duration(sample.total_seconds())
    span = max(end - start, timedelta(0))
    possible = int(span / sample) + 1 if end >= start else 0
    needed = max(m.min_points for m in spec.metrics)
    if possible < needed:
        warnings.append(
            f"the analysis range gives at most {possible} independent point(s) per side (one every "
            f"{step_param} after a {spec.warmup().total_seconds():g}s warm-up) but a metric needs {needed}: "
            f"lengthen the pause (>= {spec.min_range().total_seconds():g}s) or lower min_points"
        )
    if end <= start:
        start = end - sample  # nothing usable: still ask, so that "no data" is what the result says
    results: list[MetricResult] = []
    for metric in spec.metrics:
        if metric.compare and not ctx.compare:
            if metric.threshold is None:
                results.append(_skipped(metric))
                continue
            metric = metric.model_copy(update={"compare": False})
        sides = ["canary", "stable"] if metric.compare else ["canary"]
        queries = {
            side: render_query(
                metric.query,
                target=ctx.canary if side == "canary" else ctx.stable,
                namespace=ctx.namespace,
                window=prometheus_duration(parse_duration(spec.window).total_seconds()),
                model=ctx.model,
            )
            for side in sides
        }
        values: dict[str, list[float]] = {"canary": [], "stable": []}
        dropped = 0
        for side, promql in queries.items():
            points = prometheus.query_range(promql, start, end, step_param)
            finite = [v for _, v in points if math.isfinite(v)]
            dropped += len(points) - len(finite)
            values[side] = finite
        result = judge_metric(metric, values["canary"], values["stable"], confidence=spec.confidence)
        result.queries = queries
        result.dropped_points = dropped
        if dropped:
            warnings.append(f"{metric.name}: {dropped} NaN/Inf point(s) left out (a side without traffic gives 0/0)")
        results.append(result)
    verdict, score, reason = score_analysis(spec, results)
    return AnalysisResult(
        verdict=verdict,
        score=score,
        reason=reason,
        metrics=results,
        start=start,
        end=end,
        pass_score=spec.pass_score,
        marginal_score=spec.marginal_score,
        warnings=warnings,
    )


def analyze(
    *,
    canary: str,
    stable: str,
    namespace: str | None = None,
    model: str = "",
    analysis_file: str | Path | None = None,
    duration: str = "10m",
    end: datetime | None = None,
    prometheus_url: str | None = None,
    timeout: float = 10,
) -> AnalysisResult:
    """Dry-run the judge on the last ``duration`` (ending at ``end``, default now) without a rollout.

    The analysis comes from ``analysis_file`` or :func:`default_analysis`; the Prometheus URL and
    namespace from the flag, ``MLSERVE_PROMETHEUS_URL`` / ``MLSERVE_NAMESPACE``, the config file or
    their defaults.
    """
    from mlserve import config
    from mlserve.rollout.prometheus import PrometheusClient

    spec = load_analysis(analysis_file) if analysis_file is not None else default_analysis()
    try:
        span = parse_duration(duration)
    except ValueError as exc:
        raise UsageError(f"--duration: {exc}") from exc
    if span <= timedelta(0):
        raise UsageError("--duration must be longer than zero")
    finish = _aware(end) if end is not None else datetime.now(timezone.utc)
    ctx = AnalysisContext(
        canary=canary,
        stable=stable,
        namespace=config.resolve("rollout.namespace", namespace),
        model=model,
        start=finish - span,
        end=finish,
    )
    with PrometheusClient(config.resolve("rollout.prometheus_url", prometheus_url), timeout=timeout) as client:
        return judge(spec, ctx, client)

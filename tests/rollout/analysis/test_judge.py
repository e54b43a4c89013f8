"""The judge's rules on fixed samples: per-metric verdicts, Kayenta scoring, inconclusive never passing."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlserve.rollout.analysis import (
    AnalysisContext,
    AnalysisSpec,
    MetricSpec,
    default_analysis,
    judge,
    judge_metric,
    render_query,
    score_analysis,
)

START = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


class RecordedSeries:
    """A stand-in for PrometheusClient that answers from recorded series, keyed by the rendered query."""

    def __init__(self, series: dict[str, list[float]]) -> None:
        self.series = series
        self.calls: list[tuple[str, datetime, datetime, str]] = []

    def query_range(self, promql, start, end, step):
        self.calls.append((promql, start, end, step))
        return [(START.timestamp() + 15 * i, v) for i, v in enumerate(self.series.get(promql, []))]


def ctx(**kw) -> AnalysisContext:
    doc = dict(canary="web-canary", stable="web", namespace="prod", model="fraud", start=START, end=START + timedelta(minutes=15))
    doc.update(kw)
    return AnalysisContext(**doc)


def noisy(center: float, n: int = 60, spread: float = 0.01, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [center + rng.uniform(-spread, spread) for _ in range(n)]


def latency(**kw) -> MetricSpec:
    doc = dict(name="latency", query='lat{deployment="{target}",ns="{namespace}"}', direction="max", threshold=0.5, min_points=20)
    doc.update(kw)
    return MetricSpec(**doc)


def test_templates_fill_both_sides_over_the_same_range():
    spec = AnalysisSpec(metrics=[latency()], window="2m")
    prom = RecordedSeries({})
    judge(spec, ctx(), prom)
    assert [c[0] for c in prom.calls] == ['lat{deployment="web-canary",ns="prod"}', 'lat{deployment="web",ns="prod"}']
    # one point per rate window (2m > the 15s step): consecutive points share no data
    assert {(c[1], c[2], c[3]) for c in prom.calls} == {(START, START + timedelta(minutes=15), "2m")}
    # in a rollout the range starts when the step's traffic did: the first window + scrape interval are skipped
    prom = RecordedSeries({})
    judge(spec, ctx(warmup=True), prom)
    assert {(c[1], c[3]) for c in prom.calls} == {(START + timedelta(minutes=2, seconds=15), "2m")}


def test_render_query_leaves_promql_braces_and_escapes_quotes():
    text = render_query('rate(x{a="{target}",m="{model}"}[{window}]) or vector(0)', target='we"b', model="m", window="1m")
    assert text == 'rate(x{a="we\\"b",m="m"}[1m]) or vector(0)'


def test_healthy_canary_passes_with_score_100():
    spec = AnalysisSpec(metrics=[latency()])
    prom = RecordedSeries({'lat{deployment="web-canary",ns="prod"}': noisy(0.1, seed=1), 'lat{deployment="web",ns="prod"}': noisy(0.1, seed=2)})
    result = judge(spec, ctx(), prom)
    assert (result.verdict, result.score) == ("pass", 100.0)
    metric = result.metrics[0]
    assert metric.verdict == "pass" and metric.threshold_verdict == "pass" and metric.comparison == "pass"
    assert metric.canary_points == metric.stable_points == 60
    assert metric.shift_low <= metric.shift <= metric.shift_high
    assert metric.queries == {"canary": 'lat{deployment="web-canary",ns="prod"}', "stable": 'lat{deployment="web",ns="prod"}'}


def test_significantly_higher_latency_is_high_even_under_the_threshold():
    result = judge_metric(latency(), noisy(0.2, seed=1), noisy(0.1, seed=2), confidence=0.95)
    assert result.threshold_verdict == "pass"
    assert (result.verdict, result.comparison) == ("high", "high")
    assert result.shift == pytest.approx(0.1, abs=0.01)
    assert "higher than stable" in result.reason


def test_a_shift_inside_the_allowance_passes():
    # +5% is significant with these tight samples but below allowed_increase_pct = 10
    result = judge_metric(latency(), noisy(0.105, spread=0.001, seed=1), noisy(0.1, spread=0.001, seed=2), confidence=0.95)
    assert result.shift_low > 0  # significant...
    assert result.verdict == "pass"  # ...but tolerated
    strict = judge_metric(latency(allowed_increase_pct=2), noisy(0.105, spread=0.001, seed=1), noisy(0.1, spread=0.001, seed=2), confidence=0.95)
    assert strict.verdict == "high"


def test_absolute_tolerance_covers_a_stable_median_of_zero():
    errors = latency(name="errors", threshold=None, tolerance=0.002)
    small = judge_metric(errors, noisy(0.001, spread=0.0001, seed=1), [0.0] * 60, confidence=0.95)
    assert small.shift_low > 0  # significant...
    assert small.verdict == small.comparison == "pass"  # ...but within 0.002
    big = judge_metric(errors, noisy(0.01, spread=0.0001, seed=1), [0.0] * 60, confidence=0.95)
    assert big.verdict == "high"


def test_an_improvement_passes_unless_fail_on_either():
    better = noisy(0.05, seed=1)
    assert judge_metric(latency(), better, noisy(0.1, seed=2), confidence=0.95).verdict == "pass"
    either = judge_metric(latency(fail_on="either"), better, noisy(0.1, seed=2), confidence=0.95)
    assert (either.verdict, either.comparison) == ("low", "low")


def test_lower_success_rate_is_low_and_below_threshold_is_fail():
    success = MetricSpec(name="success", query="s", direction="min", threshold=0.9, allowed_decrease_pct=0, tolerance=0.005, min_points=20)
    low = judge_metric(success, noisy(0.95, spread=0.001, seed=1), noisy(0.999, spread=0.0005, seed=2), confidence=0.95)
    assert (low.verdict, low.threshold_verdict) == ("low", "pass")
    failed = judge_metric(success, noisy(0.5, seed=1), noisy(0.999, spread=0.0005, seed=2), confidence=0.95)
    assert (failed.verdict, failed.threshold_verdict, failed.comparison) == ("fail", "fail", "low")
    assert "is not >= 0.9" in failed.reason


@pytest.mark.parametrize("how,expected", [("median", 0.15), ("mean", 3.95 / 21), ("last", 0.6), ("worst", 0.6)])
def test_threshold_statistic(how, expected):
    values = [0.1] * 10 + [0.15] + [0.2] * 8 + [0.6] * 2  # 21 points
    metric = latency(threshold_on=how, compare=False, threshold=0.3)
    result = judge_metric(metric, values, [], confidence=0.95)
    assert result.threshold_value == pytest.approx(expected)
    assert result.verdict == ("pass" if expected <= 0.3 else "fail")


def test_too_few_points_is_inconclusive_never_pass():
    result = judge_metric(latency(min_points=50), noisy(0.1, n=49), noisy(0.1, n=60), confidence=0.95)
    assert (result.verdict, result.threshold_verdict, result.comparison) == ("inconclusive", "inconclusive", "inconclusive")
    assert "49 point(s), 50 needed" in result.reason
    stable_short = judge_metric(latency(min_points=50), noisy(0.1, n=60), noisy(0.1, n=10), confidence=0.95)
    assert (stable_short.verdict, stable_short.threshold_verdict) == ("inconclusive", "pass")
    assert "stable has 10" in stable_short.reason


def test_a_sample_too_small_for_a_bounded_interval_is_inconclusive_never_pass():
    """The reviewer's repro: 2 points per side at 95 % have no interval, so a 100x regression must not pass."""
    metric = MetricSpec(name="lat", query='sum(x{a="{target}"})', direction="max", compare=True, min_points=2)
    result = judge_metric(metric, [100.0, 100.0], [1.0, 1.0], confidence=0.95)
    assert (result.verdict, result.comparison) == ("inconclusive", "inconclusive")
    assert (result.shift, result.shift_low, result.shift_high) == (99.0, None, None)
    assert result.reason == ("comparison: 2 canary and 2 stable point(s) are too few for a bounded 0.95 confidence interval; "
                             "use min_points >= 4")
    # A threshold that passes does not turn the unbounded comparison into a pass either...
    with_threshold = judge_metric(metric.model_copy(update={"threshold": 1000.0}), [100.0, 100.0], [1.0, 1.0], confidence=0.95)
    assert (with_threshold.verdict, with_threshold.threshold_verdict, with_threshold.comparison) == ("inconclusive", "pass", "inconclusive")
    # ... and the analysis is inconclusive (no score), not a pass.
    spec = AnalysisSpec.model_construct(metrics=[metric], step="15s", window="1m", pass_score=95.0, marginal_score=75.0, confidence=0.95)
    assert score_analysis(spec, [with_threshold])[:2] == ("inconclusive", None)
    # One canary point against 200 stable ones: its rank among 201 points is an exact test (P = 1/201 per rank),
    # so the exact distribution does bound the interval, and a point far above every stable one is "high".
    one = judge_metric(metric.model_copy(update={"min_points": 1}), [5.0], noisy(1.0, n=200), confidence=0.95)
    assert one.comparison == "high" and one.shift_low is not None
    # At the smallest workable size the interval exists and a clear regression is caught.
    four = judge_metric(metric.model_copy(update={"min_points": 4}), [100.0, 101.0, 102.0, 103.0], [1.0, 2.0, 3.0, 4.0],
                        confidence=0.95)
    assert (four.verdict, four.shift_low, four.shift_high) == ("high", 96.0, 102.0)


def test_a_threshold_failure_is_reported_even_without_stable_data():
    result = judge_metric(latency(), noisy(0.9), [], confidence=0.95)
    assert (result.verdict, result.comparison) == ("fail", "inconclusive")


def test_no_data_at_all_is_inconclusive_overall():
    spec = default_analysis(min_points=10)
    result = judge(spec, ctx(), RecordedSeries({}))
    assert result.verdict == "inconclusive" and result.score is None
    assert {m.verdict for m in result.metrics} == {"inconclusive"}
    assert "not enough data for: success-rate, latency-p99" == result.reason


def test_nan_points_are_dropped_and_counted():
    values = noisy(0.1, n=30, seed=1) + [math.nan] * 5 + [math.inf]
    prom = RecordedSeries({"lat-web-canary": values, "lat-web": noisy(0.1, n=30, seed=2)})
    spec = AnalysisSpec(metrics=[latency(query="lat-{target}")])
    result = judge(spec, ctx(), prom)
    assert result.metrics[0].canary_points == 30
    assert result.metrics[0].dropped_points == 6
    assert result.verdict == "pass"
    assert any("6 NaN/Inf" in w for w in result.warnings)


def _spec(n_metrics: int, **kw) -> AnalysisSpec:
    return AnalysisSpec(metrics=[latency(name=f"m{i}", query=f"q{i}-{{target}}") for i in range(n_metrics)], **kw)


def _series(n_metrics: int, bad: set[int] = frozenset(), missing: set[int] = frozenset()) -> RecordedSeries:
    series = {}
    for i in range(n_metrics):
        if i in missing:
            continue
        series[f"q{i}-web"] = noisy(0.1, seed=2 * i)
        series[f"q{i}-web-canary"] = noisy(0.9 if i in bad else 0.1, seed=2 * i + 1)
    return RecordedSeries(series)


@pytest.mark.parametrize(
    "n,bad,missing,verdict,score",
    [
        (20, {3}, set(), "pass", 95.0),  # 19/20 passed: Kayenta's pass limit
        (10, {3}, set(), "marginal", 90.0),
        (4, {0}, set(), "marginal", 75.0),
        (4, {0, 1}, set(), "fail", 50.0),
        (4, set(), {2}, "inconclusive", None),  # nothing failed, something unknown
        (20, {3}, {5}, "marginal", 90.0),  # a failure and an unknown: scored, never a pass
        (40, {3}, {5}, "marginal", 95.0),  # would pass on score alone, but data is missing
    ],
)
def test_scoring(n, bad, missing, verdict, score):
    result = judge(_spec(n), ctx(), _series(n, bad, missing))
    assert (result.verdict, result.score) == (verdict, score)


def test_a_failed_critical_metric_forces_zero():
    spec = AnalysisSpec(metrics=[latency(name=f"m{i}", query=f"q{i}-{{target}}", critical=(i == 3)) for i in range(20)])
    result = judge(spec, ctx(), _series(20, bad={3}))
    assert (result.verdict, result.score) == ("fail", 0.0)
    assert result.reason == "critical metric(s) failed: m3"


def test_pass_and_marginal_limits_are_configurable():
    result = judge(_spec(4, pass_score=75, marginal_score=50), ctx(), _series(4, bad={0}))
    assert (result.verdict, result.score) == ("pass", 75.0)


def test_a_range_too_short_for_min_points_warns_with_the_fix():
    spec = default_analysis()  # 10 independent points, one per 1m window, after 1m + 15s of warm-up: 10m15s
    assert spec.min_range() == timedelta(minutes=10, seconds=15)
    assert spec.points_in(spec.min_range().total_seconds()) == 10
    assert spec.points_in(spec.min_range().total_seconds() - 1) == 9
    result = judge(spec, ctx(end=START + timedelta(minutes=2), warmup=True), RecordedSeries({}))
    assert result.verdict == "inconclusive"
    assert any("at most 1 independent point(s)" in w and ">= 615s" in w for w in result.warnings), result.warnings


def test_result_is_json_ready():
    import json

    result = judge(_spec(2), ctx(), _series(2, bad={1}))
    doc = json.loads(json.dumps(result.model_dump(mode="json"), allow_nan=False))
    assert doc["verdict"] == "marginal" or doc["verdict"] == "fail"
    assert doc["metrics"][1]["verdict"] == "fail"
    assert doc["metrics"][1]["queries"]["canary"] == "q1-web-canary"


def test_context_end_must_follow_start():
    with pytest.raises(ValueError, match="end must be after start"):
        ctx(end=START)


def test_without_comparison_thresholds_still_judge_and_compare_only_metrics_are_skipped():
    spec = AnalysisSpec(metrics=[latency(), latency(name="shape", query="shape-{target}", threshold=None)])
    prom = RecordedSeries({'lat{deployment="web-canary",ns="prod"}': noisy(0.9, seed=1), 'lat{deployment="web",ns="prod"}': noisy(0.1, seed=2)})
    result = judge(spec, ctx(compare=False), prom)
    assert [c[0] for c in prom.calls] == ['lat{deployment="web-canary",ns="prod"}']  # stable is not even queried
    first, shape = result.metrics
    assert (first.verdict, first.threshold_verdict, first.comparison) == ("fail", "fail", None)
    assert shape.verdict == "skipped"
    assert (result.verdict, result.score) == ("fail", 0.0)  # 0 of 1 scored metrics passed
    prom.series['lat{deployment="web-canary",ns="prod"}'] = noisy(0.1, seed=1)
    assert (judge(spec, ctx(compare=False), prom).verdict, judge(spec, ctx(compare=False), prom).score) == ("pass", 100.0)


def test_nothing_to_judge_without_comparison_is_inconclusive():
    spec = AnalysisSpec(metrics=[latency(threshold=None)])
    result = judge(spec, ctx(compare=False), RecordedSeries({}))
    assert (result.verdict, result.score) == ("inconclusive", None)
    assert result.metrics[0].verdict == "skipped"


@settings(max_examples=200, deadline=None)
@given(
    verdicts=st.lists(st.sampled_from(["pass", "high", "low", "inconclusive", "fail", "skipped"]), min_size=1, max_size=12),
    critical=st.lists(st.booleans(), min_size=12, max_size=12),
    pass_score=st.floats(50, 100),
)
def test_scoring_invariants(verdicts, critical, pass_score):
    from mlserve.rollout.analysis import MetricResult, score_analysis

    spec = AnalysisSpec(metrics=[latency()], pass_score=pass_score, marginal_score=50)
    metrics = [
        MetricResult(name=f"m{i}", verdict=v, reason="", critical=critical[i], direction="max", queries={}, canary_points=0, stable_points=0)
        for i, v in enumerate(verdicts)
    ]
    verdict, score, _ = score_analysis(spec, metrics)
    scored = [v for v in verdicts if v != "skipped"]
    failed_critical = any(v in ("fail", "high", "low") and critical[i] for i, v in enumerate(verdicts))
    if verdict == "pass":  # only with every scored metric known and the score reached
        assert "inconclusive" not in scored and score >= pass_score and not failed_critical
    if failed_critical:
        assert (verdict, score) == ("fail", 0.0)
    if "inconclusive" in scored and not failed_critical:
        assert verdict in ("inconclusive", "marginal", "fail")
    if not scored:
        assert verdict == "inconclusive"
    if score is not None and not failed_critical:
        assert score == pytest.approx(100 * scored.count("pass") / len(scored))

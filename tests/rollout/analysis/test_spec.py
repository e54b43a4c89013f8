"""Analysis files: YAML and JSON, the ready-made checks, and errors that name the file and the field."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from mlserve import exitcodes
from mlserve.errors import NotFoundError, UsageError
from mlserve.rollout.analysis import AnalysisSpec, default_analysis, load_analysis, parse_duration, render_query

YAML = """\
# judge for the fraud model
step: 30s
window: 2m
pass_score: 90
metrics:
  - name: error-rate
    query: sum(rate(errors_total{svc="{target}"}[{window}])) / sum(rate(requests_total{svc="{target}"}[{window}]))
    direction: max
    threshold: 0.01
    tolerance: 0.002
    critical: true
    min_points: 20
  - name: gpu-memory
    query: max(gpu_mem_bytes{pod=~"{target}-.*", namespace="{namespace}"})
    direction: max
    compare: true
"""


def test_yaml_file(tmp_path):
    path = tmp_path / "analysis.yaml"
    path.write_text(YAML)
    spec = load_analysis(path)
    assert (spec.step, spec.window, spec.pass_score, spec.marginal_score) == ("30s", "2m", 90.0, 75.0)
    assert [m.name for m in spec.metrics] == ["error-rate", "gpu-memory"]
    first, second = spec.metrics
    assert (first.direction, first.threshold, first.tolerance, first.critical, first.min_points) == ("max", 0.01, 0.002, True, 20)
    assert (second.threshold, second.compare, second.critical, second.min_points) == (None, True, False, 10)
    # warm-up (2m window + 15s scrape) then 19 more points, one per 2m window (the step of 30s would overlap them)
    assert spec.min_range() == timedelta(seconds=120 + 15 + 120 * 19)


def test_json_file(tmp_path):
    path = tmp_path / "analysis.json"
    path.write_text(json.dumps({"metrics": [{"name": "p", "query": "x{a=\"{target}\"}", "direction": "min", "threshold": 0.99}]}))
    spec = load_analysis(path)
    assert spec.metrics[0].threshold == 0.99 and spec.step == "15s"


def test_defaults_key_adds_the_ready_made_checks(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text(
        "defaults:\n  selector: 'service=\"{target}\"'\n  min_success_rate: 0.995\n  min_points: 10\n"
        "window: 30s\n"
        "metrics:\n  - {name: queue, query: 'max(queue{service=\"{target}\"})', direction: max, threshold: 100}\n"
    )
    spec = load_analysis(path)
    assert [m.name for m in spec.metrics] == ["success-rate", "latency-p99", "queue"]
    assert spec.window == "30s"
    assert spec.metrics[0].threshold == 0.995 and spec.metrics[0].min_points == 10
    assert 'service="{target}",code=~"5.."' in spec.metrics[0].query


@pytest.mark.parametrize(
    "text,message",
    [
        ("metrics: []\n", "a.yaml: metrics: List should have at least 1 item"),
        ("metrics:\n  - {name: a, query: q, direction: up}\n", "a.yaml: metrics.0.direction: Input should be 'max' or 'min'"),
        ("metrics:\n  - {name: a, query: q, direction: max, threshhold: 1}\n", "a.yaml: metrics.0.threshhold: Extra inputs are not permitted"),
        ("metrics:\n  - {name: a, query: 'x{svc=\"{service}\"}', direction: max}\n", "a.yaml: metrics.0.query: Value error, unknown placeholder(s) {service}"),
        ("step: 15 seconds\nmetrics:\n  - {name: a, query: q, direction: max}\n", "a.yaml: step: Value error, not a duration: '15 seconds'"),
        ("metrics:\n  - {name: a, query: q, direction: max, compare: false}\n", "a.yaml: metrics.0: Value error, metric 'a' checks nothing"),
        ("pass_score: 70\nmetrics:\n  - {name: a, query: q, direction: max}\n", "a.yaml: (top level): Value error, marginal_score (75) must not exceed pass_score (70)"),
        ("metrics:\n  - {name: a, query: q, direction: max}\n  - {name: a, query: r, direction: max}\n", "metric names must be unique, repeated: a"),
        ("- 1\n- 2\n", "a.yaml: expected a mapping with a 'metrics' list, got list"),
        ("metrics: [\n", "a.yaml: not valid YAML at line 2"),
        ("defaults: {colour: red}\nmetrics: []\n", "a.yaml: defaults: unknown option(s) colour"),
    ],
)
def test_errors_name_the_file_and_field(tmp_path, text, message):
    path = tmp_path / "a.yaml"
    path.write_text(text)
    with pytest.raises(UsageError) as info:
        load_analysis(path)
    assert message in str(info.value)
    assert "\n" not in info.value.message


def test_missing_file_and_bad_json(tmp_path):
    # A file that does not exist is "not found" (exit 3, as the README's table says), not a usage error.
    with pytest.raises(NotFoundError, match=r"analysis file .*nope.yaml does not exist") as info:
        load_analysis(tmp_path / "nope.yaml")
    assert info.value.exit_code == exitcodes.NOT_FOUND == 3
    bad = tmp_path / "a.json"
    bad.write_text("{")
    with pytest.raises(UsageError, match=r"a.json: not valid JSON: .* line 1 column 2"):
        load_analysis(bad)


def test_default_analysis_queries_and_overrides():
    spec = default_analysis(
        selector='app="{target}"', requests_metric="reqs", code_label="status", latency_histogram="lat", max_p99_seconds=0.25, step="5s"
    )
    success, p99 = spec.metrics
    assert success.query == '1 - ((sum(rate(reqs{app="{target}",status=~"5.."}[{window}])) or vector(0)) / sum(rate(reqs{app="{target}"}[{window}])))'
    assert p99.query == 'histogram_quantile(0.99, sum by (le) (rate(lat_bucket{app="{target}"}[{window}])))'
    assert (success.direction, success.threshold, success.critical) == ("min", 0.99, True)
    assert (p99.direction, p99.threshold) == ("max", 0.25)
    assert spec.step == "5s"
    assert render_query(p99.query, target="web", window="1m") == 'histogram_quantile(0.99, sum by (le) (rate(lat_bucket{app="web"}[1m])))'
    with pytest.raises(UsageError, match="default analysis: step"):
        default_analysis(step="soon")


def test_parse_duration():
    assert parse_duration("1m30s") == timedelta(seconds=90)
    assert parse_duration("500ms") == timedelta(milliseconds=500)
    assert parse_duration("2h") == timedelta(hours=2)
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_one_duration_grammar_for_options_and_analysis_files():
    """The analysis file and the command line read durations the same way; PromQL gets integer units."""
    from mlserve.rollout.durations import parse_duration as option_duration
    from mlserve.rollout.durations import prometheus_duration

    for text, seconds in (("1.5s", 1.5), ("1m30s", 90.0), ("500ms", 0.5), ("90", 90.0), ("1.5m", 90.0), ("1w", 604800.0)):
        assert option_duration(text, what="--pause") == seconds
        assert parse_duration(text) == timedelta(seconds=seconds)
    assert [prometheus_duration(v) for v in (60, 1.5, 90, 3600, 0.25)] == ["1m", "1500ms", "90s", "1h", "250ms"]
    spec = default_analysis(window="1.5s", step="1.5s", scrape_interval="0.5s", min_points=4)
    assert spec.sample_interval() == timedelta(seconds=1.5)
    with pytest.raises(UsageError, match="bad --pause '1.5 m'"):
        option_duration("1.5 m", what="--pause")


def test_spec_round_trips_through_json():
    spec = default_analysis(min_points=5)
    assert AnalysisSpec.model_validate_json(spec.model_dump_json()) == spec


def test_every_problem_is_shown_unknown_keys_first(tmp_path):
    """A typo such as `treshold` must not hide behind another error ("and 1 more problem(s)")."""
    path = tmp_path / "a.yaml"
    path.write_text("step: soon\nmetrics:\n  - name: x\n    query: up\n    treshold: 1\n")
    with pytest.raises(UsageError) as info:
        load_analysis(path)
    message = info.value.message
    assert "\n" not in message and "more problem" not in message
    assert message.startswith(f"{path}: metrics.0.treshold: Extra inputs are not permitted; ")
    assert "; step: Value error, not a duration: 'soon'" in message
    assert "; metrics.0.direction: Field required" in message
    assert [e["loc"] for e in info.value.details["errors"]] == [["metrics", "0", "treshold"], ["metrics", "0", "direction"], ["step"]]


@pytest.mark.parametrize("confidence,smallest", [(0.95, 4), (0.99, 5), (0.999, 7)])
def test_min_points_too_small_for_a_bounded_interval_is_refused(tmp_path, confidence, smallest):
    """At 95 % two points per side can never bound the shift: refused at load time, naming the field and the fix.

    By hand, with the exact distribution the smallest two-sided p-value of n vs n is 2 / C(2n, n), which must not
    exceed 1 - confidence. 95 %: n = 3 gives 2/20 = 0.1, n = 4 gives 2/70 = 0.029. 99 %: n = 4 gives 0.029,
    n = 5 gives 2/252 = 0.0079. 99.9 %: n = 6 gives 2/924 = 0.0022, n = 7 gives 2/3432 = 0.00058.
    """
    path = tmp_path / "a.yaml"
    metric = "  - {name: lat, query: 'sum(x{a=\"{target}\"})', direction: max, min_points: %d}\n"
    path.write_text(f"confidence: {confidence}\nmetrics:\n" + metric % (smallest - 1))
    with pytest.raises(UsageError) as info:
        load_analysis(path)
    assert info.value.message == (
        f"{path}: metrics.0.min_points: {smallest - 1} point(s) per side cannot give a bounded {confidence:g} confidence "
        f"interval for the comparison of 'lat'; use min_points >= {smallest} (or a lower confidence)"
    )
    path.write_text(f"confidence: {confidence}\nmetrics:\n" + metric % smallest)
    assert load_analysis(path).metrics[0].min_points == smallest
    # Without a comparison a threshold needs no interval: one point is enough.
    path.write_text("metrics:\n  - {name: lat, query: up, direction: max, threshold: 1, compare: false, min_points: 1}\n")
    assert load_analysis(path).metrics[0].min_points == 1
    with pytest.raises(UsageError, match="default analysis: metrics.0.min_points: 3 point"):
        default_analysis(min_points=3)

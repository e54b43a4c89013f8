"""The judge against a real Prometheus scraping a local exporter with healthy, degraded and absent canaries.

One Prometheus (scrape every 1s) and one exporter serve all tests of this module; the wait for data
(about 40 s: the judge takes one independent point per 3 s rate window) is paid once.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from helpers.prometheus import TrafficProfile, WorkloadExporter, iter_lines, requires_prometheus, start_prometheus

from mlserve.errors import InfrastructureError, UsageError
from mlserve.rollout.analysis import AnalysisContext, analysis_from_dict, analyze, default_analysis, judge
from mlserve.rollout.prometheus import PrometheusClient

pytestmark = [requires_prometheus, pytest.mark.prometheus, pytest.mark.slow]

NAMESPACE = "prod"
HEALTHY = TrafficProfile(rate=200, error_ratio=0.002, latency_min=0.010, latency_max=0.040)
DEGRADED = TrafficProfile(rate=200, error_ratio=0.15, latency_min=0.150, latency_max=0.450)
BROKEN = TrafficProfile(rate=50, error_ratio=1.0)  # answers nothing but 500s
MIN_POINTS = 10


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    workloads = {"web": HEALTHY, "web-canary": HEALTHY, "web-degraded": DEGRADED, "web-broken": BROKEN}
    with WorkloadExporter(workloads, namespace=NAMESPACE, seed=5) as exporter:
        with start_prometheus([exporter.target], tmp_path_factory.mktemp("prometheus")) as prom:
            start = datetime.now(timezone.utc)
            # every side has enough independent points: the judge takes one per 3s window (rate needs 2 scrapes in it)
            for name in workloads:
                prom.wait_for_points(f'sum(rate(http_requests_total{{deployment="{name}"}}[3s]))', 3 * MIN_POINTS + 6, timeout=90)
            end = datetime.now(timezone.utc)
            with PrometheusClient(prom.url, timeout=5) as client:
                yield {"prom": prom, "client": client, "start": start, "end": end, "exporter": exporter}


def spec(**kw):
    return default_analysis(min_points=MIN_POINTS, step="1s", window="3s", scrape_interval="1s", min_success_rate=0.95, max_p99_seconds=0.2, **kw)


def context(live, canary: str) -> AnalysisContext:
    return AnalysisContext(canary=canary, stable="web", namespace=NAMESPACE, model="fraud", start=live["start"], end=live["end"])


def test_healthy_canary_passes(live):
    result = judge(spec(), context(live, "web-canary"), live["client"])
    assert (result.verdict, result.score) == ("pass", 100.0), result.model_dump_json(indent=1)
    success, p99 = result.metrics
    assert success.canary_points >= MIN_POINTS and success.stable_points >= MIN_POINTS
    assert success.threshold_value > 0.95 and success.comparison == "pass"
    # uniform 10-40 ms in buckets .025/.05: histogram_quantile interpolates p99 to about 0.0495
    assert 0.045 < p99.canary_median < 0.05 and 0.045 < p99.stable_median < 0.05
    assert p99.verdict == "pass" and p99.p_value is not None
    assert result.warnings == []


def test_degraded_canary_fails_both_ways(live):
    result = judge(spec(), context(live, "web-degraded"), live["client"])
    assert (result.verdict, result.score) == ("fail", 0.0)
    assert result.reason == "critical metric(s) failed: success-rate, latency-p99"
    success, p99 = result.metrics
    assert (success.verdict, success.threshold_verdict, success.comparison) == ("fail", "fail", "low")
    assert 0.75 < success.canary_median < 0.93
    assert (p99.verdict, p99.threshold_verdict, p99.comparison) == ("fail", "fail", "high")
    assert p99.shift_low > 0.2  # canary's p99 ~0.49 s against stable's ~0.05 s
    assert p99.p_value < 0.001


def test_statistics_alone_catch_a_regression_under_the_thresholds(live):
    # thresholds so loose that both sides meet them: only the comparison can say no
    loose = default_analysis(min_points=MIN_POINTS, step="1s", window="3s", scrape_interval="1s", min_success_rate=0.5, max_p99_seconds=5, critical=False)
    result = judge(loose, context(live, "web-degraded"), live["client"])
    assert [(m.verdict, m.threshold_verdict) for m in result.metrics] == [("low", "pass"), ("high", "pass")]
    assert (result.verdict, result.score) == ("fail", 0.0)


def test_all_failing_canary_is_a_failure_not_missing_data(live):
    result = judge(spec(), context(live, "web-broken"), live["client"])
    success = result.metrics[0]
    assert (success.verdict, success.canary_median, success.comparison) == ("fail", 0.0, "low")
    assert success.canary_points >= MIN_POINTS
    assert result.verdict == "fail"


def test_canary_without_data_is_inconclusive(live):
    result = judge(spec(), context(live, "web-absent"), live["client"])
    assert (result.verdict, result.score) == ("inconclusive", None)
    assert [(m.verdict, m.canary_points) for m in result.metrics] == [("inconclusive", 0), ("inconclusive", 0)]
    assert all(m.stable_points >= MIN_POINTS for m in result.metrics)


def test_custom_analysis_file_metrics(live):
    custom = analysis_from_dict(
        {
            "step": "1s",
            "window": "3s",
            "scrape_interval": "1s",
            "metrics": [
                {
                    "name": "throughput",
                    "query": 'sum(rate(http_requests_total{namespace="{namespace}",deployment="{target}"}[{window}]))',
                    "direction": "min",
                    "threshold": 100,  # the exporter simulates 200 requests/s
                    "compare": False,
                    "min_points": MIN_POINTS,
                },
                {
                    "name": "mean-latency",
                    "query": 'sum(rate(http_request_duration_seconds_sum{deployment="{target}"}[{window}]))'
                    ' / sum(rate(http_request_duration_seconds_count{deployment="{target}"}[{window}]))',
                    "direction": "max",
                    "min_points": MIN_POINTS,
                },
            ],
        }
    )
    result = judge(custom, context(live, "web-canary"), live["client"])
    assert [m.verdict for m in result.metrics] == ["pass", "pass"]
    throughput, mean = result.metrics
    assert 150 < throughput.threshold_value < 250 and throughput.comparison is None and throughput.stable_points == 0
    assert 0.02 < mean.canary_median < 0.03  # uniform 10-40 ms
    assert result.verdict == "pass"


def test_client_instant_and_range_queries(live):
    client = live["client"]
    rate = client.query('sum(rate(http_requests_total{deployment="web"}[5s]))')
    assert 150 < rate < 250
    assert client.query("vector(2) * 21") == 42.0
    assert client.query("scalar(vector(1.5))") == 1.5
    assert client.query('http_requests_total{deployment="nobody"}') is None
    points = client.query_range('sum(http_requests_total{deployment="web"})', live["start"], live["end"], "1s")
    values = [v for _, v in points]
    assert len(values) >= MIN_POINTS and values == sorted(values)  # a counter only grows
    assert client.query_range('http_requests_total{deployment="nobody"}', live["start"], live["end"], 1.0) == []
    assert client.ready()


def test_several_series_or_bad_promql_are_usage_errors(live):
    client = live["client"]
    with pytest.raises(UsageError, match=r"returned \d series .* it must return one \(aggregate it"):
        client.query_range('http_requests_total{namespace="prod"}', live["start"], live["end"], "1s")
    with pytest.raises(UsageError, match=r"Prometheus rejected the query 'sum\(rate\(x\[5s\]\)': .*parse error"):
        client.query("sum(rate(x[5s])")
    with pytest.raises(UsageError, match="exceeded maximum resolution"):
        client.query_range("vector(1)", live["start"] - timedelta(days=1), live["end"], "1s")


def test_wrong_url_path_is_an_infrastructure_error(live):
    with PrometheusClient(live["prom"].url + "/not-prometheus") as client:
        with pytest.raises(InfrastructureError, match=r"answered HTTP 404 for /api/v1/query"):
            client.query("vector(1)")


def test_exporter_exposition_is_consistent(live):
    lines = list(iter_lines(live["exporter"].exposition()))
    buckets = [int(float(line.rsplit(" ", 1)[1])) for line in lines if 'deployment="web",le=' in line]
    assert buckets == sorted(buckets) and buckets[-1] > 0
    count = next(int(line.rsplit(" ", 1)[1]) for line in lines if line.startswith('http_request_duration_seconds_count{namespace="prod",deployment="web"}'))
    codes = sum(int(line.rsplit(" ", 1)[1]) for line in lines if line.startswith('http_requests_total{namespace="prod",deployment="web",'))
    assert count == codes == buckets[-1]


def test_prometheus_stopped_mid_run(tmp_path):
    with WorkloadExporter({"web": HEALTHY}) as exporter:
        prom = start_prometheus([exporter.target], tmp_path)
        with prom, PrometheusClient(prom.url, timeout=2, retries=0) as client:
            assert client.query("vector(1)") == 1.0
            prom.stop()
            with pytest.raises(InfrastructureError) as info:
                client.query("vector(1)")
            assert info.value.exit_code == 12
            assert not client.ready()


def test_analyze_dry_run_reads_file_and_environment(live, tmp_path, monkeypatch):
    path = tmp_path / "analysis.yaml"
    path.write_text(
        "# the ready-made checks, tuned for a 1s scrape\n"
        f"defaults: {{min_points: {MIN_POINTS}, min_success_rate: 0.95, max_p99_seconds: 0.2}}\n"
        "step: 1s\nwindow: 3s\nscrape_interval: 1s\n"
    )
    monkeypatch.setenv("MLSERVE_PROMETHEUS_URL", live["prom"].url)
    monkeypatch.setenv("MLSERVE_NAMESPACE", NAMESPACE)
    seconds = int((live["end"] - live["start"]).total_seconds())
    good = analyze(canary="web-canary", stable="web", analysis_file=path, duration=f"{seconds}s", end=live["end"])
    assert (good.verdict, good.score) == ("pass", 100.0)
    bad = analyze(canary="web-degraded", stable="web", analysis_file=path, duration=f"{seconds}s", end=live["end"])
    assert bad.verdict == "fail"
    lines = bad.summary_lines()
    assert lines[0] == "verdict: fail (score 0; pass >= 95, marginal >= 75): critical metric(s) failed: success-rate, latency-p99"
    assert lines[1].startswith("  success-rate [critical]: fail, canary 0.")
    assert "is not >= 0.95" in lines[1] and len(lines) == 3
    # the namespace flag beats the environment: nothing is labelled "staging"
    elsewhere = analyze(canary="web-canary", stable="web", namespace="staging", analysis_file=path, duration=f"{seconds}s", end=live["end"])
    assert elsewhere.verdict == "inconclusive"


class FlakyProxy:
    """In front of the real Prometheus: answers 503 until ``healthy_at`` (time.monotonic()), then forwards."""

    def __init__(self, upstream: str, down_for: float) -> None:
        import threading
        import time
        import urllib.request
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.healthy_at = time.monotonic() + down_for
        self.refused = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if time.monotonic() < proxy.healthy_at:
                    proxy.refused += 1
                    body, status = b'{"status":"error","error":"service unavailable"}', 503
                else:
                    with urllib.request.urlopen(upstream + self.path, timeout=10) as resp:  # noqa: S310 - loopback
                        body, status = resp.read(), resp.status
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_prometheus_errors_within_the_consecutive_error_limit_are_tolerated(live):
    """Prometheus answering 503 for 1.5 s at judge time: retried every step (1 s), then judged; never a pass by error."""
    from mlserve.errors import InfrastructureError
    from mlserve.rollout.api import prometheus_judge
    from mlserve.rollout.engine import JudgeWindow

    window = JudgeWindow(model="fraud", version="2", namespace=NAMESPACE, canary="web-canary", stable="web", step=0,
                         weight=10, start=live["start"], end=live["end"])
    proxy = FlakyProxy(live["prom"].url, down_for=1.5)
    try:
        result = prometheus_judge(None, proxy.url, spec=spec())(window)
        assert result.verdict == "pass", result.reason
        assert proxy.refused >= 1
        assert any("query error(s) before this verdict (consecutive_error_limit 4)" in w for w in result.warnings)
        proxy.healthy_at = float("inf")  # down for good: after 4 retries the error stands
        with pytest.raises(InfrastructureError, match=r"5 failed queries in a row, more than consecutive_error_limit 4"):
            prometheus_judge(None, proxy.url, spec=spec())(window)
    finally:
        proxy.server.shutdown()

"""The PromQL subset the local judge evaluates on its own scrapes, against values computed by hand the way
Prometheus computes them (``extrapolatedRate`` and ``bucketQuantile`` of promql/functions.go and quantile.go)."""

from __future__ import annotations

import math
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlserve.errors import InfrastructureError, UsageError
from mlserve.rollout.local.promql import Evaluator, bucket_quantile, extrapolated_rate, metric_names, parse
from mlserve.rollout.local.scrape import Scraper, ScrapeQuerier, parse_exposition


def series(name: str, points: list[tuple[float, float]], **labels: str) -> dict:
    return {frozenset({"__name__": name, **labels}.items()): points}


def value(query: str, data: dict, t: float):  # noqa: ANN201
    got = Evaluator(data, query).at(parse(query), t)
    if isinstance(got, float):
        return got
    assert len(got) <= 1, got
    return next(iter(got.values())) if got else None


# ------------------------------------------------------------------------------------------ rate / increase


def test_increase_extrapolates_to_the_near_edge_and_half_an_interval_at_the_far_one():
    # window (11, 31]: samples at 15, 20, 25 (110 -> 130). To the start: 4 s < 1.1 x 5 s, extrapolated fully;
    # to the end: 6 s >= 5.5 s, only half an average interval (2.5 s). 20 x (10 + 4 + 2.5) / 10 = 33.
    data = series("c", [(10.0, 100.0), (15.0, 110.0), (20.0, 120.0), (25.0, 130.0)])
    assert value("increase(c[20s])", data, 31.0) == pytest.approx(33.0)
    assert value("rate(c[20s])", data, 31.0) == pytest.approx(33.0 / 20)


def test_a_counter_reset_adds_the_value_before_it():
    # 5, 8, (reset) 2, 6: increase 1 + 8 = 9 over 3 s, extrapolated 0.5 s each side: 9 x 4 / 3 = 12
    data = series("c", [(1.0, 5.0), (2.0, 8.0), (3.0, 2.0), (4.0, 6.0)])
    assert value("increase(c[4s])", data, 4.5) == pytest.approx(12.0)
    assert value("rate(c[4s])", data, 4.5) == pytest.approx(3.0)


def test_the_extrapolation_never_goes_below_zero():
    # 1 -> 21 in 2 s: the counter was 0 about 0.1 s before the first sample, so the start extrapolates 0.1 s
    # (not 7.5 s): 20 x (2 + 0.1 + 0.5) / 2 = 26
    data = series("c", [(10.0, 1.0), (12.0, 21.0)])
    assert value("increase(c[10s])", data, 12.5) == pytest.approx(26.0)


def test_fewer_than_two_samples_in_the_window_is_no_value():
    data = series("c", [(1.0, 5.0), (9.0, 6.0)])
    assert value("rate(c[2s])", data, 9.5) is None
    assert extrapolated_rate([(1.0, 1.0)], 0.0, 2.0, is_rate=True) is None
    assert value("sum(rate(c[2s]))", data, 9.5) is None  # an empty vector: no point, not 0


# ------------------------------------------------------------------------------------------ histogram_quantile


@pytest.mark.parametrize("q,want", [(0.5, 0.1), (0.9, 0.5), (0.99, 0.95), (0.7, 0.1 + 0.4 * 20 / 40)])
def test_histogram_quantile_interpolates_linearly_within_the_bucket(q, want):
    buckets = [(0.1, 50.0), (0.5, 90.0), (1.0, 100.0), (math.inf, 100.0)]
    assert bucket_quantile(q, buckets) == pytest.approx(want)


def test_histogram_quantile_edge_cases():
    assert bucket_quantile(0.9, [(0.1, 50.0), (math.inf, 100.0)]) == 0.1  # in +Inf: the highest finite bound
    assert math.isnan(bucket_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]))  # no observations
    assert math.isnan(bucket_quantile(0.5, [(0.1, 3.0), (1.0, 5.0)]))  # no +Inf bucket
    assert bucket_quantile(0.5, [(0.5, 4.0), (0.1, 2.0), (math.inf, 4.0)]) == pytest.approx(0.1)  # sorted first
    assert bucket_quantile(-1, [(1.0, 1.0), (math.inf, 1.0)]) == -math.inf
    assert bucket_quantile(2, [(1.0, 1.0), (math.inf, 1.0)]) == math.inf
    # counts that are not monotonic (buckets scraped at slightly different moments) are made monotonic
    assert bucket_quantile(0.5, [(0.1, 6.0), (0.5, 5.0), (math.inf, 10.0)]) == pytest.approx(0.1 * 5 / 6)


def test_histogram_quantile_over_summed_bucket_rates():
    data = {}
    # two variants' buckets; per second over the window: le=0.1 +2/s and +6/s, le=+Inf +4/s and +8/s
    for variant, (low, total) in {"a": (2.0, 4.0), "b": (6.0, 8.0)}.items():
        for le, per_s in (("0.1", low), ("+Inf", total)):
            data |= series("h_bucket", [(t, per_s * t) for t in (1.0, 2.0, 3.0, 4.0, 5.0)], le=le, variant=variant)
    query = "histogram_quantile(0.5, sum by (le) (rate(h_bucket[4s])))"
    # summed: le=0.1 8/s, +Inf 12/s; rank 6 falls in the first bucket: 0.1 x 6 / 8
    assert value(query, data, 5.0) == pytest.approx(0.075)
    assert value("histogram_quantile(0.5, sum(rate(h_bucket[4s])) by (le))", data, 5.0) == pytest.approx(0.075)
    one = 'histogram_quantile(0.9, sum by (le) (rate(h_bucket{variant="a"}[4s])))'
    assert value(one, data, 5.0) == pytest.approx(0.1)  # rank 3.6 of 4 lands in +Inf: the highest finite bound


# ------------------------------------------------------------------------------------------ the default analysis


def requests(variant: str, ok: float, errors: float) -> dict:
    """Counters growing at ``ok`` and ``errors`` requests per second, sampled every second from t=0 to 10."""
    data = series("http_requests_total", [(float(t), ok * t) for t in range(11)], code="200", model="m",
                  variant=variant)
    if errors:
        data |= series("http_requests_total", [(float(t), errors * t) for t in range(11)], code="500", model="m",
                       variant=variant)
    return data


SUCCESS = ('1 - ((sum(rate(http_requests_total{model="m",variant="%s",code=~"5.."}[2s])) or vector(0))'
           ' / sum(rate(http_requests_total{model="m",variant="%s"}[2s])))')


def test_the_default_success_rate_query():
    data = requests("canary", 9.0, 1.0) | requests("stable", 10.0, 0.0)
    assert value(SUCCESS % ("canary", "canary"), data, 10.0) == pytest.approx(0.9)
    assert value(SUCCESS % ("stable", "stable"), data, 10.0) == pytest.approx(1.0)  # no errors: "or vector(0)"
    assert value(SUCCESS % ("other", "other"), data, 10.0) is None  # no such variant: no point
    flat = series("http_requests_total", [(float(t), 5.0) for t in range(11)], code="200", model="m", variant="idle")
    assert math.isnan(value(SUCCESS % ("idle", "idle"), flat, 10.0))  # no requests: 0/0, dropped by the judge


def test_arithmetic_aggregations_and_label_matching():
    data = requests("canary", 9.0, 1.0) | requests("stable", 10.0, 0.0)
    assert value('sum(rate(http_requests_total{variant=~"can.*"}[2s]))', data, 10.0) == pytest.approx(10.0)
    assert value('sum(rate(http_requests_total{variant!="canary"}[2s]))', data, 10.0) == pytest.approx(10.0)
    assert value('sum(rate(http_requests_total{code!~"2.."}[2s]))', data, 10.0) == pytest.approx(1.0)
    assert value("count(http_requests_total)", data, 10.0) == 3.0
    assert value("max(http_requests_total) - min(http_requests_total)", data, 10.0) == pytest.approx(90.0)
    assert value("avg(http_requests_total) * 3", data, 10.0) == pytest.approx(200.0)
    assert value("-scalar(sum(http_requests_total)) / 2 + 1", data, 10.0) == pytest.approx(-99.0)
    by_variant = Evaluator(data, "").at(parse("sum by (variant) (rate(http_requests_total[2s]))"), 10.0)
    assert {dict(k)["variant"]: v for k, v in by_variant.items()} == pytest.approx({"canary": 10.0, "stable": 10.0})
    without = Evaluator(data, "").at(parse("sum without (code, model) (rate(http_requests_total[2s]))"), 10.0)
    assert {dict(k)["variant"]: v for k, v in without.items()} == pytest.approx({"canary": 10.0, "stable": 10.0})
    assert metric_names(parse(SUCCESS % ("a", "a"))) == {"http_requests_total"}


@pytest.mark.parametrize("query,words", [
    ("irate(x[1m])", "the function irate()"),
    ("rate(x[1m] offset 5m)", "'offset'"),
    ("sum(x) > 3", "the comparison '>'"),
    ("x and y", "'and'"),
    ("x % 2", "the operator '%'"),
])
def test_constructs_outside_the_subset_are_refused_with_the_way_out(query, words):
    with pytest.raises(UsageError) as info:
        parse(query)
    assert words in info.value.message and "--prometheus-url" in (info.value.hint or "")


@pytest.mark.parametrize("query", ["rate(x)", "sum(x", "x{a=b}", "{}", "histogram_quantile(0.5)", "x[1q]"])
def test_malformed_queries_are_usage_errors(query):
    with pytest.raises(UsageError):
        parse(query)


# ------------------------------------------------------------------------------------------ exposition and scrapes


def test_parse_exposition():
    text = ('# HELP x help\n# TYPE x counter\nx_total{a="1",b="q\\"uote\\\\d"} 3\n'
            'h_bucket{le="+Inf"} 7 1700000000000\nbad line here\nnan_metric NaN\nother 1\n')
    samples = parse_exposition(text, keep=lambda name: name != "other")
    assert samples[frozenset({"__name__": "x_total", "a": "1", "b": 'q"uote\\d'}.items())] == 3.0
    assert samples[frozenset({"__name__": "h_bucket", "le": "+Inf"}.items())] == 7.0
    assert math.isnan(samples[frozenset({"__name__": "nan_metric"}.items())])
    assert len(samples) == 3


class _Exposition(BaseHTTPRequestHandler):
    count = 0

    def do_GET(self) -> None:  # noqa: N802
        type(self).count += 10
        body = f'reqs_total{{variant="canary"}} {self.count}\nreqs_total{{variant="stable"}} {2 * self.count}\n'.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_the_scrape_querier_answers_range_queries_from_its_own_scrapes():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Exposition)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    clock = [1000.0]
    scraper = Scraper(f"http://127.0.0.1:{httpd.server_port}/metrics", interval=1.0, metric_names={"reqs_total"},
                      clock=lambda: clock[0])
    try:
        for _ in range(8):  # scrapes at 1000 .. 1007, +10 per scrape for the canary
            scraper.scrape_once()
            clock[0] += 1.0
    finally:
        httpd.shutdown()
        httpd.server_close()
    querier = ScrapeQuerier(scraper)
    at = lambda s: datetime.fromtimestamp(s, timezone.utc)  # noqa: E731
    points = querier.query_range('sum(rate(reqs_total{variant="canary"}[2s]))', at(1003.5), at(1007.5), "1s")
    assert [t for t, _ in points] == [1003.5, 1004.5, 1005.5, 1006.5, 1007.5]
    assert [v for _, v in points] == pytest.approx([10.0] * 5)  # 10 per 1 s scrape interval, extrapolated in-window
    assert querier.query_range("sum(rate(reqs_total[2s]))", at(1007.5), at(1007.5), timedelta(seconds=1)) == \
        [(1007.5, pytest.approx(30.0))]
    with pytest.raises(UsageError, match="returned 2 series"):
        querier.query_range("rate(reqs_total[2s])", at(1007.5), at(1007.5), "1s")
    assert querier.query_range('sum(rate(reqs_total{variant="none"}[2s]))', at(1004), at(1007), "1s") == []
    # the server stops answering: the next query is an infrastructure error (the judge retries it)
    scraper.scrape_once()
    with pytest.raises(InfrastructureError, match="cannot scrape"):
        querier.query_range("sum(rate(reqs_total[2s]))", at(1007.5), at(1007.5), "1s")

"""``--target local`` judged through a real Prometheus scraping the real server, and the built-in PromQL subset
checked against that Prometheus's own answers on the very samples it scraped."""

from __future__ import annotations

import math
import time

import pytest

from helpers.prometheus import requires_prometheus, start_prometheus
from mlserve import exitcodes
from rollout.local.local_support import MODEL, PAUSE, Traffic, production, run_cli, target_args, variants

pytestmark = [pytest.mark.prometheus, pytest.mark.timeout(180), requires_prometheus]


def _instant(prom, query: str, at: float) -> list[dict]:  # noqa: ANN001
    return prom._get_json("/api/v1/query", {"query": query, "time": f"{at:.3f}"})["data"]["result"]


@pytest.fixture
def prometheus(server, tmp_path):  # noqa: ANN001, ANN201
    with start_prometheus([server.http_target], tmp_path / "prom", scrape_interval="500ms", job="mlserve") as prom:
        prom.wait_for_points('up{job="mlserve"}', 1, timeout=30)  # Prometheus applies its targets ~5 s after start
        yield prom


def test_a_canary_judged_through_prometheus_is_promoted(server, registry, analysis, prometheus):
    with Traffic(server):
        rc, doc, err = run_cli("rollout", "canary", MODEL, "--to", "2", *target_args(server, registry),
                               "--steps", "20,100", "--pause", PAUSE, "--analysis", str(analysis),
                               "--prometheus-url", prometheus.url)
    assert rc == exitcodes.OK, (err, doc["result"]["steps"][0]["analysis"] if doc and doc["result"]["steps"] else doc)
    first = doc["result"]["steps"][0]
    assert first["verdict"] == "pass"
    assert all(m["canary_points"] >= 3 and m["stable_points"] >= 3 for m in first["analysis"]["metrics"])
    assert production(registry) == "2"
    assert variants(server) == {"stable": (100.0, "2")}
    # the same Prometheus, on the samples this rollout's traffic left: the built-in PromQL gives its answers
    builtin_promql_matches_prometheus(prometheus)


def builtin_promql_matches_prometheus(prometheus) -> None:  # noqa: ANN001
    from mlserve.rollout.local.promql import Evaluator, parse

    now = time.time() - 0.5
    # the raw samples Prometheus stored, with its timestamps
    series = {}
    for name in ("http_requests_total", "http_request_duration_seconds_bucket"):
        for s in _instant(prometheus, f'{name}{{model="{MODEL}"}}[30s]', now):
            labels = frozenset(s["metric"].items())
            series[labels] = [(float(t), float(v)) for t, v in s["values"]]
    assert series
    samples = sorted({t for points in series.values() for t, _ in points})
    queries = [
        f'sum(rate(http_requests_total{{model="{MODEL}"}}[2s]))',
        f'sum(increase(http_requests_total{{model="{MODEL}",code="200"}}[3s]))',
        f'1 - ((sum(rate(http_requests_total{{model="{MODEL}",code=~"5.."}}[2s])) or vector(0))'
        f' / sum(rate(http_requests_total{{model="{MODEL}"}}[2s])))',
        f'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{model="{MODEL}"}}[2s])))',
        f'histogram_quantile(0.5, sum by (le) (rate(http_request_duration_seconds_bucket{{model="{MODEL}"}}[2s])))',
    ]
    compared = 0
    # evaluation times between scrapes (so that no sample sits exactly on a window's edge, where Prometheus 2's
    # closed interval and Prometheus 3's half-open one differ)
    for t in [round(samples[-1] - k * 0.5 - 0.237, 3) for k in range(1, 25)]:
        for query in queries:
            want = _instant(prometheus, query, t)
            got = Evaluator(series, query).at(parse(query), t)
            if not want:
                assert got == {} or (isinstance(got, dict) and not got), (query, t, got)
                continue
            value = float(want[0]["value"][1])
            mine = got if isinstance(got, float) else next(iter(got.values()))
            if math.isnan(value):
                assert math.isnan(mine), (query, t, mine)
            else:
                assert mine == pytest.approx(value, rel=1e-6, abs=1e-9), (query, t)
            compared += 1
    assert compared >= 40

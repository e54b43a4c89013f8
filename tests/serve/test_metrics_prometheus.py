"""A real Prometheus scrapes two real servers (stable and canary, labelled as a Deployment would label
them) and `mlserve rollout`'s default analysis judges them with no configuration."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone

import pytest
from helpers.prometheus import requires_prometheus, start_prometheus

from mlserve.rollout.analysis import AnalysisContext, default_analysis, judge
from mlserve.rollout.prometheus import PrometheusClient
from serve.support import ServerProcess, metric_value, request

pytestmark = [pytest.mark.timeout(300)]

NS = "ml"
MIN_POINTS = 8


def _body(index: int) -> bytes:
    return json.dumps({"inputs": [{"name": "index", "shape": [1], "datatype": "INT64", "data": [index]}]}).encode()


def test_metric_names_and_labels(tmp_path, model_files) -> None:  # noqa: ANN001
    with ServerProcess([str(model_files["gather"])], tmp_path, "--metrics-label", f"namespace={NS}",
                       "--metrics-label", "deployment=iris", "--drain-delay", "0") as srv:
        import tritonclient.grpc as tg

        assert srv.post("/v2/models/gather/infer", _body(1))[0] == 200
        assert srv.post("/v2/models/gather/infer", _body(99))[0] == 500
        c = tg.InferenceServerClient(srv.grpc_target)
        inp = tg.InferInput("index", [1], "INT64")
        import numpy as np

        inp.set_data_from_numpy(np.array([2], np.int64))
        c.infer("gather", [inp])
        for _ in range(3):
            srv.get("/v2/health/ready")  # probes are not counted
        text = srv.metrics()
        v = json.loads(srv.get("/v2/models/gather")[2])["versions"][0]
        base = {"namespace": NS, "deployment": "iris", "model": "gather", "version": v}
        assert metric_value(text, "http_requests_total", code="200", protocol="rest", **base) == 1
        assert metric_value(text, "http_requests_total", code="500", protocol="rest", **base) == 1
        assert metric_value(text, "http_requests_total", code="200", protocol="grpc", **base) == 1
        assert metric_value(text, "http_requests_total") == 3
        assert metric_value(text, "http_request_duration_seconds_count", **base) == 3
        for name in ("mlserve_inference_queue_duration_seconds_count", "mlserve_inference_compute_duration_seconds_count",
                     "mlserve_batch_size_count"):
            assert metric_value(text, name, **base) == 3, name
        assert metric_value(text, "model_info", namespace=NS, deployment="iris", model="gather", version=v) == 1
        assert metric_value(text, "mlserve_inflight_requests", model="gather") == 0
        assert metric_value(text, "mlserve_ready", namespace=NS) == 1
        assert "mlserve_model_reloads_total" in text and "mlserve_queue_depth" in text


@requires_prometheus
@pytest.mark.prometheus
@pytest.mark.slow
def test_rollout_default_analysis_judges_serve_with_no_configuration(tmp_path, model_files) -> None:  # noqa: ANN001
    labels = lambda dep: ("--metrics-label", f"namespace={NS}", "--metrics-label", f"deployment={dep}")  # noqa: E731
    stable = ServerProcess([str(model_files["gather"])], tmp_path / "s", *labels("iris"), grpc=False)
    good = ServerProcess([str(model_files["gather"])], tmp_path / "g", *labels("iris-canary"), grpc=False)
    bad = ServerProcess([str(model_files["gather"])], tmp_path / "b", *labels("iris-bad"), grpc=False)
    stop = threading.Event()

    def traffic(srv: ServerProcess, error_every: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            request("POST", srv.url + "/v2/models/gather/infer", _body(99 if error_every and i % error_every == 0 else 1))
            time.sleep(0.005)

    threads = [threading.Thread(target=traffic, args=(s, e), daemon=True) for s, e in ((stable, 0), (good, 0), (bad, 4))]
    try:
        for t in threads:
            t.start()
        with start_prometheus([s.http_target for s in (stable, good, bad)], tmp_path / "prom") as prom:
            start = datetime.now(timezone.utc)
            for dep in ("iris", "iris-canary", "iris-bad"):
                # the judge takes one point per rate window (2 s) after a window and a scrape of warm-up
                prom.wait_for_points(f'sum(rate(http_requests_total{{namespace="{NS}",deployment="{dep}"}}[2s]))',
                                     2 * MIN_POINTS + 6, timeout=120)
            end = datetime.now(timezone.utc)
            # the default queries as they are, at this Prometheus's 1 s scrape interval
            spec = default_analysis(min_points=MIN_POINTS, step="1s", window="2s", scrape_interval="1s")
            with PrometheusClient(prom.url, timeout=5) as client:
                ok = judge(spec, AnalysisContext(canary="iris-canary", stable="iris", namespace=NS, model="iris",
                                                 start=start, end=end), client)
                failing = judge(spec, AnalysisContext(canary="iris-bad", stable="iris", namespace=NS, model="iris",
                                                      start=start, end=end), client)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        for s in (stable, good, bad):
            s.kill()
    success, p99 = ok.metrics
    assert success.canary_points >= MIN_POINTS and success.stable_points >= MIN_POINTS
    assert ok.verdict == "pass", ok.model_dump_json(indent=1)
    assert p99.canary_median < 0.05  # milliseconds, read from the histogram's buckets
    assert failing.verdict == "fail", failing.model_dump_json(indent=1)
    assert failing.metrics[0].threshold_verdict == "fail" and 0.6 < failing.metrics[0].canary_median < 0.9

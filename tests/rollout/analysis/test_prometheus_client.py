"""PrometheusClient's error mapping against a real local HTTP server that misbehaves on purpose."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from helpers.prometheus import free_port

from mlserve.errors import InfrastructureError, UsageError
from mlserve.rollout.analysis import AnalysisContext, default_analysis, judge
from mlserve.rollout.prometheus import PrometheusClient, redact_url, to_unix


class Scripted:
    """A local server answering every request with the next scripted (status, body, delay)."""

    def __init__(self, *answers: tuple[int, str, float]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, dict]] = []
        self.headers: list[dict[str, str]] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                scripted.requests.append((parts.path, parse_qs(parts.query)))
                scripted.headers.append({k.lower(): v for k, v in self.headers.items()})
                status, body, delay = scripted.answers.pop(0) if len(scripted.answers) > 1 else scripted.answers[0]
                time.sleep(delay)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "Scripted":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def ok(data: dict) -> tuple[int, str, float]:
    return 200, json.dumps({"status": "success", "data": data}), 0.0


T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_range_query_parameters_and_value_parsing():
    matrix = {"resultType": "matrix", "result": [{"metric": {}, "values": [[1.5, "0.25"], [2.5, "NaN"], [3.5, "+Inf"]]}]}
    with Scripted(ok(matrix)) as server, PrometheusClient(server.url + "/") as client:
        points = client.query_range("up", T0, T0 + timedelta(minutes=1), timedelta(seconds=30))
        path, params = server.requests[0]
    assert path == "/api/v1/query_range"
    assert params == {"query": ["up"], "start": [f"{T0.timestamp():.3f}"], "end": [f"{T0.timestamp() + 60:.3f}"], "step": ["30s"]}
    assert points[0] == (1.5, 0.25)
    assert str(points[1][1]) == "nan" and points[2][1] == float("inf")


def test_naive_datetimes_are_utc():
    assert to_unix(datetime(2026, 1, 1)) == to_unix(T0) == 1767225600.0
    assert to_unix(12.5) == 12.5


@pytest.mark.parametrize(
    "status,body,error,message",
    [
        (503, '{"status":"error","errorType":"unavailable","error":"TSDB not ready"}', InfrastructureError, "answered HTTP 503 for /api/v1/query: TSDB not ready"),
        (500, "<html>oops</html>", InfrastructureError, "answered HTTP 500 for /api/v1/query: <html>oops</html>"),
        (200, "<html>a login page</html>", InfrastructureError, "answered HTTP 200 for /api/v1/query: <html>a login page</html>"),
        (401, "Unauthorized", InfrastructureError, "answered HTTP 401"),
        (200, '{"status":"success","data":null}', InfrastructureError, "unexpected response for /api/v1/query"),
        (400, '{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected end of input"}', UsageError, "Prometheus rejected the query 'up': 1:5: parse error"),
        (422, '{"status":"error","errorType":"execution","error":"query processing would load too many samples"}', UsageError, "too many samples"),
        (200, '{"status":"success","data":{"resultType":"matrix","result":[]}}', UsageError, "gave a matrix result, expected a scalar or a vector"),
        (200, '{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"x"]}]}}', InfrastructureError, "not a number: 'x'"),
    ],
)
def test_error_mapping(status, body, error, message):
    with Scripted((status, body, 0.0)) as server, PrometheusClient(server.url) as client:
        with pytest.raises(error) as info:
            client.query("up")
    assert message in str(info.value)
    assert "\n" not in info.value.message


def test_range_query_of_an_instant_vector_is_refused():
    with Scripted(ok({"resultType": "vector", "result": []})) as server, PrometheusClient(server.url) as client:
        with pytest.raises(UsageError, match="a range query needs a vector"):
            client.query_range("up", T0, T0 + timedelta(seconds=1), "1s")


def test_slow_server_times_out_as_infrastructure():
    with Scripted((200, "{}", 2.0)) as server, PrometheusClient(server.url, timeout=0.3, retries=0) as client:
        with pytest.raises(InfrastructureError, match=r"did not answer within 0.3s"):
            client.query("up")


def test_credentials_never_appear_in_messages():
    assert redact_url("https://bob:s3cret@prom.example:9090/x") == "https://***@prom.example:9090/x"
    assert redact_url("http://prom:9090") == "http://prom:9090"
    with Scripted((503, "down", 0.0)) as server:
        url = server.url.replace("http://", "http://bob:s3cret@")
        with PrometheusClient(url) as client, pytest.raises(InfrastructureError) as info:
            client.query("up")
    assert "s3cret" not in str(info.value) and "***@127.0.0.1" in str(info.value)


def test_headers_are_sent():
    with Scripted(ok({"resultType": "scalar", "result": [0, "7"]})) as server:
        with PrometheusClient(server.url, headers={"Authorization": "Bearer t0k"}) as client:
            assert client.query("7") == 7.0
    assert server.headers[0]["authorization"] == "Bearer t0k"


def test_an_injected_client_is_used_and_left_open():
    import httpx

    with Scripted(ok({"resultType": "scalar", "result": [0, "7"]})) as server:
        with httpx.Client(headers={"X-Scope-OrgID": "team-a"}) as http:
            client = PrometheusClient(server.url, client=http)
            assert client.query("7") == 7.0
            client.close()  # an injected client belongs to the caller: still usable afterwards
            assert client.query("7") == 7.0
    assert [h["x-scope-orgid"] for h in server.headers] == ["team-a", "team-a"]


def test_url_must_be_http():
    with pytest.raises(UsageError, match="must start with http:// or https://"):
        PrometheusClient("prometheus:9090")


def test_prometheus_down_is_an_infrastructure_error_for_the_judge(tmp_path):
    port = free_port()  # nothing listens there
    ctx = AnalysisContext(canary="c", stable="s", namespace="n", model="m", start=datetime.now(timezone.utc) - timedelta(minutes=1), end=datetime.now(timezone.utc))
    with PrometheusClient(f"http://127.0.0.1:{port}", timeout=2, retries=1) as client:
        with pytest.raises(InfrastructureError, match=rf"cannot reach Prometheus at http://127.0.0.1:{port}: ConnectError") as info:
            judge(default_analysis(min_points=5), ctx, client)
    assert info.value.exit_code == 12
    assert "MLSERVE_PROMETHEUS_URL" in str(info.value)


@pytest.mark.parametrize("duration,message", [("soon", "--duration: not a duration: 'soon'"), ("0s", "--duration must be longer than zero")])
def test_analyze_refuses_a_bad_duration_before_querying(duration, message):
    from mlserve.rollout.analysis import analyze

    with pytest.raises(UsageError) as info:
        analyze(canary="c", stable="s", namespace="n", duration=duration, prometheus_url="http://127.0.0.1:9")
    assert message in str(info.value)

"""Test helpers: a tiny metrics exporter with simulated traffic, and a real Prometheus to scrape it.

Use them for anything that needs real Prometheus data (the judge's tests, an end-to-end rollout)::

    from helpers.prometheus import TrafficProfile, WorkloadExporter, requires_prometheus, start_prometheus

    @requires_prometheus                      # skips with a reason when /usr/bin/prometheus is missing
    def test_something(tmp_path):
        workloads = {"web": TrafficProfile(), "web-canary": TrafficProfile(error_ratio=0.3)}
        with WorkloadExporter(workloads, namespace="prod") as exporter, \\
             start_prometheus([exporter.target], tmp_path) as prom:
            prom.wait_for_points('sum(rate(http_requests_total{deployment="web"}[5s]))', 10)
            ...  # prom.url is the base URL for mlserve.rollout.prometheus.PrometheusClient

:class:`WorkloadExporter` serves ``/metrics`` (Prometheus text format 0.0.4) on 127.0.0.1 from a
thread. A second thread simulates requests every ``tick`` seconds for each workload (a Deployment
name) according to its :class:`TrafficProfile`, and updates

* ``http_requests_total{namespace, deployment, code}`` (a counter; code 200 or ``error_code``) and
* ``http_request_duration_seconds{namespace, deployment}`` (a histogram; ``_bucket``/``_sum``/
  ``_count``),

which are the names and labels :func:`mlserve.rollout.analysis.default_analysis` expects. Change a
workload's behaviour at run time with :meth:`WorkloadExporter.set_profile` (e.g. degrade the
canary half-way).

:func:`start_prometheus` runs Debian's ``prometheus`` binary on a free 127.0.0.1 port with its own
config (``scrape_interval`` 1s by default) and a data directory under the given tmp dir, waits until
``/-/ready`` answers, and stops it (SIGTERM, then SIGKILL) when the ``with`` block ends. Its log is
``<tmp>/prometheus.log``; the failure message quotes its tail. Without the binary both skip, unless
``MLSERVE_REQUIRE_PROMETHEUS=1`` (set by ``.ci/run``), where the test fails instead.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

PROMETHEUS_ENV = "MLSERVE_TEST_PROMETHEUS"  # override the binary's path
REQUIRE_ENV = "MLSERVE_REQUIRE_PROMETHEUS"  # set to 1 (as .ci/run does): a missing binary fails instead of skipping
_MISSING = f"needs a Prometheus server binary (apt-get install -y prometheus, or set {PROMETHEUS_ENV})"


def _required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def prometheus_binary() -> str | None:
    """Path of the Prometheus server binary, or None when it is not installed."""
    explicit = os.environ.get(PROMETHEUS_ENV)
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    if os.access("/usr/bin/prometheus", os.X_OK):
        return "/usr/bin/prometheus"
    return shutil.which("prometheus")


requires_prometheus = pytest.mark.skipif(
    prometheus_binary() is None and not _required(),
    reason=_MISSING,
)

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True)
class TrafficProfile:
    """How one simulated workload behaves: request rate, share of errors, latency range (seconds)."""

    rate: float = 200.0  # requests per second
    error_ratio: float = 0.0  # share of requests answered with error_code
    error_code: str = "500"
    latency_min: float = 0.010
    latency_max: float = 0.040  # latencies are uniform in [latency_min, latency_max]


class _WorkloadState:
    def __init__(self, profile: TrafficProfile, buckets: tuple[float, ...]) -> None:
        self.profile = profile
        self.codes: dict[str, int] = {}
        self.bucket_counts = [0] * len(buckets)
        self.count = 0
        self.total_seconds = 0.0
        self.carry = 0.0  # fractional requests owed to the next tick


class WorkloadExporter:
    """Serves simulated request metrics for several Deployments on ``http://127.0.0.1:<port>/metrics``."""

    def __init__(
        self,
        workloads: dict[str, TrafficProfile],
        *,
        namespace: str = "default",
        seed: int = 0,
        tick: float = 0.05,
        buckets: tuple[float, ...] = DEFAULT_BUCKETS,
    ) -> None:
        self.namespace = namespace
        self.tick = tick
        self.buckets = tuple(sorted(buckets))
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._state = {name: _WorkloadState(profile, self.buckets) for name, profile in workloads.items()}
        self._stop = threading.Event()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = exporter.exposition().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # keep test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def target(self) -> str:
        """``host:port`` as a Prometheus static scrape target."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    def set_profile(self, workload: str, profile: TrafficProfile) -> None:
        with self._lock:
            if workload in self._state:
                self._state[workload].profile = profile
            else:
                self._state[workload] = _WorkloadState(profile, self.buckets)

    def simulate(self, seconds: float) -> None:
        """Record ``seconds`` worth of traffic for every workload (the background thread calls it)."""
        with self._lock:
            for state in self._state.values():
                p = state.profile
                owed = p.rate * seconds + state.carry
                n = int(owed)
                state.carry = owed - n
                for _ in range(n):
                    code = p.error_code if self._random.random() < p.error_ratio else "200"
                    state.codes[code] = state.codes.get(code, 0) + 1
                    latency = self._random.uniform(p.latency_min, p.latency_max)
                    state.count += 1
                    state.total_seconds += latency
                    for i, bound in enumerate(self.buckets):
                        if latency <= bound:
                            state.bucket_counts[i] += 1

    def exposition(self) -> str:
        """The current metrics in Prometheus text format."""
        ns = self.namespace
        lines = [
            "# HELP http_requests_total Requests served, by status code.",
            "# TYPE http_requests_total counter",
        ]
        with self._lock:
            for name, state in sorted(self._state.items()):
                for code, value in sorted(state.codes.items()):
                    lines.append(f'http_requests_total{{namespace="{ns}",deployment="{name}",code="{code}"}} {value}')
            lines += [
                "# HELP http_request_duration_seconds Request latency.",
                "# TYPE http_request_duration_seconds histogram",
            ]
            for name, state in sorted(self._state.items()):
                labels = f'namespace="{ns}",deployment="{name}"'
                for bound, value in zip(self.buckets, state.bucket_counts):
                    lines.append(f'http_request_duration_seconds_bucket{{{labels},le="{bound:g}"}} {value}')
                lines.append(f'http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {state.count}')
                lines.append(f"http_request_duration_seconds_sum{{{labels}}} {state.total_seconds!r}")
                lines.append(f"http_request_duration_seconds_count{{{labels}}} {state.count}")
        return "\n".join(lines) + "\n"

    def _traffic_loop(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.tick):
            now = time.monotonic()
            self.simulate(now - last)
            last = now

    def start(self) -> "WorkloadExporter":
        self.simulate(self.tick)  # so the first scrape already sees every series
        for target, kwargs in ((self._server.serve_forever, {"poll_interval": 0.05}), (self._traffic_loop, {})):
            thread = threading.Thread(target=target, kwargs=kwargs, name=f"exporter-{target.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> "WorkloadExporter":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrometheusServer:
    """A running Prometheus process; use :func:`start_prometheus` to create one."""

    def __init__(self, process: subprocess.Popen, port: int, workdir: Path) -> None:
        self.process = process
        self.port = port
        self.workdir = workdir

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _get_json(self, path: str, params: dict[str, str] | None = None) -> dict:
        import httpx

        response = httpx.get(f"{self.url}{path}", params=params, timeout=5)
        response.raise_for_status()
        return response.json()

    def wait_ready(self, timeout: float = 30) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}: {self.log[-2000:]}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready after {timeout}s: {self.log[-2000:]}")

    def wait_for_points(self, query: str, count: int, *, step: float = 1.0, timeout: float = 60) -> int:
        """Wait until the range query ``query`` (from the server's start, at ``step``) has ``count`` finite points."""
        started = time.time()
        deadline = time.monotonic() + timeout
        points = 0
        while time.monotonic() < deadline:
            doc = self._get_json(
                "/api/v1/query_range",
                {"query": query, "start": f"{started - 600:.3f}", "end": f"{time.time():.3f}", "step": f"{step:g}s"},
            )
            result = doc["data"]["result"]
            points = sum(1 for _, v in result[0]["values"] if math.isfinite(float(v))) if result else 0
            if points >= count:
                return points
            time.sleep(0.5)
        raise TimeoutError(f"{query!r} reached {points} point(s), not {count}, within {timeout}s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def __enter__(self) -> "PrometheusServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_prometheus(
    targets: list[str],
    workdir: Path,
    *,
    scrape_interval: str = "1s",
    job: str = "workloads",
    attempts: int = 3,
) -> PrometheusServer:
    """Start Prometheus scraping ``targets`` (``host:port``) every ``scrape_interval``; wait until ready."""
    binary = prometheus_binary()
    if binary is None:
        if _required():
            pytest.fail(f"{REQUIRE_ENV} is set but Prometheus is missing: {_MISSING}")
        pytest.skip(_MISSING)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    quoted = ", ".join(f'"{t}"' for t in targets)
    config.write_text(
        "global:\n"
        f"  scrape_interval: {scrape_interval}\n"
        f"  evaluation_interval: {scrape_interval}\n"
        "scrape_configs:\n"
        f"  - job_name: {job}\n"
        f"    scrape_timeout: {scrape_interval}\n"
        "    static_configs:\n"
        f"      - targets: [{quoted}]\n"
    )
    last_error: Exception | None = None
    for _ in range(attempts):  # the free port can be taken between our probe and Prometheus's bind
        port = free_port()
        log = (workdir / "prometheus.log").open("wb")
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
        log.close()
        server = PrometheusServer(process, port, workdir)
        try:
            server.wait_ready()
            return server
        except RuntimeError as exc:
            server.stop()
            last_error = exc
    raise RuntimeError(f"could not start prometheus: {last_error}")


def iter_lines(text: str) -> Iterator[str]:
    """Non-comment lines of an exposition (handy in assertions)."""
    return (line for line in text.splitlines() if line and not line.startswith("#"))

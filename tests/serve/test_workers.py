"""``--workers 2``: two real server processes share the ports; metrics add up; SIGTERM drains both."""

from __future__ import annotations

import signal

import pytest

from serve.support import ServerProcess, metric_value

pytestmark = pytest.mark.timeout(180)


def test_two_workers_share_ports_metrics_and_drain(tmp_path, model_files) -> None:  # noqa: ANN001
    import tritonclient.grpc as tg
    import numpy as np

    srv = ServerProcess([str(model_files["gather"])], tmp_path, "--workers", "2", "--drain-delay", "0.5",
                        "--access-log")
    try:
        import time

        deadline = time.monotonic() + 60
        while sum(e.get("event") == "ready" for e in srv.log_events()) < 2:  # both workers listen once ready
            assert time.monotonic() < deadline, srv.stderr()
            time.sleep(0.1)
        body = {"inputs": [{"name": "index", "shape": [1], "datatype": "INT64", "data": [1]}]}
        for _ in range(40):  # a new connection each time: the kernel spreads them over both workers
            assert srv.post("/v2/models/gather/infer", body)[0] == 200
        c = tg.InferenceServerClient(srv.grpc_target)
        inp = tg.InferInput("index", [1], "INT64")
        inp.set_data_from_numpy(np.array([3], np.int64))
        assert c.infer("gather", [inp]).as_numpy("value").tolist() == [[12, 13, 14, 15]]
        text = srv.metrics()
        assert metric_value(text, "http_requests_total", code="200", protocol="rest") == 40  # both workers' counts
        assert metric_value(text, "http_requests_total", code="200", protocol="grpc") == 1
        assert metric_value(text, "mlserve_ready") == 1
        workers = {e["worker"] for e in srv.log_events() if e.get("event") == "request"}
        assert workers == {0, 1}
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(60) == 0, srv.stderr()
    finally:
        srv.kill()
    events = srv.log_events()
    assert sorted(e["worker"] for e in events if e.get("event") == "stopped") == [0, 1]
    assert "stopped by SIGTERM" in srv.stderr()
    assert "gather" in srv.stdout()


def test_a_worker_that_cannot_start_stops_the_server(tmp_path, model_files) -> None:  # noqa: ANN001
    import socket

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))  # a port held without SO_REUSEPORT: the workers cannot share it
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        import subprocess
        import sys

        r = subprocess.run([sys.executable, "-m", "mlserve", "serve", str(model_files["gather"]), "--workers", "2",
                            "--http-port", str(port), "--grpc-port", "0"], capture_output=True, text=True, timeout=60)
    finally:
        blocker.close()
    assert r.returncode == 2 and "worker" in r.stderr and "cannot listen" in r.stderr, r.stderr

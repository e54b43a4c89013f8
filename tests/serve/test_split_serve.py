"""Traffic splitting with real processes: several `mlserve serve` servers on loopback, the real Triton clients,
a real registry with real versions, `mlserve promote` run from another process, and `mlserve ab analyze` reading
the assignment log a server wrote."""

from __future__ import annotations

import csv
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from mlserve.registry import Registry
from mlserve.serve.split import assign
from serve import models
from serve.support import ServerProcess, metric_value, request

pytestmark = pytest.mark.timeout(300)

TOKEN = "test-admin-token-0123456789"
X = np.random.default_rng(5).standard_normal((1, 256)).astype(np.float32)
BODY = json.dumps({"inputs": [{"name": "x", "shape": [1, 256], "datatype": "FP32", "data": X.ravel().tolist()}]})
KEYS = [f"user-{i}" for i in range(600)]


@pytest.fixture
def registry(tmp_path: Path, model_files) -> Path:  # noqa: ANN001
    """mlp 1 (production), 2 (staging), 3 (registered only): three real, different versions."""
    root = tmp_path / "registry"
    reg = Registry(root)
    reg.register("mlp", model_files["mlp"], version="1")
    reg.register("mlp", model_files["mlp_b"], version="2")
    reg.register("mlp", models.mlp(tmp_path / "v3" / "mlp.onnx", seed=3), version="3")
    reg.promote("mlp", "1")
    reg.promote("mlp", "2", stage="staging")
    return root


def _expected(registry: Path) -> dict[str, np.ndarray]:
    reg = Registry(registry)
    out = {}
    for v in ("1", "2", "3"):
        path = reg.resolve(f"mlp:{v}").artifact_path
        out[v] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": X})[0]
    return out


class Client:
    """One keep-alive HTTP connection (what a real client does); returns (status, headers, body)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, path: str, body: str | bytes, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
        self.conn.request("POST", path, body=body, headers=headers or {})
        resp = self.conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()

    def close(self) -> None:
        self.conn.close()


def _versions_by_key(srv: ServerProcess, keys: list[str], header: str = "X-User-Id") -> dict[str, tuple[str, str]]:
    client = Client(srv.http_port)
    out = {}
    try:
        for key in keys:
            status, headers, raw = client.post("/v2/models/mlp/infer", BODY, {header: key})
            assert status == 200, raw
            assert json.loads(raw)["model_version"] == headers["x-model-version"]
            out[key] = (headers["x-model-variant"], headers["x-model-version"])
    finally:
        client.close()
    return out


def _mlserve(*args: str, registry: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlserve", *args, "--registry", str(registry)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "MLSERVE_ACTOR": "tester"})


def _canary(tmp: Path, registry: Path, weight: float, *args: str, seed: str = "0", token: str | None = None,
            name: str = "srv") -> ServerProcess:
    return ServerProcess(["mlp@production"], tmp / name, "--canary", "mlp@staging", "--canary-weight", str(weight),
                         "--sticky-header", "X-User-Id", "--experiment", "churn-canary", "--drain-delay", "0",
                         *args, registry=registry, env={"PYTHONHASHSEED": seed}, admin_token=token, grpc=False)


# ---------------------------------------------------------------------------------------------- sticky, monotone


def test_sticky_keys_get_one_variant_in_every_process_after_restarts_and_weight_changes(tmp_path: Path,
                                                                                        registry: Path) -> None:
    expected = {k: assign(k, {"stable": 90.0, "canary": 10.0}, "churn-canary") for k in KEYS}  # this process
    with _canary(tmp_path, registry, 10, token=TOKEN, seed="1", name="a") as a, \
            _canary(tmp_path, registry, 10, seed="2", name="b") as b:
        seen_a = _versions_by_key(a, KEYS)
        seen_b = _versions_by_key(b, KEYS)
        assert seen_a == seen_b  # two processes with different hash seeds
        assert {k: v for k, (v, _) in seen_a.items()} == expected
        assert {(variant, version) for variant, version in seen_a.values()} == {("stable", "1"), ("canary", "2")}
        canary = {k for k, (v, _) in seen_a.items() if v == "canary"}
        assert 30 <= len(canary) <= 90  # 10% of 600 (+- 4 standard deviations; fixed keys: deterministic)
        assert a.terminate() == 0
    with _canary(tmp_path, registry, 10, token=TOKEN, seed="3", name="a2") as a2:
        assert _versions_by_key(a2, KEYS) == seen_a  # after a restart
        status, _, doc = a2.admin("POST", doc={"weights": {"canary": 20, "stable": 80}})
        assert status == 200 and doc["changed"] is True and doc["revision"] == 2
        after = _versions_by_key(a2, KEYS)
        moved = {k: (seen_a[k][0], after[k][0]) for k in KEYS if seen_a[k][0] != after[k][0]}
        assert moved and set(moved.values()) == {("stable", "canary")}  # only into the canary, never out
        assert canary < {k for k, (v, _) in after.items() if v == "canary"}
        assert 80 <= sum(v == "canary" for v, _ in after.values()) <= 160  # 20% of 600
        with _canary(tmp_path, registry, 20, seed="4", name="c") as c:  # 20% from the start, another process
            assert _versions_by_key(c, KEYS) == after
        status, _, doc = a2.admin("POST", doc={"weights": {"canary": 10, "stable": 90}})
        assert status == 200 and doc["revision"] == 3
        assert _versions_by_key(a2, KEYS) == seen_a  # back to 10%: the same keys as before


# ---------------------------------------------------------------------------------------------- by weight


def test_requests_without_a_key_follow_the_weights_and_name_their_version(tmp_path: Path, registry: Path) -> None:
    expected = _expected(registry)
    with ServerProcess(["mlp@production"], tmp_path, "--canary", "mlp@staging", "--canary-weight", "30",
                       "--drain-delay", "0", registry=registry) as srv:
        client = Client(srv.http_port)
        counts = {"1": 0, "2": 0}
        for _ in range(600):
            status, headers, raw = client.post("/v2/models/mlp/infer", BODY)
            assert status == 200
            doc = json.loads(raw)
            version = headers["x-model-version"]
            assert doc["model_version"] == version and headers["x-model-variant"] == {"1": "stable", "2": "canary"}[version]
            np.testing.assert_allclose(np.asarray(doc["outputs"][0]["data"]).reshape(1, 10), expected[version],
                                       rtol=1e-4, atol=1e-5)  # the version it names computed it
            counts[version] += 1
        assert 180 - 6 * 11.3 < counts["2"] < 180 + 6 * 11.3  # 30% of 600, +- 6 standard deviations
        # a pinned version is served by that version, whatever the split
        for _ in range(20):
            status, headers, raw = client.post("/v2/models/mlp/versions/2/infer", BODY)
            assert status == 200 and headers["x-model-version"] == "2" and json.loads(raw)["model_version"] == "2"
        status, _, raw = client.post("/v2/models/mlp/versions/7/infer", BODY)
        assert status == 404 and b"serves versions 1, 2" in raw
        # /predict is split too
        status, headers, raw = client.post("/predict", json.dumps({"features": X.ravel().tolist()}))
        assert status == 200 and json.loads(raw)["model_version"] == headers["x-model-version"]
        client.close()
        text = srv.metrics()
        assert metric_value(text, "http_requests_total", model="mlp", variant="canary", version="2", code="200") \
            == counts["2"] + 20 + (headers["x-model-version"] == "2")
        assert metric_value(text, "mlserve_split_share", model="mlp", variant="canary") == pytest.approx(0.3)
        assert metric_value(text, "mlserve_split_assignments_total", variant="stable", assigned_by="weight") \
            == counts["1"] + (headers["x-model-version"] == "1")
        assert metric_value(text, "model_info", model="mlp", variant="canary", version="2") == 1
        meta = json.loads(srv.get("/v2/models/mlp")[2])
        assert meta["versions"] == ["1", "2"] and meta["parameters"]["mlserve"]["variant"] == "stable"
        assert [v["name"] for v in meta["parameters"]["mlserve"]["split"]["variants"]] == ["stable", "canary"]
        assert json.loads(srv.get("/v2/models/mlp/versions/2")[2])["parameters"]["mlserve"]["variant"] == "canary"
        assert srv.get("/v2/models/mlp/versions/2/ready")[0] == 200


# ---------------------------------------------------------------------------------------------- gRPC, parameters


def test_grpc_and_parameters_assign_like_the_header(tmp_path: Path, registry: Path) -> None:
    import tritonclient.grpc as tg
    import tritonclient.http as th

    weights = {"stable": 50.0, "canary": 50.0}
    with ServerProcess(["mlp@production"], tmp_path, "--canary", "mlp@staging", "--canary-weight", "50",
                       "--sticky-header", "X-User-Id", "--sticky-parameter", "user_id", "--experiment", "g",
                       "--drain-delay", "0", registry=registry) as srv:
        g = tg.InferenceServerClient(srv.grpc_target)
        h = th.InferenceServerClient(srv.http_target)
        gi = tg.InferInput("x", [1, 256], "FP32")
        gi.set_data_from_numpy(X)
        hi = th.InferInput("x", [1, 256], "FP32")
        hi.set_data_from_numpy(X, binary_data=True)
        version_of = {"stable": "1", "canary": "2"}
        for i in range(60):
            key = f"user-{i}"
            want = version_of[assign(key, weights, "g")]
            by_metadata = g.infer("mlp", [gi], headers={"x-user-id": key}).get_response().model_version
            by_param = g.infer("mlp", [gi], parameters={"user_id": key}).get_response().model_version
            by_int = g.infer("mlp", [gi], parameters={"user_id": i}).get_response().model_version
            rest_param = h.infer("mlp", [hi], parameters={"user_id": key}).get_response()["model_version"]
            assert by_metadata == by_param == rest_param == want, key
            assert by_int == version_of[assign(str(i), weights, "g")]
        pinned = g.infer("mlp", [gi], model_version="2", headers={"x-user-id": "user-0"}).get_response()
        assert pinned.model_version == "2"
        with pytest.raises(tg.InferenceServerException, match="sticky key"):
            g.infer("mlp", [gi], parameters={"user_id": True})
        assert set(g.get_model_metadata("mlp").versions) == {"1", "2"}
        text = srv.metrics()
        assert metric_value(text, "http_requests_total", protocol="grpc", code="200") == 60 * 3 + 1
        assert metric_value(text, "http_requests_total", protocol="grpc", code="400", variant="") == 1


# ---------------------------------------------------------------------------------------------- hot swap of a variant


def test_promote_in_another_process_moves_one_variant_under_load(tmp_path: Path, registry: Path) -> None:
    expected = _expected(registry)
    results: list[tuple[str, int, str, str, bytes]] = []
    stop = threading.Event()

    def load(offset: int) -> None:
        client = Client(srv.http_port)
        i = offset
        while not stop.is_set():
            key = f"user-{i % 200}"
            status, headers, raw = client.post("/v2/models/mlp/infer", BODY, {"X-User-Id": key})
            results.append((key, status, headers.get("x-model-variant", ""), headers.get("x-model-version", ""), raw))
            i += 3
        client.close()

    with _canary(tmp_path, registry, 25, "--poll-interval", "0.2") as srv:
        threads = [threading.Thread(target=load, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        assert _mlserve("promote", "mlp", "3", "--stage", "staging", registry=registry).returncode == 0
        deadline = time.monotonic() + 30
        while not any(r[2] == "canary" and r[3] == "3" for r in results[-50:]):
            assert time.monotonic() < deadline, srv.stderr()[-2000:]
            time.sleep(0.05)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(30)
        swaps = [e for e in srv.log_events() if e.get("event") == "model_swapped"]
    assert len(results) > 100
    assert {r[1] for r in results} == {200}  # no failed request during the swap
    variant_of = {k: assign(k, {"stable": 75.0, "canary": 25.0}, "churn-canary") for k in {r[0] for r in results}}
    for key, _, variant, version, raw in results:
        assert variant == variant_of[key]  # the split never moved a key
        assert (variant, version) in {("stable", "1"), ("canary", "2"), ("canary", "3")}
        np.testing.assert_allclose(np.asarray(json.loads(raw)["outputs"][0]["data"]).reshape(1, 10),
                                   expected[version], rtol=1e-4, atol=1e-5)
    assert [(e["variant"], e["previous"], e["version"]) for e in swaps] == [("canary", "2", "3")]


# ---------------------------------------------------------------------------------------------- the admin endpoint


def _listening_address(port: int) -> set[str]:
    """Local addresses in LISTEN state on ``port``, read from the kernel's socket table."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.rsplit(":", 1)
            if int(hexport, 16) == port and state == "0A":
                out.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]) if len(addr) == 8 else addr)
    return out


def test_admin_endpoint_auth_loopback_and_no_token_in_logs(tmp_path: Path, registry: Path) -> None:
    with ServerProcess(["mlp@production"], tmp_path, "--host", "0.0.0.0", "--access-log", "--drain-delay", "0",
                       registry=registry, admin_token=TOKEN, grpc=False) as srv:
        assert _listening_address(srv.admin_port) == {"127.0.0.1"}  # loopback, although --host is 0.0.0.0
        assert _listening_address(srv.http_port) == {"0.0.0.0"}
        status, headers, doc = srv.admin("GET", token=None)
        assert status == 401 and headers["www-authenticate"].startswith("Bearer") and "token" in doc["error"]
        assert srv.admin("GET", token="not-the-right-token-at-all")[0] == 403
        assert srv.admin("GET", token=TOKEN[:-1])[0] == 403
        status, _, _ = request("GET", srv.admin_url + "/v2/mlserve/split", headers={"Authorization": f"Basic {TOKEN}"})
        assert status == 401
        assert srv.admin("PUT", doc={"variants": []}, token=None)[0] == 401  # a change without the token: refused
        assert srv.admin("GET", "/v2/health/live", token=None)[0] == 401  # nothing on the admin port without it
        assert srv.admin("GET", "/elsewhere")[0] == 404
        assert srv.get("/v2/mlserve/split")[0] == 404  # the data port has no admin routes
        status, _, doc = srv.admin("GET")
        assert status == 200 and doc["v"] == 1 and [s["model"] for s in doc["splits"]] == ["mlp"]
        status, _, one = srv.admin("GET", "/v2/mlserve/split/mlp")
        assert one == doc["splits"][0] and one["variants"][0]["name"] == "stable" and one["revision"] == 1
        status, headers, doc405 = srv.admin("DELETE", "/v2/mlserve/split/mlp")
        assert status == 405 and headers["allow"] == "GET, PUT, POST" and "takes GET, PUT or POST" in doc405["error"]
        status, headers, _ = request("POST", srv.url + "/v2/health/ready", data=b"{}")
        assert status == 405 and headers["allow"] == "GET, HEAD"
        assert srv.post("/v2/models/mlp/infer", BODY.encode())[0] == 200
        code = srv.terminate()
    assert code == 0
    assert TOKEN not in srv.stderr() and TOKEN not in srv.stdout()
    admin_lines = [e for e in srv.log_events() if e.get("event") == "admin_request"]
    assert {e["status"] for e in admin_lines} == {200, 401, 403, 404, 405}
    listening = [e for e in srv.log_events() if e.get("event") == "listening"][0]
    assert listening["admin"] == f"http://127.0.0.1:{srv.admin_port}"


def test_admin_endpoint_is_off_without_a_token(tmp_path: Path, model_files) -> None:  # noqa: ANN001
    with ServerProcess([str(model_files["mlp"])], tmp_path, "--drain-delay", "0", grpc=False) as srv:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", srv.admin_port), timeout=2).close()
        assert _listening_address(srv.admin_port) == set()


def test_admin_changes_are_versioned_idempotent_and_all_or_nothing(tmp_path: Path, registry: Path,
                                                                   model_files) -> None:  # noqa: ANN001
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an ONNX graph")
    with ServerProcess(["mlp@production"], tmp_path, "--sticky-header", "X-User-Id", "--drain-delay", "0",
                       registry=registry, admin_token=TOKEN, grpc=False) as srv:
        _, _, doc = srv.admin("GET", "/v2/mlserve/split/mlp")
        assert [(v["name"], v["weight"], v["version"]) for v in doc["variants"]] == [("stable", 100.0, "1")]
        # add a pinned canary at 0%: loaded, verified, warmed up, but no traffic yet
        status, _, doc = srv.admin("POST", "/v2/mlserve/split/mlp", {"refs": {"canary": "mlp:3"}, "weights": {"canary": 0},
                                                                     "expect_revision": 1})
        assert status == 200 and doc["changed"] and doc["revision"] == 2
        assert [(v["name"], v["version"], v["ready"]) for v in doc["variants"]] == [("stable", "1", True),
                                                                                    ("canary", "3", True)]
        assert {_versions_by_key(srv, KEYS[:50])[k] for k in KEYS[:50]} == {("stable", "1")}
        assert srv.post("/v2/models/mlp/versions/3/infer", BODY.encode())[1]["x-model-version"] == "3"
        # PUT the whole split, read back from GET: a compare-and-swap on the revision
        doc["variants"][0]["weight"], doc["variants"][1]["weight"] = 50, 50
        put = {k: v for k, v in doc.items() if k != "changed"}
        status, _, stale = srv.admin("PUT", "/v2/mlserve/split/mlp", {**put, "expect_revision": 1})
        assert status == 409 and "revision 2" in stale["error"]
        status, _, done = srv.admin("PUT", "/v2/mlserve/split/mlp", {**put, "expect_revision": 2})
        assert status == 200 and done["changed"] and done["revision"] == 3
        status, _, again = srv.admin("PUT", "/v2/mlserve/split/mlp", {**put, "expect_revision": 2})
        assert status == 200 and not again["changed"] and again["revision"] == 3  # a retried PUT: same answer
        seen = {v for v, _ in _versions_by_key(srv, KEYS[:200]).values()}
        assert seen == {"stable", "canary"}
        # all or nothing: a damaged REF, an artifact that is no ONNX graph, a model with other inputs
        for ref, words in ((str(junk), "cannot be served"), (str(model_files["two_inputs"]), "other variants"),
                           ("mlp:9", "cannot be served"), ("other@production", "not of 'mlp'")):
            status, _, err = srv.admin("POST", "/v2/mlserve/split/mlp", {"refs": {"canary": ref}})
            assert status in (400, 422) and words in err["error"], (ref, err)
        status, _, err = srv.admin("POST", "/v2/mlserve/split/mlp", {"weights": {"canray": 5}})
        assert status == 400 and "'canray' is not in the split" in err["error"]
        status, _, err = srv.admin("PUT", "/v2/mlserve/split/mlp", {"variants": [{"name": "a", "ref": "mlp:1"}]})
        assert status == 400 and "variants[0] (a) has no weight" in err["error"]
        assert srv.admin("POST", "/v2/mlserve/split/nope", {"weights": {"a": 1}})[0] == 404
        assert srv.admin("POST", "/v2/mlserve/split/mlp", b"{not json")[0] == 400
        _, _, now = srv.admin("GET", "/v2/mlserve/split/mlp")
        assert now["revision"] == 3 and [v["version"] for v in now["variants"]] == ["1", "3"]
        # remove the canary: PUT with stable alone (sticky unset: the command line's); released once idle
        status, _, doc = srv.admin("PUT", "/v2/mlserve/split/mlp", {"variants": [
            {"name": "stable", "ref": "mlp@production", "weight": 1}]})
        assert status == 200 and doc["revision"] == 4 and [v["name"] for v in doc["variants"]] == ["stable"]
        assert doc["sticky"] == {"header": "X-User-Id", "parameter": None} and doc["experiment"] == "mlp"
        assert {_versions_by_key(srv, KEYS[:50])[k] for k in KEYS[:50]} == {("stable", "1")}
        assert srv.post("/v2/models/mlp/versions/3/infer", BODY.encode())[0] == 404
        text = srv.metrics()
        assert metric_value(text, "model_info", variant="canary") == 0
        assert metric_value(text, "mlserve_split_revision", model="mlp") == 4
    changes = [e for e in srv.log_events() if e.get("event") == "split_changed"]
    assert [e["revision"] for e in changes] == [2, 3, 4]


# ---------------------------------------------------------------------------------------------- startup


def test_a_variant_with_other_inputs_stops_the_server_before_ready(tmp_path: Path, registry: Path,
                                                                   model_files) -> None:  # noqa: ANN001
    srv = ServerProcess(["mlp@production"], tmp_path, "--canary", str(model_files["two_inputs"]), registry=registry,
                        wait_ready=False, grpc=False)
    code = srv.proc.wait(60)
    srv.kill()
    assert code == 2 and "cannot be a variant of model 'mlp'" in srv.stderr()
    assert not any(e.get("event") == "ready" for e in srv.log_events())


def test_a_split_file_serves_its_variants(tmp_path: Path, registry: Path, model_files) -> None:  # noqa: ANN001
    spec = tmp_path / "mlp.toml"
    spec.write_text(f'''v = 1
model = "mlp"
experiment = "file-exp"
sticky = {{ parameter = "user_id" }}

[[variants]]
name = "control"
ref = "mlp:1"
weight = 1

[[variants]]
name = "treatment"
ref = "{model_files["mlp_b"]}"
weight = 1
''')
    with ServerProcess([str(model_files["gather"])], tmp_path, "--split", str(spec), "--drain-delay", "0",
                       registry=registry, grpc=False) as srv:
        file_version = json.loads(srv.get("/v2/models/mlp")[2])["versions"][1]
        for i in range(40):
            body = json.loads(BODY)
            body["parameters"] = {"user_id": f"u{i}"}
            status, headers, raw = srv.post("/v2/models/mlp/infer", body)
            want = assign(f"u{i}", {"control": 1.0, "treatment": 1.0}, "file-exp")
            assert status == 200 and headers["x-model-variant"] == want
            assert headers["x-model-version"] == {"control": "1", "treatment": file_version}[want]
            assert json.loads(raw)["model_name"] == "mlp"  # a file variant is served under the model's name
        assert srv.post("/v2/models/gather/infer", {"inputs": [{"name": "index", "shape": [1], "datatype": "INT64",
                                                                "data": [2]}]})[0] == 200


# ---------------------------------------------------------------------------------------------- assignment log


def test_the_assignment_log_is_read_by_ab_analyze(tmp_path: Path, registry: Path) -> None:
    log = tmp_path / "assignments.jsonl"
    keys = [f"user-{i}" for i in range(400)]
    with _canary(tmp_path, registry, 50, "--assignment-log", str(log)) as srv:
        served = _versions_by_key(srv, keys)
        again = _versions_by_key(srv, keys[:100])  # the same users come back: the same exposure
        assert {k: served[k] for k in keys[:100]} == again
        assert srv.terminate() == 0  # the log is flushed on the way out
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) == 400  # one line per key and variant
    first = lines[0]
    assert set(first) == {"v", "time", "experiment", "key_hash", "variant", "model", "version"}
    assert first["v"] == 1 and first["experiment"] == "churn-canary" and first["model"] == "mlp"
    from mlserve.experiments import hash_key

    by_hash = {hash_key("churn-canary", k): k for k in keys}
    assert {(by_hash[x["key_hash"]], x["variant"], x["version"]) for x in lines} == \
        {(k, v, ver) for k, (v, ver) in served.items()}
    outcomes = tmp_path / "outcomes.csv"
    with outcomes.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["key", "converted"])
        for i, k in enumerate(keys):
            w.writerow([k, int(i % 5 == 0)])
    proc = subprocess.run([sys.executable, "-m", "mlserve", "ab", "analyze", str(log), "--outcomes", str(outcomes),
                           "--metric", "converted", "--split", "stable=50,canary=50", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 6), proc.stderr
    doc = json.loads(proc.stdout)["result"]
    assert doc["experiment"] == "churn-canary" and doc["exposures"] == 400 and doc["control"] == "stable"
    counts = doc["sample_ratio"]["counts"]
    assert counts == {"stable": sum(v == "stable" for v, _ in served.values()),
                      "canary": sum(v == "canary" for v, _ in served.values())}
    assert doc["sample_ratio"]["passed"] is True

"""Bad input over both protocols: a clear error naming the field, the right status, and the server goes on.

Table-driven: each case is sent to one running server over REST (plain HTTP, so the body can be
anything) and, where the protocol can carry it, over gRPC through the official Triton stubs. After
every case a good request must still work.
"""

from __future__ import annotations

import asyncio
import json
import struct

import numpy as np
import pytest

from serve.support import ServerProcess, metric_value

pytestmark = pytest.mark.timeout(300)

LIMIT = 200_000


@pytest.fixture(scope="module")
def server(model_files, tmp_path_factory):  # noqa: ANN001, ANN201
    srv = ServerProcess([str(model_files["mlp"]), str(model_files["gather"])], tmp_path_factory.mktemp("bad"),
                        "--max-request-bytes", str(LIMIT), "--max-queue", "32", "--drain-delay", "0")
    yield srv
    srv.kill()


def _mlp(data=None, **over):  # noqa: ANN001, ANN003, ANN202
    inp = {"name": "x", "shape": [1, 256], "datatype": "FP32", "data": data if data is not None else [0.5] * 256}
    inp.update(over)
    return {"inputs": [inp]}


def _binary(header: dict, payload: bytes, declared: int | None = None) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(header).encode()
    n = len(raw) if declared is None else declared
    return raw + payload, {"Inference-Header-Content-Length": str(n)}


def _bin_input(shape, size, name="x", datatype="FP32"):  # noqa: ANN001, ANN202
    return {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": size}}]}


NAN_FP32 = np.full(256, np.nan, np.float32).tobytes()
GOOD_FP32 = np.full(256, 0.5, np.float32).tobytes()

# (id, path, body, headers, status, words the error must contain)
REST_CASES = [
    ("malformed-json", "mlp", b'{"inputs": [', {}, 400, ["not valid JSON"]),
    ("not-an-object", "mlp", b"[1, 2]", {}, 400, ["JSON object"]),
    ("no-inputs", "mlp", {"inputs": []}, {}, 400, ["inputs"]),
    ("unknown-model", "nope", _mlp(), {}, 404, ["unknown model", "nope"]),
    ("unknown-version", "mlp/versions/999", _mlp(), {}, 404, ["no version", "999"]),
    ("wrong-input-name", "mlp", {"inputs": [{**_mlp()["inputs"][0], "name": "y"}]}, {}, 400, ["inputs[0].name", "'y'"]),
    ("wrong-datatype", "mlp", _mlp(datatype="FP64"), {}, 400, ["datatype", "FP64", "FP32"]),
    ("unknown-datatype", "mlp", _mlp(datatype="FLOAT"), {}, 400, ["datatype", "FLOAT"]),
    ("wrong-rank", "mlp", _mlp(shape=[256]), {}, 400, ["shape", "rank"]),
    ("wrong-dim", "mlp", _mlp(shape=[1, 255], data=[0.0] * 255), {}, 400, ["shape", "[1, 255]"]),
    ("negative-dim", "mlp", _mlp(shape=[-1, 256]), {}, 400, ["negative"]),
    ("shape-not-list", "mlp", _mlp(shape="1x256"), {}, 400, ["shape"]),
    ("data-too-short", "mlp", _mlp(data=[0.0] * 10), {}, 400, ["inputs[0] (x).data", "10 elements", "256"]),
    ("data-not-numbers", "mlp", _mlp(data=["a"] * 256), {}, 400, ["inputs[0] (x).data", "FP32"]),
    ("data-ragged", "mlp", _mlp(data=[[0.0] * 256, [1.0]]), {}, 400, ["inputs[0] (x).data"]),
    ("data-missing", "mlp", {"inputs": [{"name": "x", "shape": [1, 256], "datatype": "FP32"}]}, {}, 400, ["data"]),
    ("nan-json-literal", "mlp", b'{"inputs":[{"name":"x","shape":[1,1],"datatype":"FP32","data":[NaN]}]}', {}, 400,
     ["JSON"]),
    ("nan-binary", "mlp", *_binary(_bin_input([1, 256], 1024), NAN_FP32), 400, ["inputs[0] (x)", "NaN"]),
    ("body-too-large", "mlp", b"x" * (LIMIT + 1), {}, 413, ["limit", str(LIMIT)]),
    ("header-length-past-body", "mlp", *_binary(_bin_input([1, 256], 1024), GOOD_FP32, declared=10**6), 400,
     ["Inference-Header-Content-Length"]),
    ("header-length-not-int", "mlp", b"{}", {"Inference-Header-Content-Length": "ten"}, 400,
     ["Inference-Header-Content-Length"]),
    ("binary-size-past-end", "mlp", *_binary(_bin_input([1, 256], 4096), GOOD_FP32), 400,
     ["binary_data_size", "4096"]),
    ("binary-size-wrong-for-shape", "mlp", *_binary(_bin_input([1, 256], 1000), GOOD_FP32[:1000]), 400,
     ["1000 bytes", "1024"]),
    ("binary-trailing-bytes", "mlp", *_binary(_bin_input([1, 256], 1024), GOOD_FP32 + b"junk"), 400,
     ["after the JSON header", "1024"]),
    ("binary-size-without-header", "mlp", _bin_input([1, 256], 1024), {}, 400, ["Inference-Header-Content-Length"]),
    ("unknown-output", "mlp", {**_mlp(), "outputs": [{"name": "probs"}]}, {}, 400, ["outputs[0].name", "probs"]),
    ("missing-input", "gather", {"inputs": [{"name": "index", "shape": [1], "datatype": "INT64", "data": [1]},
                                            {"name": "index", "shape": [1], "datatype": "INT64", "data": [1]}]}, {},
     400, ["twice"]),
    ("wrong-method", "mlp", None, {}, 405, ["POST"]),
    ("model-raises", "gather", {"inputs": [{"name": "index", "shape": [1], "datatype": "INT64", "data": [99]}]}, {},
     500, ["model failed"]),
]


@pytest.mark.parametrize("case", REST_CASES, ids=[c[0] for c in REST_CASES])
def test_rest_bad_input(server: ServerProcess, case) -> None:  # noqa: ANN001
    from serve.support import request

    _, model, body, headers, status, words = case
    url = f"{server.url}/v2/models/{model}/infer"
    if body is None:
        got, h, raw = request("GET", url)
    else:
        got, h, raw = request("POST", url, body if isinstance(body, bytes) else json.dumps(body).encode(), headers)
    assert got == status, raw
    message = json.loads(raw)["error"]
    for word in words:
        assert word in message, (word, message)
    assert "x-model-version" in h
    ok, _, good = server.post("/v2/models/mlp/infer", _mlp())
    assert ok == 200, good  # and the server goes on


def _pb(model: str = "mlp", name: str = "x", datatype: str = "FP32", shape=(1, 256), raw=None, version=""):  # noqa: ANN001, ANN202
    from tritonclient.grpc import service_pb2

    req = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    req.inputs.add(name=name, datatype=datatype, shape=list(shape))
    req.raw_input_contents.append(GOOD_FP32 if raw is None else raw)
    return req


def _typed_short():  # noqa: ANN202
    from tritonclient.grpc import service_pb2

    req = service_pb2.ModelInferRequest(model_name="mlp")
    t = req.inputs.add(name="x", datatype="FP32", shape=[1, 256])
    t.contents.fp32_contents.extend([1.0] * 3)
    return req


def _two_raw():  # noqa: ANN202
    req = _pb()
    req.raw_input_contents.append(b"extra")
    return req


GRPC_CASES = [
    ("unknown-model", lambda: _pb(model="nope"), "NOT_FOUND", ["unknown model"]),
    ("unknown-version", lambda: _pb(version="999"), "NOT_FOUND", ["999"]),
    ("wrong-input-name", lambda: _pb(name="y"), "INVALID_ARGUMENT", ["inputs[0].name", "'y'"]),
    ("wrong-datatype", lambda: _pb(datatype="FP16", raw=GOOD_FP32[:512]), "INVALID_ARGUMENT", ["datatype", "FP16"]),
    ("wrong-shape", lambda: _pb(shape=(1, 128), raw=GOOD_FP32[:512]), "INVALID_ARGUMENT", ["shape", "[1, 128]"]),
    ("raw-length-mismatch", lambda: _pb(raw=GOOD_FP32[:1000]), "INVALID_ARGUMENT",
     ["raw_input_contents[0] (x)", "1000 bytes", "1024"]),
    ("raw-count-mismatch", _two_raw, "INVALID_ARGUMENT", ["raw_input_contents has 2 entries for 1 inputs"]),
    ("typed-too-short", _typed_short, "INVALID_ARGUMENT", ["fp32_contents", "3 elements"]),
    ("nan", lambda: _pb(raw=NAN_FP32), "INVALID_ARGUMENT", ["inputs[0] (x)", "NaN"]),
    ("too-large", lambda: _pb(raw=b"\0" * (LIMIT + 10)), "RESOURCE_EXHAUSTED", []),
    ("model-raises", lambda: _gather_pb(99), "INTERNAL", ["model failed"]),
]


def _gather_pb(index: int):  # noqa: ANN202
    from tritonclient.grpc import service_pb2

    req = service_pb2.ModelInferRequest(model_name="gather")
    req.inputs.add(name="index", datatype="INT64", shape=[1])
    req.raw_input_contents.append(struct.pack("<q", index))
    return req


@pytest.mark.parametrize("case", GRPC_CASES, ids=[c[0] for c in GRPC_CASES])
def test_grpc_bad_input(server: ServerProcess, case) -> None:  # noqa: ANN001
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    _, build, code, words = case
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(build(), timeout=10)
        assert err.value.code() == getattr(grpc.StatusCode, code), err.value.details()
        for word in words:
            assert word in err.value.details(), (word, err.value.details())
        ok = stub.ModelInfer(_pb(), timeout=10)  # and the server goes on
        assert ok.model_name == "mlp"
        assert stub.ModelInfer(_gather_pb(3), timeout=10).raw_output_contents


def test_ten_thousand_tiny_requests_at_once(server: ServerProcess) -> None:
    """REST and gRPC together: each answer is 200 or an immediate 503/UNAVAILABLE, never a 500 or a crash."""
    import aiohttp
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    body = json.dumps({"inputs": [{"name": "index", "shape": [1], "datatype": "INT64", "data": [2]}]}).encode()
    errors_before = metric_value(server.metrics(), "http_requests_total", model="gather", code="500")

    async def rest(n: int) -> list[tuple[int, str | None]]:
        conn = aiohttp.TCPConnector(limit=400)
        async with aiohttp.ClientSession(connector=conn) as session:
            async def one() -> tuple[int, str | None]:
                async with session.post(f"{server.url}/v2/models/gather/infer", data=body) as resp:
                    await resp.read()
                    return resp.status, resp.headers.get("Retry-After")
            return await asyncio.gather(*(one() for _ in range(n)))

    async def grpc_calls(n: int) -> list[str]:
        async with grpc.aio.insecure_channel(server.grpc_target) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

            async def one() -> str:
                try:
                    await stub.ModelInfer(_gather_pb(2), timeout=60)
                    return "OK"
                except grpc.aio.AioRpcError as exc:
                    return exc.code().name
            return await asyncio.gather(*(one() for _ in range(n)))

    async def both() -> tuple:
        return await asyncio.gather(rest(5000), grpc_calls(5000))

    rest_results, grpc_results = asyncio.run(both())
    statuses = {s for s, _ in rest_results}
    assert statuses <= {200, 503}, statuses
    assert all(ra == "1" for s, ra in rest_results if s == 503)
    assert set(grpc_results) <= {"OK", "UNAVAILABLE"}, set(grpc_results)
    assert sum(s == 200 for s, _ in rest_results) > 0 and grpc_results.count("OK") > 0
    text = server.metrics()
    assert "nope" not in text  # an unknown name in a URL makes no new series
    assert metric_value(text, "http_requests_total", model="gather", code="500") == errors_before
    assert metric_value(text, "http_requests_total", model="gather", code="503") == (
        sum(s == 503 for s, _ in rest_results) + grpc_results.count("UNAVAILABLE"))
    assert server.get("/v2/health/live")[0] == 200
    assert server.post("/v2/models/mlp/infer", _mlp())[0] == 200

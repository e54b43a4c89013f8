"""Every endpoint of the Open Inference Protocol, over REST and gRPC, with the real Triton clients.

One server process (two models) for the module; results are checked against ONNX Runtime itself.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from serve.support import ServerProcess

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def server(model_files, tmp_path_factory):  # noqa: ANN001, ANN201
    srv = ServerProcess([str(model_files["mlp"]), str(model_files["two_inputs"]), str(model_files["gather"])],
                        tmp_path_factory.mktemp("proto"), "--drain-delay", "0")
    yield srv
    srv.kill()


def _reference(path, feeds):  # noqa: ANN001, ANN202
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def _version(server: ServerProcess, name: str) -> str:
    return json.loads(server.get(f"/v2/models/{name}")[2])["versions"][0]


# ---------------------------------------------------------------------------------------------- REST


def test_http_health_and_metadata(server: ServerProcess) -> None:
    import tritonclient.http as th

    c = th.InferenceServerClient(server.http_target)
    assert c.is_server_live() and c.is_server_ready()
    meta = c.get_server_metadata()
    assert meta["name"] == "mlserve" and "binary_tensor_data" in meta["extensions"]
    assert c.is_model_ready("mlp")
    assert not c.is_model_ready("nope")
    m = c.get_model_metadata("mlp")
    assert m["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 256]}]
    assert m["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
    v = m["versions"][0]
    assert c.get_model_metadata("mlp", model_version=v)["name"] == "mlp"
    assert c.is_model_ready("mlp", model_version=v)
    cfg = c.get_model_config("mlp")
    assert cfg["max_batch_size"] == 32
    assert cfg["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": [256]}]
    assert cfg["output"] == [{"name": "logits", "data_type": "TYPE_FP32", "dims": [10]}]


@pytest.mark.parametrize("binary_in", [False, True])
@pytest.mark.parametrize("binary_out", [False, True])
def test_http_infer_json_and_binary(server: ServerProcess, model_files, binary_in: bool, binary_out: bool) -> None:  # noqa: ANN001
    import tritonclient.http as th

    c = th.InferenceServerClient(server.http_target)
    x = np.random.default_rng(1).standard_normal((3, 256)).astype(np.float32)
    inp = th.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary_in)
    out = th.InferRequestedOutput("logits", binary_data=binary_out)
    res = c.infer("mlp", [inp], outputs=[out], request_id="r-1")
    (want,) = _reference(model_files["mlp"], {"x": x})
    np.testing.assert_allclose(res.as_numpy("logits"), want, rtol=1e-5, atol=1e-5)
    resp = res.get_response()
    assert resp["model_name"] == "mlp" and resp["model_version"] == _version(server, "mlp") and resp["id"] == "r-1"


def test_http_infer_two_inputs_selected_output_and_version(server: ServerProcess) -> None:
    import tritonclient.http as th

    c = th.InferenceServerClient(server.http_target)
    a = np.array([[1.5, 2, 3], [4, 5, 6]], np.float32)
    b = np.array([[1, 1, 1], [2, 2, 2]], np.int32)
    ia, ib = th.InferInput("a", [2, 3], "FP32"), th.InferInput("b", [2, 3], "INT32")
    ia.set_data_from_numpy(a, binary_data=False)
    ib.set_data_from_numpy(b, binary_data=True)
    v = _version(server, "two_inputs")
    res = c.infer("two_inputs", [ia, ib], model_version=v, outputs=[th.InferRequestedOutput("neg", binary_data=False)])
    np.testing.assert_array_equal(res.as_numpy("neg"), -a)
    assert res.as_numpy("sum") is None  # only what was asked for
    res = c.infer("two_inputs", [ia, ib])
    np.testing.assert_array_equal(res.as_numpy("sum"), a + b)


def test_plain_json_with_and_without_content_type(server: ServerProcess) -> None:
    body = {"inputs": [{"name": "index", "shape": [2], "datatype": "INT64", "data": [1, 7]}]}
    for headers in ({}, {"Content-Type": "application/json"}):
        status, h, raw = server.post("/v2/models/gather/infer", body, headers)
        assert status == 200, raw
        doc = json.loads(raw)
        assert doc["outputs"][0]["data"] == [4, 5, 6, 7, 28, 29, 30, 31]
        assert doc["outputs"][0]["shape"] == [2, 4]
        assert h["x-model-version"] == doc["model_version"] == _version(server, "gather")


def test_nested_json_data_is_accepted(server: ServerProcess) -> None:
    body = {"inputs": [{"name": "a", "shape": [1, 3], "datatype": "FP32", "data": [[1, 2, 3]]},
                       {"name": "b", "shape": [1, 3], "datatype": "INT32", "data": [[0, 0, 1]]}]}
    status, _, raw = server.post("/v2/models/two_inputs/infer", body)
    assert status == 200, raw
    assert json.loads(raw)["outputs"][0]["data"] == [1, 2, 4]


def test_every_rest_response_names_the_version(server: ServerProcess) -> None:
    v = _version(server, "mlp")
    for path in ("/v2/models/mlp", "/v2/models/mlp/ready", "/v2/models/mlp/config"):
        assert server.get(path)[1]["x-model-version"] == v
    for path in ("/v2", "/v2/health/live", "/v2/health/ready", "/metrics", "/health", "/ready", "/nope"):
        header = server.get(path)[1]["x-model-version"]
        assert f"mlp={v}" in header.split(","), (path, header)
    status, h, _ = server.post("/v2/models/mlp/infer", b"{not json")
    assert status == 400 and h["x-model-version"] == v


# ---------------------------------------------------------------------------------------------- gRPC


def test_grpc_health_and_metadata(server: ServerProcess) -> None:
    import tritonclient.grpc as tg

    c = tg.InferenceServerClient(server.grpc_target)
    assert c.is_server_live() and c.is_server_ready()
    meta = c.get_server_metadata(as_json=True)
    assert meta["name"] == "mlserve" and "binary_tensor_data" in meta["extensions"]
    assert c.is_model_ready("mlp")
    m = c.get_model_metadata("two_inputs", as_json=True)
    assert [(t["name"], t["datatype"], t["shape"]) for t in m["inputs"]] == [("a", "FP32", ["-1", "3"]),
                                                                             ("b", "INT32", ["-1", "3"])]
    assert m["versions"] == [_version(server, "two_inputs")]
    with pytest.raises(tg.InferenceServerException) as err:
        c.get_model_metadata("nope")
    assert "StatusCode.NOT_FOUND" in str(err.value.status())



def test_grpc_model_config_matches_rest(server: ServerProcess) -> None:
    """perf_analyzer reads the model configuration over the protocol it drives: gRPC gives REST's document,
    decoded here by the Triton client's own ModelConfig message (the field numbers must be Triton's)."""
    import tritonclient.grpc as tg
    import tritonclient.http as th

    c = tg.InferenceServerClient(server.grpc_target)
    for name in ("mlp", "two_inputs", "gather"):
        rest = th.InferenceServerClient(server.http_target).get_model_config(name)
        cfg = c.get_model_config(name).config  # tritonclient's inference.ModelConfig
        assert (cfg.name, cfg.platform, cfg.backend, cfg.max_batch_size) == (name, rest["platform"], rest["backend"],
                                                                             rest["max_batch_size"])
        got = [(t.name, tg.model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in cfg.input]
        assert got == [(t["name"], t["data_type"], t["dims"]) for t in rest["input"]]
        got = [(t.name, tg.model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in cfg.output]
        assert got == [(t["name"], t["data_type"], t["dims"]) for t in rest["output"]]
        assert cfg.HasField("dynamic_batching") == ("dynamic_batching" in rest)
    with pytest.raises(tg.InferenceServerException) as err:
        c.get_model_config("nope")
    assert "StatusCode.NOT_FOUND" in str(err.value.status())
    versions = _version(server, "mlp")
    assert c.get_model_config("mlp", model_version=versions).config.name == "mlp"


def test_grpc_infer_raw_contents(server: ServerProcess, model_files) -> None:  # noqa: ANN001
    import tritonclient.grpc as tg

    c = tg.InferenceServerClient(server.grpc_target)
    x = np.random.default_rng(2).standard_normal((5, 256)).astype(np.float32)
    inp = tg.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    res = c.infer("mlp", [inp], request_id="g-1")
    (want,) = _reference(model_files["mlp"], {"x": x})
    np.testing.assert_allclose(res.as_numpy("logits"), want, rtol=1e-5, atol=1e-5)
    resp = res.get_response()
    assert resp.model_version == _version(server, "mlp") and resp.id == "g-1"
    assert len(resp.raw_output_contents) == 1


def test_grpc_infer_typed_contents_and_outputs(server: ServerProcess) -> None:
    import grpc
    import tritonclient.grpc as tg
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    c = tg.InferenceServerClient(server.grpc_target)
    a = np.array([[1, 2, 3]], np.float32)
    b = np.array([[3, 2, 1]], np.int32)
    ia, ib = tg.InferInput("a", [1, 3], "FP32"), tg.InferInput("b", [1, 3], "INT32")
    ia.set_data_from_numpy(a)
    ib.set_data_from_numpy(b)
    res = c.infer("two_inputs", [ia, ib], outputs=[tg.InferRequestedOutput("sum")])
    np.testing.assert_array_equal(res.as_numpy("sum"), a + b)
    assert res.as_numpy("neg") is None
    # typed contents instead of raw bytes (what some clients send), through the official stubs
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        req = service_pb2.ModelInferRequest(model_name="two_inputs")
        t = req.inputs.add(name="a", datatype="FP32", shape=[1, 3])
        t.contents.fp32_contents.extend([1, 2, 3])
        t = req.inputs.add(name="b", datatype="INT32", shape=[1, 3])
        t.contents.int_contents.extend([1, 1, 1])
        resp = stub.ModelInfer(req)
        assert [o.name for o in resp.outputs] == ["sum", "neg"]
        assert np.frombuffer(resp.raw_output_contents[0], np.float32).tolist() == [2, 3, 4]


# ---------------------------------------------------------------------------------------------- /predict


def test_predict_health_ready(tmp_path, model_files) -> None:  # noqa: ANN001
    with ServerProcess([str(model_files["mlp"])], tmp_path, "--drain-delay", "0", grpc=False) as srv:
        x = np.random.default_rng(3).standard_normal(256).astype(np.float32)
        status, h, raw = srv.post("/predict", {"features": x.tolist()})
        assert status == 200, raw
        doc = json.loads(raw)
        (want,) = _reference(model_files["mlp"], {"x": x[None, :]})
        np.testing.assert_allclose(doc["prediction"], want[0], rtol=1e-5, atol=1e-5)
        assert doc["model_version"] == h["x-model-version"] and doc["latency_ms"] > 0
        status, _, raw = srv.post("/predict", {"features": [x.tolist(), x.tolist()]})
        assert status == 200 and np.asarray(json.loads(raw)["prediction"]).shape == (2, 10)
        assert srv.get("/health")[0] == 200 and srv.get("/ready")[0] == 200
        assert f"serving REST (Open Inference Protocol v2, /predict, /metrics) on {srv.url}" in srv.stderr()
        status, _, raw = srv.post("/predict", {"features": [1.0, 2.0]})
        assert status == 400 and b"256" in raw

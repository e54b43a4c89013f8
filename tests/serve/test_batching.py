"""Dynamic batching on real ONNX Runtime sessions: batched results equal unbatched ones, only compatible
requests share a run, the queue is bounded, timeouts and disconnects free their place."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import numpy as np
import onnxruntime as ort
import pytest

from mlserve.serve.batching import Batcher, BatchingOptions
from mlserve.serve.errors import Overloaded, RequestTimeout
from mlserve.serve.runtime import OnnxModel
from serve.support import ServerProcess, metric_value

pytestmark = pytest.mark.timeout(240)


class _Recorder:
    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, rows: int, queued: float, took: float) -> None:
        self.batches.append(rows)


def _key(feeds):  # noqa: ANN001, ANN202 - the same key LoadedVersion.submit builds
    return (tuple((n, a.shape[1:], a.dtype.str) for n, a in feeds.items()), ())


async def _submit_all(model: OnnxModel, requests: list[dict], options: BatchingOptions, rec: _Recorder,
                      hold: threading.Event | None = None) -> list:
    loop = asyncio.get_running_loop()
    run = model.run
    if hold is not None:
        def run(feeds, outputs):  # noqa: ANN001, ANN202 - the first run waits until everything is queued
            hold.wait(10)
            return model.run(feeds, outputs)
    b = Batcher(run, batchable=model.batchable, options=options, loop=loop, observe=rec)
    try:
        futures = [b.submit(f, next(iter(f.values())).shape[0], _key(f), None) for f in requests]
        if hold is not None:
            await asyncio.sleep(0.05)
            hold.set()
        return await asyncio.gather(*futures)
    finally:
        b.close()


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_batched_equals_unbatched_on_real_models(model_files, which: str) -> None:  # noqa: ANN001
    model = OnnxModel(model_files[which], threads=1)
    rng = np.random.default_rng(5)
    shape = (256,) if which == "mlp" else (3, 64, 64)
    requests = [{model.inputs[0].name: rng.standard_normal((int(rng.integers(1, 4)), *shape)).astype(np.float32)}
                for _ in range(24)]
    rec = _Recorder()
    results = asyncio.run(_submit_all(model, requests, BatchingOptions(max_batch_size=32), rec,
                                      hold=threading.Event()))
    assert max(rec.batches) > 1, rec.batches  # they did share runs
    assert sum(rec.batches) == sum(next(iter(r.values())).shape[0] for r in requests)
    assert all(b <= 32 for b in rec.batches)
    reference = ort.InferenceSession(str(model_files[which]), providers=["CPUExecutionProvider"])
    for feeds, (out,) in zip(requests, results):
        (want,) = reference.run(None, feeds)
        assert out.shape == want.shape
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)


def test_different_non_batch_shapes_never_share_a_run(model_files) -> None:  # noqa: ANN001
    model = OnnxModel(model_files["ragged"], threads=1)
    requests = [{"x": np.full((1, 3 + (i % 2)), i, np.float32)} for i in range(10)]
    rec = _Recorder()
    shapes_seen: list[set] = []
    real_run = model.run

    def spy(feeds, outputs):  # noqa: ANN001, ANN202
        shapes_seen.append({a.shape[1:] for a in feeds.values()})
        return real_run(feeds, outputs)

    model.run = spy  # type: ignore[method-assign] - observe what each run receives
    results = asyncio.run(_submit_all(model, requests, BatchingOptions(max_batch_size=32), rec,
                                      hold=threading.Event()))
    assert all(len(s) == 1 for s in shapes_seen)
    for feeds, (out,) in zip(requests, results):
        np.testing.assert_array_equal(out, feeds["x"] * 2)


def test_fixed_first_dimension_is_never_batched(model_files) -> None:  # noqa: ANN001
    model = OnnxModel(model_files["fixed"], threads=1)
    assert not model.batchable
    rec = _Recorder()
    requests = [{"x": np.full((1, 4), i - 3, np.float32)} for i in range(6)]
    results = asyncio.run(_submit_all(model, requests, BatchingOptions(max_batch_size=32), rec,
                                      hold=threading.Event()))
    assert rec.batches == [1] * 6
    for feeds, (out,) in zip(requests, results):
        np.testing.assert_array_equal(out, np.maximum(feeds["x"], 0))


def test_queue_is_bounded_and_timeouts_free_the_slot(model_files) -> None:  # noqa: ANN001
    model = OnnxModel(model_files["mlp"], threads=1)
    hold = threading.Event()

    async def scenario() -> None:
        loop = asyncio.get_running_loop()

        def run(feeds, outputs):  # noqa: ANN001, ANN202
            hold.wait(10)
            return model.run(feeds, outputs)

        b = Batcher(run, batchable=True, options=BatchingOptions(max_batch_size=1, max_queue=2, request_timeout=0.3),
                    loop=loop)
        x = {"x": np.zeros((1, 256), np.float32)}
        first = b.submit(x, 1, _key(x), None)
        await asyncio.sleep(0.05)  # the executor took it and waits on `hold`
        queued = [b.submit(x, 1, _key(x), None) for _ in range(2)]
        with pytest.raises(Overloaded) as full:
            b.submit(x, 1, _key(x), None)
        assert full.value.headers["retry-after"] == "1"
        for f in queued:
            with pytest.raises(RequestTimeout):
                await f
        await asyncio.sleep(0)
        assert b.queued() == 0  # the expired requests left the queue at once
        again = b.submit(x, 1, _key(x), None)
        again.cancel()  # a client that went away
        await asyncio.sleep(0)  # done callbacks run on the next turn of the loop
        assert b.queued() == 0
        hold.set()
        with pytest.raises(RequestTimeout):
            await first  # it ran past its deadline: the late result is dropped
        b.close()

    asyncio.run(scenario())


def test_server_batches_concurrent_requests_and_answers_each_correctly(tmp_path, model_files) -> None:  # noqa: ANN001
    import tritonclient.http as th

    with ServerProcess([str(model_files["mlp"])], tmp_path, "--max-queue-delay", "20", "--drain-delay", "0",
                       grpc=False) as srv:
        rng = np.random.default_rng(9)
        xs = [rng.standard_normal((1, 256)).astype(np.float32) for _ in range(32)]
        results: list = [None] * len(xs)

        def call(i: int) -> None:
            c = th.InferenceServerClient(srv.http_target)
            inp = th.InferInput("x", [1, 256], "FP32")
            inp.set_data_from_numpy(xs[i], binary_data=i % 2 == 0)
            results[i] = c.infer("mlp", [inp]).as_numpy("logits")

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(xs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        ref = ort.InferenceSession(str(model_files["mlp"]), providers=["CPUExecutionProvider"])
        for x, got in zip(xs, results):
            np.testing.assert_allclose(got, ref.run(None, {"x": x})[0], rtol=1e-4, atol=1e-5)
        text = srv.metrics()
        runs = metric_value(text, "mlserve_batch_size_count", model="mlp")
        rows = metric_value(text, "mlserve_batch_size_sum", model="mlp")
        assert rows == 32 and runs < 32, (runs, rows)  # some requests shared a run


def test_disconnected_client_frees_its_queue_slot(tmp_path, model_files) -> None:  # noqa: ANN001
    with ServerProcess([str(model_files["slow"])], tmp_path, "--max-queue", "2", "--max-batch-size", "1",
                       "--drain-delay", "0", grpc=False) as srv:
        rows = 1024  # about a second of compute on one thread
        header = json.dumps({"inputs": [{"name": "x", "shape": [rows, 2048], "datatype": "FP32",
                                         "parameters": {"binary_data_size": rows * 2048 * 4}}]}).encode()
        big = header + np.ones((rows, 2048), np.float32).tobytes()
        small = json.dumps({"inputs": [{"name": "x", "shape": [1, 2048], "datatype": "FP32",
                                        "data": [0.0] * 2048}]}).encode()

        def raw_post(body: bytes, extra: bytes = b"") -> socket.socket:
            s = socket.create_connection(("127.0.0.1", srv.http_port))
            s.sendall(b"POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n"
                      % (len(body), extra) + body)
            return s

        busy = raw_post(big, b"Inference-Header-Content-Length: %d\r\n" % len(header))  # the only executor is busy
        time.sleep(0.3)
        waiting = [raw_post(small) for _ in range(2)]  # fill the queue
        time.sleep(0.3)
        status, _, _ = srv.post("/v2/models/slow/infer", small, timeout=30)
        assert status == 503  # full
        assert metric_value(srv.metrics(), "mlserve_queue_depth", model="slow") == 2
        for s in waiting:
            s.close()  # these clients give up
        time.sleep(0.3)
        status, _, raw = srv.post("/v2/models/slow/infer", small, timeout=60)
        assert status == 200, raw  # their places were freed
        busy.close()
        assert metric_value(srv.metrics(), "http_requests_total", model="slow", code="499") == 2


def test_the_versions_of_a_model_share_its_executor_threads_first_come_first_served(model_files) -> None:  # noqa: ANN001
    """Two versions (two real sessions) on one pool of one thread: no thread of their own, the oldest request
    of either queue runs first, each answer comes from its own version, and retiring one leaves the other."""
    from mlserve.serve.batching import ExecutorPool

    models = {v: OnnxModel(model_files[f], threads=1) for v, f in (("a", "mlp"), ("b", "mlp_b"))}
    order: list[str] = []
    hold = threading.Event()

    def runner(tag: str):  # noqa: ANN202
        def run(feeds, outputs):  # noqa: ANN001, ANN202
            hold.wait(10)
            order.append(tag)
            return models[tag].run(feeds, outputs)
        return run

    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((1, 256)).astype(np.float32) for _ in range(6)]
    tags = ["a", "b", "a", "b", "b", "a"]

    async def main() -> list:
        loop = asyncio.get_running_loop()
        before = threading.active_count()
        pool = ExecutorPool(1, "mlp")
        opts = BatchingOptions(max_batch_size=1)
        batchers = {t: Batcher(runner(t), batchable=True, options=opts, loop=loop, pool=pool) for t in ("a", "b")}
        assert threading.active_count() == before + 1  # the pool's one thread, none per version
        futures = [batchers[t].submit({"x": x}, 1, _key({"x": x}), None) for t, x in zip(tags, xs)]
        await asyncio.sleep(0.05)
        hold.set()
        results = await asyncio.gather(*futures)
        batchers["a"].close()
        after = await batchers["b"].submit({"x": xs[0]}, 1, _key({"x": xs[0]}), None)
        batchers["b"].close()
        pool.close()
        return [*results, after]

    results = asyncio.run(main())
    assert order == [*tags, "b"]  # first come, first served across the two queues
    for t, x, (out,) in zip([*tags, "b"], [*xs, xs[0]], results):
        want = ort.InferenceSession(str(model_files["mlp" if t == "a" else "mlp_b"]),
                                    providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)

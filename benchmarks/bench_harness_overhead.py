"""Does the benchmark harness distort what it measures?

Target (issue 4): the harness's p50 for a tiny ONNX model is within 5% of a bare ``session.run`` loop
measured in the same process. The two are interleaved round by round (bare, harness, bare, ...) so
that drift on a shared machine hits both alike; the figure is the median over rounds of each p50.

    python benchmarks/bench_harness_overhead.py [--rounds 12] [--seconds 0.5] [--threads 1]

Prints both figures and their ratio; exits 1 when the ratio is outside [0.95, 1.05].
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def tiny_model(path: Path, width: int = 64) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((width, width)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        [numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def bare_loop_p50(session, feed: dict, seconds: float) -> tuple[float, int]:
    """The simplest honest loop: time each session.run, nothing else."""
    run, clock = session.run, time.perf_counter
    for _ in range(200):  # warm-up
        run(None, feed)
    samples = []
    end = clock() + seconds
    while True:
        t0 = clock()
        run(None, feed)
        t1 = clock()
        samples.append(t1 - t0)
        if t1 >= end:
            break
    return float(np.median(samples)) * 1e3, len(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12, help="interleaved rounds of each method")
    parser.add_argument("--seconds", type=float, default=0.5, help="measuring time per round and method")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads for both sessions")
    args = parser.parse_args()

    import onnxruntime as ort

    from mlserve.benchmark.backends import make_inputs, make_runner, onnx_input_specs
    from mlserve.benchmark.harness import MeasureConfig, measure_callable

    with tempfile.TemporaryDirectory() as tmp:
        path = tiny_model(Path(tmp) / "tiny.onnx")
        inputs = make_inputs(onnx_input_specs(path), 1, seed=0)
        runner = make_runner("ort-cpu", path, inputs, threads=args.threads)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        config = MeasureConfig(warmup_s=0.05, min_iterations=100, min_seconds=args.seconds, max_extra_windows=0)

        bare, harness = [], []
        for i in range(args.rounds):
            order = ("bare", "harness") if i % 2 == 0 else ("harness", "bare")
            for method in order:
                if method == "bare":
                    p50, n = bare_loop_p50(session, inputs, args.seconds)
                    bare.append(p50)
                else:
                    measurement = measure_callable(runner.call, config)
                    harness.append(measurement.stats.median_ms)
                    n = measurement.stats.count
                print(f"round {i + 1:2d} {method:8s} p50 {(bare if method == 'bare' else harness)[-1] * 1e3:8.2f} us  ({n} calls)", file=sys.stderr)

    bare_p50, harness_p50 = statistics.median(bare), statistics.median(harness)
    ratio = harness_p50 / bare_p50
    print(f"model: MatMul 64x64 + Relu, batch 1, {args.threads} thread(s); {args.rounds} interleaved rounds of {args.seconds} s")
    print(f"bare session.run loop p50: {bare_p50 * 1e3:.2f} us (median over rounds)")
    print(f"mlserve harness p50:       {harness_p50 * 1e3:.2f} us (median over rounds)")
    print(f"ratio harness / bare:      {ratio:.4f} (target 0.95 .. 1.05): {'PASS' if 0.95 <= ratio <= 1.05 else 'FAIL'}")
    return 0 if 0.95 <= ratio <= 1.05 else 1


if __name__ == "__main__":
    sys.exit(main())

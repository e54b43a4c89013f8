"""The batching tax at low load, measured interleaved: mlserve serve with batching on against off, concurrency 1.

The target (issue 9): at concurrency 1, p50 with batching on is at most 1.1x p50 with it off. bench_serve.py
measures the two servers one after the other, once, so a change in the machine's load between the two
lands in the ratio. Here both servers run at once and are measured in turn, round after round
(on, off, on, off, ...), with the same wrk load (one connection, batch-1 JSON OIP requests, the models
of bench_serve.py); the figure is the median of the per-round ratios of p50 (and of p99), with their range.

    python benchmarks/bench_batching_tax.py
    python benchmarks/bench_batching_tax.py --models mlp --rounds 10 --duration 4
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bench_serve import _lua, measure_server, start_mlserve, wait_ok  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("needs wrk: apt-get install -y wrk")
    from serve import models

    work = Path(tempfile.mkdtemp(prefix="bench-tax-"))
    files = {"mlp": models.mlp(work / "mlp.onnx"), "cnn": models.cnn(work / "cnn.onnx")}
    rng = np.random.default_rng(0)
    shapes = {"mlp": ("x", (1, 256)), "cnn": ("image", (1, 3, 64, 64))}
    load = os.getloadavg()
    print(f"# bench_batching_tax: {os.cpu_count()} CPUs, load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{args.rounds} rounds of {args.duration:g}s per server and model, concurrency 1", flush=True)
    on = start_mlserve(work, files, True, "batching-on")
    off = start_mlserve(work, files, False, "batching-off")
    try:
        for model in args.models.split(","):
            name, shape = shapes[model]
            arr = rng.standard_normal(shape).astype(np.float32)
            body = work / f"{model}.json"
            body.write_text(json.dumps({"inputs": [{"name": name, "shape": list(shape), "datatype": "FP32",
                                                    "data": [float(v) for v in arr.ravel()]}]}))
            lua = work / f"{model}.lua"
            lua.write_text(_lua(body))
            for server in (on, off):
                wait_ok(server.url(model), body.read_bytes(), proc=server.proc)
                measure_server(server, model, lua, 1, 1.0)  # warm-up
            p50, p99 = [], []
            for r in range(args.rounds):
                a = measure_server(on, model, lua, 1, args.duration)
                b = measure_server(off, model, lua, 1, args.duration)
                p50.append(a.p50_ms / b.p50_ms)
                p99.append(a.p99_ms / b.p99_ms)
                print(f"{model} round {r}: on p50 {a.p50_ms:.3f} ms p99 {a.p99_ms:.3f} ms ({a.rps:.0f} req/s, errors {a.errors}); "
                      f"off p50 {b.p50_ms:.3f} ms p99 {b.p99_ms:.3f} ms ({b.rps:.0f} req/s, errors {b.errors})", flush=True)
            print(f"# {model}: p50 on/off median {statistics.median(p50):.3f} [{min(p50):.3f}, {max(p50):.3f}]; "
                  f"p99 on/off median {statistics.median(p99):.3f} [{min(p99):.3f}, {max(p99):.3f}] (target p50 <= 1.1)",
                  flush=True)
    finally:
        on.stop()
        off.stop()
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()
    print(f"# load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()

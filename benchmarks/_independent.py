"""An independent interleaved measurement: each side runs in a worker process of its own, and the
controller alternates blocks (A B, B A, ...), each block timed inside its worker with time.perf_counter.

It shares no code with mlserve's harness (so that it can check mlserve's claims): a worker is started
with a JSON spec saying what to load, then answers "run N" with the median of N timed calls.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Any

WORKER = r'''
import importlib, json, sys, time
spec = json.loads(sys.argv[1])
import numpy as np
threads = spec["threads"]
if spec["kind"] == "torch":
    import torch
    torch.set_num_threads(threads)
    sys.path.insert(0, spec["path"])
    net, example = getattr(importlib.import_module(spec["module"]), spec["factory"])()
    net.eval()
    args = [torch.from_numpy(np.load(spec["inputs"])[name]) for name in spec["names"]]
    def call():
        with torch.inference_mode():
            net(*args)
else:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 4
    sess = ort.InferenceSession(spec["model"], opts, providers=["CPUExecutionProvider"])
    data = np.load(spec["inputs"])
    feeds = {i.name: data[i.name] for i in sess.get_inputs()}
    def call():
        sess.run(None, feeds)
for _ in range(20):
    call()
print("ready", flush=True)
for line in sys.stdin:
    n = int(line.split()[1])
    call()
    times = []
    for _ in range(n):
        t0 = time.perf_counter(); call(); times.append(time.perf_counter() - t0)
    times.sort()
    print(json.dumps({"median_ms": times[len(times) // 2] * 1e3}), flush=True)
'''


class Worker:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(spec)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if line.strip() != "ready":
            raise RuntimeError(f"worker did not start: {spec}")

    def block(self, n: int) -> float:
        self.proc.stdin.write(f"run {n}\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return float(json.loads(self.proc.stdout.readline())["median_ms"])  # type: ignore[union-attr]

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait(timeout=30)


def calls_for(worker: Worker, seconds: float) -> int:
    """How many calls make a block of about ``seconds``."""
    started = time.perf_counter()
    worker.block(5)
    per_call = (time.perf_counter() - started) / 6
    return max(5, int(seconds / max(per_call, 1e-6)))


def interleaved_ratio(a: dict[str, Any], b: dict[str, Any], *, rounds: int = 12, block_s: float = 0.25) -> tuple[float, list[float]]:
    """median over rounds of (a's block median / b's block median): above 1 means b is faster."""
    wa, wb = Worker(a), Worker(b)
    try:
        na, nb = calls_for(wa, block_s), calls_for(wb, block_s)
        ratios = []
        for r in range(rounds):
            if r % 2 == 0:
                ma, mb = wa.block(na), wb.block(nb)
            else:
                mb, ma = wb.block(nb), wa.block(na)
            ratios.append(ma / mb)
        return statistics.median(ratios), ratios
    finally:
        wa.close()
        wb.close()

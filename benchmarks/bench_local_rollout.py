"""How long a ``mlserve rollout canary --target local`` takes, start to promotion, with short steps.

One real ``mlserve serve churn@production`` (ONNX lookup models of ``tests/rollout/local``), about 150
requests/s from a thread, and ``--runs`` canaries in a row alternating ``--to 2`` and ``--to 1``, each
``--steps 20,100 --pause 3.5s`` judged by the rollout's own scrapes of ``/metrics`` (the short analysis of
the tests: 1 s windows, 0.5 s scrapes, 3 points per side). Prints each run's exit code and seconds,
then the range.

    python benchmarks/bench_local_rollout.py --runs 6
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--steps", default="20,100")
    parser.add_argument("--pause", default=None, help="default: the tests' 3.5s")
    args = parser.parse_args()

    from rollout.local.local_support import ANALYSIS, MODEL, PAUSE, Traffic, make_registry, run_cli, start_server, target_args

    root = Path(tempfile.mkdtemp(prefix="bench-local-rollout-"))
    try:
        registry = make_registry(root)
        analysis = root / "analysis.yaml"
        analysis.write_text(ANALYSIS)
        times = []
        with start_server(root, registry) as server:
            for i in range(args.runs):
                with Traffic(server):
                    started = time.monotonic()
                    rc, _, err = run_cli("rollout", "canary", MODEL, "--to", "2" if i % 2 == 0 else "1",
                                         *target_args(server, registry), "--steps", args.steps,
                                         "--pause", args.pause or PAUSE, "--analysis", str(analysis), timeout=300)
                    took = time.monotonic() - started
                times.append(took)
                print(f"run {i + 1}: exit {rc}, {took:.2f} s {err.strip()}", flush=True)
        print(f"{len(times)} runs: {min(times):.2f} to {max(times):.2f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`mlserve rollout status` of an active rollout: API requests per call and wall time, against the test emulator.

Target (issue 10): one read of the Lease plus one per managed object (the route, the canary and the
stable Deployment: 4 GETs for a canary; 5 with --baseline), nothing else.

    flock /tmp/mlserve-bench.lock python benchmarks/bench_rollout_status.py [--calls 200] [--cli 10]

Prints requests per call (counted by the emulator), the in-process wall time of
``mlserve.rollout.api.rollout_status`` (median and p90 over --calls, each call building its store
as the CLI does), and the wall time of the command itself (``python -m mlserve rollout status``,
median over --cli runs, process start included). Needs Go and the evanphx/json-patch library (see
tests/helpers/kube/gojsonpatch.py).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--cli", type=int, default=10)
    parser.add_argument("--baseline", action="store_true", help="measure a rollout with --baseline (one more object)")
    args = parser.parse_args()

    from helpers.kube.server import Cluster
    from mlserve.rollout.api import Target, rollout_status
    from mlserve.rollout.engine import RolloutConfig, RolloutEngine
    from mlserve.rollout.kube import KubernetesStore
    from rollout.k8s.k8s_support import HTTP_ROUTE, NS, STABLE_DEPLOYMENT, STABLE_SERVICE

    cluster = Cluster().start()
    try:
        for obj in (STABLE_DEPLOYMENT, STABLE_SERVICE, HTTP_ROUTE):
            cluster.put(copy.deepcopy(obj))
        store = KubernetesStore.connect(server=cluster.url)
        cfg = RolloutConfig(name="iris", to="2", namespace=NS, steps=[10, 50, 100], pause=3600, timeout=7200, poll=0.5,
                            lease_seconds=30, owner="bench", baseline=args.baseline)
        engine = RolloutEngine(store)
        thread = threading.Thread(target=engine.run, args=(cfg,), daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            lease = cluster.get("Lease", "mlserve-rollout-iris", NS)
            if lease and '"weight":10' in lease["metadata"]["annotations"]["rollout.mlserve.dev/state"]:
                break
            time.sleep(0.05)
        else:
            raise SystemExit("the rollout did not reach its first step")

        target = Target(namespace=NS, server=cluster.url)
        requests, walls = [], []
        for _ in range(args.calls):
            before = len(cluster.emulator.seen)
            started = time.perf_counter()
            result = rollout_status("iris", target)
            walls.append(time.perf_counter() - started)
            # the paused rollout only PATCHes its Lease (heartbeats): every GET is the status call's
            requests.append(sum(1 for r in cluster.emulator.seen[before:] if r.method == "GET"))
        assert result.phase == "progressing" and result.step == 1, result
        cli_walls = []
        env = dict(os.environ, MLSERVE_NO_PROGRESS="1")
        for _ in range(args.cli):
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "mlserve", "rollout", "status", "iris", "-n", NS, "--server",
                                   cluster.url, "--json"], capture_output=True, text=True, env=env, check=False)
            cli_walls.append(time.perf_counter() - started)
            assert done.returncode == 0, done.stderr
        walls.sort()
        print(f"rollout status of an active {'baseline ' if args.baseline else ''}canary against the emulator "
              f"({args.calls} in-process calls, {args.cli} CLI runs)")
        print(f"  requests per call: min {min(requests)}, max {max(requests)} "
              f"(target: 1 Lease + {4 if args.baseline else 3} objects = {5 if args.baseline else 4})")
        print(f"  in-process wall time per call: median {statistics.median(walls) * 1000:.1f} ms, "
              f"p90 {walls[int(0.9 * (len(walls) - 1))] * 1000:.1f} ms")
        print(f"  `python -m mlserve rollout status --json`: median {statistics.median(cli_walls) * 1000:.0f} ms "
              f"(process start included)")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()

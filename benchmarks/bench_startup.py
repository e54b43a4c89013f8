"""Start-up time of the commands CI scripts call in loops, against the floor of importing typer and rich.

Targets (issue 8): ``mlserve --version`` and ``mlserve resolve NAME@STAGE`` at most 2x the wall time
of ``python -c "import typer, rich"``, ``mlserve --help`` at most 3x. Every command is run in the
same rounds, interleaved (A B C D, A B C D, ...), so a noisy machine slows all of them alike; the
figures are medians over the rounds and the ratios are medians of per-round ratios.

    python benchmarks/bench_startup.py --rounds 30
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"--version": 2.0, "resolve": 2.0, "show --field": None, "--help": 3.0, "list NAME": None}


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.decode()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    mlserve = str(Path(sys.executable).with_name("mlserve"))
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVE_")}
        env["MLSERVE_REGISTRY"] = str(Path(tmp) / "reg")
        art = Path(tmp) / "model.bin"
        art.write_bytes(b"weights")
        subprocess.run([mlserve, "register", "churn", str(art), "--stage", "production"], check=True,
                       capture_output=True, env=env)
        commands = {
            "floor: import typer, rich": [sys.executable, "-c", "import typer, rich"],
            "--version": [mlserve, "--version"],
            "resolve": [mlserve, "resolve", "churn@production"],
            "show --field": [mlserve, "show", "churn@production", "--field", "sha256"],
            "--help": [mlserve, "--help"],
            "list NAME": [mlserve, "list", "churn"],
        }
        for cmd in commands.values():  # warm the page cache and the bytecode caches
            _wall(cmd, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, cmd in commands.items():
                times[name].append(_wall(cmd, env))
    floor = times["floor: import typer, rich"]
    print(f"{'command':28} {'median ms':>10} {'x floor':>8} {'target':>7}  verdict   ({args.rounds} interleaved rounds)")
    for name, values in times.items():
        ratio = statistics.median(v / f for v, f in zip(values, floor))
        target = TARGETS.get(name)
        verdict = "" if target is None else ("met" if ratio <= target else "NOT MET")
        print(f"{name:28} {statistics.median(values) * 1000:10.1f} {ratio:8.2f} "
              f"{'' if target is None else f'{target:.1f}x':>7}  {verdict}")


if __name__ == "__main__":
    main()

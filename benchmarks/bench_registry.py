"""Registry speed targets (issue 3), measured through the real `mlserve` command in subprocesses.

1. `mlserve --help`, `list` and `promote` import none of torch, onnxruntime, scipy, kubernetes.
2. `show`, `promote` and `resolve` on a model with 10,000 versions take at most 1.5x their time with
   10 versions; `list` of 10,000 versions finishes in well under a second.
3. Registering a 1 GiB file takes at most 1.3x the time of copying it with `cp`.

The 10,000-version registry is built by registering 10 versions for real and then writing the
remaining version directories with the registry's own schema classes (registering 10,000 files one
by one with fsyncs takes minutes); `mlserve verify --no-content` checks the result is a valid
registry before anything is timed. Timings alternate between the two registries and report medians.

usage: python benchmarks/bench_registry.py [--versions 10000] [--repeat 15] [--gib 1] [--skip-copy]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlserve.registry import Registry
from mlserve.registry import fsio
from mlserve.registry.schema import Event, VersionRecord
from mlserve.registry.store import _dump, now

HEAVY = {"torch", "onnxruntime", "onnx", "scipy", "kubernetes", "tensorrt", "sklearn"}


def mlserve(*args: str, registry: Path) -> float:
    env = {**os.environ, "MLSERVE_REGISTRY": str(registry)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mlserve", *args], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"mlserve {' '.join(args)} failed: {proc.stderr}")
    return elapsed


def heavy_imports(args: list[str], registry: Path) -> list[str]:
    code = ("import sys, runpy\nsys.argv=['mlserve', *sys.argv[1:]]\ntry:\n runpy.run_module('mlserve', run_name='__main__')\n"
            "except SystemExit:\n pass\nprint(sorted({m.split('.')[0] for m in sys.modules} & %r), file=sys.stderr)" % HEAVY)
    env = {**os.environ, "MLSERVE_REGISTRY": str(registry)}
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)
    return json.loads(proc.stderr.strip().splitlines()[-1].replace("'", '"'))


def build(root: Path, total: int, work: Path) -> Registry:
    reg = Registry(root)
    for i in range(min(total, 10)):
        art = work / f"m{i}.bin"
        art.write_bytes(f"model {i}".encode() * 100)
        reg.register("big", art)
    reg.promote("big", "1")
    reg.promote("big", "2")
    model_dir = root / "models" / "big"
    template = reg._record("big", "1")
    journal_lines = []
    for n in range(11, total + 1):
        version = str(n)
        vdir = model_dir / "versions" / version
        art_dir = vdir / "artifact"
        art_dir.mkdir(parents=True)
        data = f"model {n}".encode() * 100
        (art_dir / "m.bin").write_bytes(data)
        import hashlib

        sha = hashlib.sha256(data).hexdigest()
        record = VersionRecord(**{**template.model_dump(), "version": version, "seq": n, "sha256": sha,
                                  "size": len(data), "artifact_name": "m.bin", "registered_at": now()})
        (vdir / "version.json").write_bytes(_dump(record))
        os.symlink(f"../versions/{version}", model_dir / "digests" / sha)
        journal_lines.append(Event(id=os.urandom(16).hex(), at=now(), kind="register", model="big", version=version,
                                   actor="bench", details={"sha256": sha}).model_dump_json())
    if journal_lines:
        with open(model_dir / "journal.jsonl", "a") as fh:
            fh.write("\n".join(journal_lines) + "\n")
        index = reg._model_index("big")
        index.next_seq, index.latest = total + 1, str(total)
        reg._save_model_index(index)
    report = reg.verify(content=False)
    assert not report.problems, report.problems[:3]
    assert report.versions_checked == total
    return reg


def median_times(cases: dict[str, list[str]], registries: dict[str, Path], repeat: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, list[float]]] = {c: {r: [] for r in registries} for c in cases}
    for i in range(repeat):
        for case, args in cases.items():
            for label, root in registries.items():
                real = [a.replace("{i}", str(3 + i % 5)) for a in args]
                out[case][label].append(mlserve(*real, registry=root))
    return {c: {r: statistics.median(v) for r, v in rs.items()} for c, rs in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--skip-copy", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "work").mkdir()
        small, large = tmp_path / "small", tmp_path / "large"
        t0 = time.perf_counter()
        build(small, 10, tmp_path / "work")
        build(large, args.versions, tmp_path / "work")
        print(f"built registries with 10 and {args.versions} versions in {time.perf_counter() - t0:.1f}s")

        for cmd in (["--help"], ["list"], ["list", "big"], ["promote", "big", "3"]):
            print(f"heavy modules imported by `mlserve {' '.join(cmd)}`: {heavy_imports(cmd, small) or 'none'}")

        cases = {"show": ["show", "big:{i}"], "resolve": ["resolve", "big@production"],
                 "promote": ["promote", "big", "{i}"], "list": ["list", "big", "--json"],
                 "list-table": ["list", "big"]}
        registries = {"10": small, str(args.versions): large}
        medians = median_times(cases, registries, args.repeat)
        print(f"\nmedian wall time of `mlserve CMD` over {args.repeat} runs (process start included)")
        print(f"{'command':<10}{'10 versions':>14}{f'{args.versions} versions':>18}{'ratio':>8}")
        for case, by in medians.items():
            a, b = by["10"], by[str(args.versions)]
            print(f"{case:<10}{a * 1000:>12.1f}ms{b * 1000:>16.1f}ms{b / a:>8.2f}")
        reg = Registry(large)
        start = time.perf_counter()
        rows = reg.list_versions("big").versions
        lib = time.perf_counter() - start
        print(f"library list_versions of {len(rows)} versions: {lib * 1000:.0f} ms")

        if not args.skip_copy:
            size = int(args.gib * 1024 ** 3)
            src = tmp_path / "big.bin"
            with open(src, "wb") as fh:
                block = os.urandom(16 * 1024 * 1024)
                for _ in range(size // len(block)):
                    fh.write(block)
            src.read_bytes()  # warm the page cache equally for both
            cp_times, cp_sync_times, reg_times = [], [], []
            for i in range(3):
                dst = tmp_path / f"copy{i}.bin"
                start = time.perf_counter()
                subprocess.run(["cp", str(src), str(dst)], check=True)
                cp_times.append(time.perf_counter() - start)
                subprocess.run(["sync", str(dst)], check=True)
                cp_sync_times.append(time.perf_counter() - start)
                dst.unlink()
                with open(src, "r+b") as fh:  # new content each round, so no duplicate short-cut
                    fh.write(os.urandom(64))
                target = tmp_path / f"reg{i}"
                start = time.perf_counter()
                mlserve("register", "blob", str(src), registry=target)
                reg_times.append(time.perf_counter() - start)
                fsio.remove_tree(target)
            hash_times = []
            for _ in range(3):
                start = time.perf_counter()
                fsio.hash_file(src)  # OpenSSL's sha256 through hashlib (coreutils' sha256sum is slower here)
                hash_times.append(time.perf_counter() - start)
            startup = min(mlserve("--version", registry=tmp_path / "none") for _ in range(3))
            cp, cps, rg = min(cp_times), min(cp_sync_times), min(reg_times)
            print(f"floor: sha256 of the file alone (hashlib) {min(hash_times):.2f}s; mlserve process start {startup:.2f}s")
            print(f"\n{args.gib:g} GiB file, best of 3: cp {cp:.2f}s, cp+sync {cps:.2f}s, "
                  f"mlserve register (copy + sha256 + fsync, process start included) {rg:.2f}s")
            print(f"register / cp = {rg / cp:.2f}x; register / (cp+sync) = {rg / cps:.2f}x")
            shutil.rmtree(tmp_path / "work", ignore_errors=True)


if __name__ == "__main__":
    main()

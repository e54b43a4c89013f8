"""Registry speed targets (issue 8), measured through real processes, interleaved, in one run.

1. Start-up: `import mlserve.registry` must not build schemas; `mlserve resolve NAME@STAGE` at most 2x
   the wall time of `python -c "import typer, rich"` (the CLI side is lazy command loading; this
   script also times a bare library resolve, which is the registry's share).
2. Scale: a registry of 1,000 models, one of them with 10,000 versions, against one of 10 versions:
   `show`, `resolve`, `promote`, `register` within 1.2x; `list NAME` of 10,000 versions under 0.5 s;
   `verify --no-content` of the ~11,000 versions under 1 s; a real `gc` of 10,000 versions under 5 s.
3. `register` of a 1 GiB file at most 1.25x `sha256sum` of the same file plus process start.

The big registry is built by registering 10 versions for real and writing the rest with the
registry's own document classes (registering 10,000 files one by one with fsyncs takes minutes);
`verify --no-content` must find it clean before anything is timed. Every figure is a median (or a
best, where said) of runs that alternate between the cases compared.

usage: python benchmarks/bench_registry.py [--versions 10000] [--models 1000] [--repeat 11] [--gib 1]
                                           [--skip-copy] [--skip-gc]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlserve.registry import Registry, fsio, journal
from mlserve.registry.layout import dump_doc, now
from mlserve.registry.schema import ModelIndex, VersionRecord

HEAVY = {"torch", "onnxruntime", "onnx", "scipy", "kubernetes", "tensorrt", "sklearn", "pydantic", "httpx", "ruamel"}
ROWS: list[tuple[str, str, str, str]] = []
"""(figure, value, target, verdict) for the summary at the end."""


def record(figure: str, value: float, target: float | None, unit: str = "", *, below: bool = True) -> None:
    verdict = "-" if target is None else ("ok" if (value <= target if below else value >= target) else "MISSED")
    ROWS.append((figure, f"{value:.3f}{unit}", "-" if target is None else f"{'<=' if below else '>='} {target:g}{unit}",
                 verdict))


def run_wall(argv: list[str], env: dict | None = None, check: bool = True) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr}")
    return elapsed


def mlserve(*args: str, registry: Path) -> float:
    env = {**os.environ, "MLSERVE_REGISTRY": str(registry)}
    return run_wall([sys.executable, "-m", "mlserve", *args], env=env)


def heavy_imports(code: str) -> list[str]:
    probe = code + f"\nimport sys; print(sorted({{m.split('.')[0] for m in sys.modules}} & {HEAVY!r}))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip()
    return json.loads(out.replace("'", '"') or "[]")


# ---------------------------------------------------------------- building registries


def synthesize(reg: Registry, name: str, first: int, last: int, template: VersionRecord) -> None:
    """Write versions first..last of ``name`` the way register leaves them (record, read-only artifact,
    digest link, register event), without a fsync per version."""
    paths = reg.layout.model(name)
    for sub in (paths.versions, paths.digests):
        sub.mkdir(parents=True, exist_ok=True)
    lines = []
    for n in range(first, last + 1):
        version = str(n)
        vdir = paths.versions / version
        (vdir / "artifact").mkdir(parents=True)
        data = f"{name} model {n}".encode() * 20
        (vdir / "artifact" / "m.bin").write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        rec = template.model_copy(update={"model": name, "version": version, "seq": n, "sha256": sha,
                                          "size": len(data), "artifact_name": "m.bin", "registered_at": now()})
        (vdir / "version.json").write_bytes(dump_doc(rec))
        os.chmod(vdir / "version.json", 0o444)
        os.chmod(vdir / "artifact" / "m.bin", 0o444)
        os.chmod(vdir / "artifact", 0o555)
        os.symlink(f"../versions/{version}", paths.digest(sha))
        event = journal.new_event(name, "register", "bench", version=version, details={
            "sha256": sha, "size": len(data), "source": rec.source, "kind": "file", "artifact_name": "m.bin",
            "file_count": 1, "seq": n, "metrics": {}, "meta": {}})
        lines.append(event.model_dump_json())
    with open(paths.journal, "a") as fh:
        fh.write("\n".join(lines) + "\n")
    index = (ModelIndex.model_validate_json(paths.index.read_bytes()) if paths.index.exists()
             else ModelIndex(name=name, created_at=now()))
    index.next_seq, index.latest = last + 1, str(last)
    paths.index.write_bytes(dump_doc(index))


def build(root: Path, versions: int, models: int, work: Path) -> Registry:
    reg = Registry(root, actor="bench")
    for i in range(min(versions, 10)):
        art = work / f"big{i}.bin"
        art.write_bytes(f"model {i}".encode() * 100)
        reg.register("big", art)
    reg.promote("big", "1")
    reg.promote("big", "2")
    template = reg.layout.model("big")
    from mlserve.registry import versions as version_records

    record_1 = version_records.read_record(template, "1")
    if versions > 10:
        synthesize(reg, "big", 11, versions, record_1)
    for m in range(1, models):
        synthesize(reg, f"other{m:04d}", 1, 1, record_1)
    report = reg.verify(content=False)
    assert not report.problems, report.problems[:3]
    assert report.versions_checked == versions + models - 1
    return reg


def interleaved(cases: dict[str, list[str]], registries: dict[str, Path], repeat: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, list[float]]] = {c: {r: [] for r in registries} for c in cases}
    for i in range(repeat):
        for case, args in cases.items():
            for label, root in registries.items():
                real = [a.replace("{i}", str(3 + i % 5)).replace("{n}", f"{label}-{i}") for a in args]
                out[case][label].append(mlserve(*real, registry=root))
    return {c: {r: statistics.median(v) for r, v in rs.items()} for c, rs in out.items()}


# ---------------------------------------------------------------- the sections


def startup(registry: Path, repeat: int) -> None:
    print("\n== start-up ==")
    importtime = []
    for _ in range(repeat):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "from mlserve.registry import Registry"],
                              capture_output=True, text=True)
        last = [line for line in proc.stderr.splitlines() if line.rstrip().endswith("mlserve.registry")][-1]
        importtime.append(int(re.split(r"\s*\|\s*", last)[1]) / 1e6)
    lib = ("from mlserve.registry import Registry\nimport sys\n"
           f"print(Registry({str(registry)!r}).resolve('big@production').artifact_path)")
    walls: dict[str, list[float]] = {"python -c 'import typer, rich'": [], "python (bare interpreter)": [],
                                     "library resolve (python -c)": [], "mlserve resolve big@production": [],
                                     "mlserve --version": []}
    env = {**os.environ, "MLSERVE_REGISTRY": str(registry)}
    for _ in range(repeat):
        walls["python -c 'import typer, rich'"].append(run_wall([sys.executable, "-c", "import typer, rich"]))
        walls["python (bare interpreter)"].append(run_wall([sys.executable, "-c", "pass"]))
        walls["library resolve (python -c)"].append(run_wall([sys.executable, "-c", lib]))
        walls["mlserve resolve big@production"].append(
            run_wall([sys.executable, "-m", "mlserve", "resolve", "big@production"], env=env))
        walls["mlserve --version"].append(run_wall([sys.executable, "-m", "mlserve", "--version"], env=env))
    med = {k: statistics.median(v) for k, v in walls.items()}
    base = med["python -c 'import typer, rich'"]
    print(f"import of mlserve.registry (cumulative, -X importtime): {statistics.median(importtime) * 1000:.1f} ms; "
          f"modules it loads from pydantic: {heavy_imports('import mlserve.registry') or 'none'}")
    print(f"{'median wall of':<36}{'ms':>9}{'x typer+rich':>14}")
    for name, value in med.items():
        print(f"{name:<36}{value * 1000:>9.1f}{value / base:>14.2f}")
    record("import mlserve.registry (ms)", statistics.median(importtime) * 1000, None, " ms")
    record("library resolve / import typer,rich", med["library resolve (python -c)"] / base, 2.0, "x")
    record("mlserve resolve / import typer,rich (CLI: lead's lazy loading)",
           med["mlserve resolve big@production"] / base, 2.0, "x")
    print("heavy modules imported by a library resolve:",
          heavy_imports(lib.replace("print(", "(")) or "none")


def scale(small: Path, large: Path, versions: int, models: int, repeat: int, work: Path) -> None:
    print(f"\n== scale: {models} models, one with {versions} versions, against one model of 10 versions ==")
    art = work / "scale"
    art.mkdir()
    for label in ("10", "large"):
        for i in range(repeat):
            (art / f"{label}-{i}.bin").write_bytes(f"{label} {i}".encode() * 50)
    cases = {"show": ["show", "big:{i}"], "resolve": ["resolve", "big@production"],
             "promote": ["promote", "big", "{i}"], "register": ["register", "big", str(art / "{n}.bin")]}
    medians = interleaved(cases, {"10": small, "large": large}, repeat)
    print(f"median wall of `mlserve CMD` over {repeat} runs (process start included)")
    print(f"{'command':<10}{'10 versions':>14}{f'{versions} versions':>18}{'ratio':>8}")
    for case, by in medians.items():
        a, b = by["10"], by["large"]
        print(f"{case:<10}{a * 1000:>12.1f}ms{b * 1000:>16.1f}ms{b / a:>8.2f}")
        record(f"{case}: {versions} versions / 10 versions", b / a, 1.2, "x")
    lists = {"list big --json": [], "list big": [], "verify --no-content": []}
    for _ in range(max(3, repeat // 2)):
        lists["list big --json"].append(mlserve("list", "big", "--json", registry=large))
        lists["list big"].append(mlserve("list", "big", registry=large))
        lists["verify --no-content"].append(mlserve("verify", "--no-content", registry=large))
    reg = Registry(large)
    lib_list, lib_verify = [], []
    for _ in range(3):
        start = time.perf_counter()
        rows = reg.list_versions("big").versions
        lib_list.append(time.perf_counter() - start)
        start = time.perf_counter()
        report = reg.verify(content=False)
        lib_verify.append(time.perf_counter() - start)
    n_rows, n_checked = len(rows), report.versions_checked
    print(f"`mlserve list big --json` ({n_rows} versions): {statistics.median(lists['list big --json']):.3f} s; "
          f"`mlserve list big` (table): {statistics.median(lists['list big']):.3f} s; "
          f"library list_versions: {statistics.median(lib_list) * 1000:.0f} ms "
          f"({statistics.median(lib_list) / n_rows * 1e6:.1f} us per version)")
    print(f"`mlserve verify --no-content` ({n_checked} versions, {models} models): "
          f"{statistics.median(lists['verify --no-content']):.3f} s; library verify: "
          f"{statistics.median(lib_verify) * 1000:.0f} ms")
    record(f"mlserve list big --json ({n_rows} versions)", statistics.median(lists["list big --json"]), 0.5, " s")
    record(f"mlserve list big, table ({n_rows} versions)", statistics.median(lists["list big"]), 0.5, " s")
    record(f"mlserve verify --no-content ({n_checked} versions)", statistics.median(lists["verify --no-content"]),
           1.0, " s")


def garbage_collection(large: Path) -> None:
    print("\n== gc ==")
    os.sync()  # the build's and earlier sections' dirty pages are not the gc's work: write them out first
    before = len(Registry(large).list_versions("big").versions)
    wall = mlserve("gc", "big", "--keep", "1", registry=large)
    after = len(Registry(large).list_versions("big").versions)
    print(f"`mlserve gc big --keep 1`: removed {before - after} of {before} versions in {wall:.2f} s")
    assert Registry(large).verify(content=False).problems == []
    record(f"mlserve gc big --keep 1 ({before - after} versions removed)", wall, 5.0, " s")


def big_register(tmp: Path, gib: float, rounds: int = 3) -> None:
    print("\n== register of a big file ==")
    size = int(gib * 1024 ** 3)
    src = tmp / "big.bin"
    with open(src, "wb") as fh:
        block = os.urandom(16 * 1024 * 1024)
        for _ in range(size // len(block)):
            fh.write(block)
    src.read_bytes()  # into the page cache for every contender
    os.sync()
    times: dict[str, list[float]] = {"sha256sum": [], "process start (mlserve --version)": [], "hashlib sha256": [],
                                     "cp": [], "mlserve register": []}
    for i in range(rounds):
        times["sha256sum"].append(run_wall(["sha256sum", str(src)]))
        times["process start (mlserve --version)"].append(mlserve("--version", registry=tmp / "none"))
        start = time.perf_counter()
        fsio.hash_file(src)
        times["hashlib sha256"].append(time.perf_counter() - start)
        dst = tmp / f"copy{i}.bin"
        times["cp"].append(run_wall(["cp", str(src), str(dst)]))
        dst.unlink()
        with open(src, "r+b") as fh:  # new content each round, so no duplicate short-cut
            fh.write(os.urandom(64))
        target = tmp / f"reg{i}"
        times["mlserve register"].append(mlserve("register", "blob", str(src), registry=target))
        fsio.remove_tree(target)
    best = {k: min(v) for k, v in times.items()}
    for name, value in best.items():
        print(f"{name:<36}{value:>8.2f} s (best of {rounds})")
    floor = best["sha256sum"] + best["process start (mlserve --version)"]
    print(f"register / (sha256sum + process start) = {best['mlserve register'] / floor:.2f}x; "
          f"register / (hashlib sha256 + process start) = "
          f"{best['mlserve register'] / (best['hashlib sha256'] + best['process start (mlserve --version)']):.2f}x; "
          f"register / cp = {best['mlserve register'] / best['cp']:.2f}x")
    record(f"register {gib:g} GiB / (sha256sum + process start)", best["mlserve register"] / floor, 1.25, "x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--models", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--skip-copy", action="store_true")
    parser.add_argument("--skip-gc", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        tmp_path = Path(tmp)
        work = tmp_path / "work"
        work.mkdir()
        small, large = tmp_path / "small", tmp_path / "large"
        t0 = time.perf_counter()
        build(small, 10, 1, work)
        build(large, args.versions, args.models, work)
        print(f"built a registry of 10 versions and one of {args.models} models / {args.versions} versions in "
              f"{time.perf_counter() - t0:.1f}s (verified clean)")
        os.sync()
        startup(small, args.repeat)
        scale(small, large, args.versions, args.models, args.repeat, work)
        if not args.skip_gc:
            garbage_collection(large)
        if not args.skip_copy:
            big_register(tmp_path, args.gib)
    print("\n== summary ==")
    width = max(len(r[0]) for r in ROWS)
    for figure, value, target, verdict in ROWS:
        print(f"{figure:<{width}}  {value:>10}  {target:>10}  {verdict}")


if __name__ == "__main__":
    main()

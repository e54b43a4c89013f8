"""The cost of a traffic split: mlserve serve with one version, against the same server splitting its traffic.

Same load generator as bench_serve.py (Debian's ``wrk``), batch-1 JSON OIP requests, every request with
an ``X-User-Id`` header (a counter over 10,000 users, so every server parses the same bytes). Two
registry versions of one model, the same network with other weights (the same compute per request).
Servers, all started at once and measured in turn, round after round (interleaved), at each concurrency:

- ``single``: ``mlserve serve M@production``: one version (the header is ignored);
- ``random-90/10``: ``--canary M@staging --canary-weight 10``, assigned by weight;
- ``sticky-90/10``: the same with ``--sticky-header X-User-Id`` (SHA-256 rendezvous hashing per request);
- ``sticky-90/10+log``: the same with ``--assignment-log`` (each user's first exposure written);
- ``sticky-50/50``: ``--canary-weight 50``;
- ``apart-90/10`` and ``apart-50/50``: no split: the two versions served as two models by one server, and the
  load generator itself sends every 10th (every 2nd) request to the second one. The same two sessions
  do the same work; what differs from ``*-90/10`` is only the split's own work (routing, hashing, log).

Figures: each server's requests/s over ``single``'s and over ``apart``'s in the same round (the median
of the rounds, and their range), server CPU per request. Two versions cost more than one whether or not
mlserve splits them (a second, smaller batch per round of requests); ``apart`` shows that part.

Then, with ``--in-process`` (default on; ``--no-in-process`` skips it), the split's own work without the
network's noise: the server's REST application driven in this process (16 requests at a time, the
same JSON bodies, no sockets), CPU microseconds per request for ``single``, ``idle-canary`` (a canary
at weight 0: the split's code on every request, one busy version), ``random-90/10``,
``sticky-90/10`` (10,000 users coming back) and ``sticky-new-users`` (a new key on every request:
every one hashed), in interleaved rounds.

    flock /tmp/mlserve-bench.lock python benchmarks/bench_split.py
    flock /tmp/mlserve-bench.lock python benchmarks/bench_split.py --models mlp --rounds 3 --concurrency 16
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_serve import ROOT, Server, cpu_seconds, free_port, run_wrk, start, wait_ok  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))

CANARY = ["--canary", "{m}@staging"]
STICKY = ["--sticky-header", "X-User-Id"]
SERVERS = {  # name: (extra serve arguments, every how many requests go to the second model (apart) or 0)
    "single": ([], 0),
    "random-90/10": ([*CANARY, "--canary-weight", "10"], 0),
    "sticky-90/10": ([*CANARY, "--canary-weight", "10", *STICKY], 0),
    "sticky-90/10+log": ([*CANARY, "--canary-weight", "10", *STICKY, "--assignment-log", "{work}/{m}-log.jsonl"], 0),
    "apart-90/10": ([], 10),
    "sticky-50/50": ([*CANARY, "--canary-weight", "50", *STICKY], 0),
    "apart-50/50": ([], 2),
}


def _lua(body: Path, second_every: int, model: str) -> str:
    """wrk script: POST the body with X-User-Id user-0 ... user-9999 in turn; ``second_every``: every n-th
    request to ``{model}-b`` instead (the two versions served side by side, no split)."""
    route = (f'  local path = "/v2/models/{model}/infer"\n'
             + (f'  if n % {second_every} == 0 then path = "/v2/models/{model}-b/infer" end\n' if second_every else ""))
    return (f'local f = io.open("{body}", "rb")\nlocal body = f:read("*all")\nf:close()\n'
            'local n = 0\n'
            'request = function()\n'
            '  n = (n + 1) % 10000\n'
            f'{route}'
            '  return wrk.format("POST", path, {["Content-Type"] = "application/json", ["X-User-Id"] = "user-" .. n}, '
            'body)\nend\n')


def _setup(work: Path, model: str) -> tuple[Path, Path, Path]:
    """Registry versions 1 (production) and 2 (staging) of ``model``; the same two as files for ``apart``."""
    import numpy as np

    from mlserve.registry import Registry
    from serve import models

    build = models.mlp if model == "mlp" else models.cnn
    v1 = build(work / model / "v1" / f"{model}.onnx")
    v2 = build(work / model / "v2" / f"{model}-b.onnx", seed=7)
    reg = Registry(work / "registry")
    reg.register(model, v1, version="1")
    reg.register(model, v2, version="2")
    reg.promote(model, "1")
    reg.promote(model, "2", stage="staging")
    shape, name = ((1, 256), "x") if model == "mlp" else ((1, 3, 64, 64), "image")
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    body = work / f"{model}.json"
    body.write_text(json.dumps({"inputs": [{"name": name, "shape": list(shape), "datatype": "FP32",
                                            "data": [float(v) for v in x.ravel()]}]}))
    return v1, v2, body


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--concurrency", default="16,1")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    ap.add_argument("--in-process", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("needs wrk: apt-get install -y wrk")
    names = args.servers.split(",")
    levels = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-split-"))
    load = os.getloadavg()
    print(f"# bench_split: {os.cpu_count()} CPUs, load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{args.rounds} rounds x {args.duration:g}s per point, interleaved; work dir {work}", flush=True)
    rows: list[dict] = []
    summary: dict[str, dict] = {}
    for model in args.models.split(","):
        v1, v2, body = _setup(work, model)
        running: list[tuple[Server, Path]] = []
        try:
            for name in names:
                extra, every = SERVERS[name]
                port = free_port()
                refs = [str(v1), str(v2)] if every else [f"{model}@production"]
                cmd = [sys.executable, "-m", "mlserve", "serve", *refs,
                       *(a.format(m=model, work=work) for a in extra), "--registry", str(work / "registry"),
                       "--http-port", str(port), "--grpc-port", "0", "--threads", "1", "--drain-delay", "0"]
                proc = start(cmd, work / f"{model}-{name.replace('/', '-')}.log")
                lua = work / f"{model}-{name.replace('/', '-')}.lua"
                lua.write_text(_lua(body, every, model))
                running.append((Server(name, port, proc, "/v2/models/{model}/infer"), lua))
            for s, lua in running:
                wait_ok(s.url(model), body.read_bytes(), proc=s.proc)
                run_wrk(s.url(model), lua, 4, 1.0)  # warm-up
            for c in levels:
                for r in range(args.rounds):
                    for s, lua in running:  # interleaved: every server in this round before the next round
                        before = cpu_seconds(s.proc.pid)
                        doc, _ = run_wrk(s.url(model), lua, c, args.duration)
                        used = cpu_seconds(s.proc.pid) - before
                        rows.append({"model": model, "server": s.name, "concurrency": c, "round": r,
                                     "rps": doc["rps"], "p50_ms": doc["p50"], "p99_ms": doc["p99"],
                                     "errors": doc["errors"],
                                     "cpu_ms": used * 1000 / doc["requests"] if doc["requests"] else float("nan")})
                        print(f"{model} c={c:<3d} round {r} {s.name:17s} {doc['rps']:8.0f} req/s  "
                              f"p50 {doc['p50']:7.3f} "
                              f"ms  p99 {doc['p99']:7.3f} ms  cpu {rows[-1]['cpu_ms']:6.3f} ms/req  "
                              f"errors {doc['errors']}", flush=True)
        finally:
            for s, _ in running:
                s.stop()
        summary.update(_summarize(rows, model, names, levels))
    inproc = _in_process(work, args.rounds) if args.in_process else {}
    log_lines = sum(sum(1 for _ in p.open()) for p in work.glob("*-log.jsonl"))
    print(f"\n# assignment logs: {log_lines} lines (one per user and variant)")
    print(f"# load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary, "in_process": inproc, "load_before": load},
                                        indent=1))
    shutil.rmtree(work, ignore_errors=True)


IN_PROCESS = {  # name: (ServeOptions fields, how many distinct users)
    "single": ({}, 10_000),
    "idle-canary": ({"canary": "mlp@staging", "canary_weight": 0.0, "sticky_header": "X-User-Id"}, 10_000),
    "random-90/10": ({"canary": "mlp@staging", "canary_weight": 10.0}, 10_000),
    "sticky-90/10": ({"canary": "mlp@staging", "canary_weight": 10.0, "sticky_header": "X-User-Id"}, 10_000),
    "sticky-new-users": ({"canary": "mlp@staging", "canary_weight": 10.0, "sticky_header": "X-User-Id"}, 0),
}


def _in_process(work: Path, rounds: int, requests: int = 16_000) -> dict:
    """CPU per request of the REST application itself (mlp), each configuration in turn, round after round."""
    import asyncio
    import time

    import uvloop

    from mlserve.serve.options import ServeOptions
    from mlserve.serve.protocol.rest import RestApp
    from mlserve.serve.state import ServerState

    body = (work / "mlp.json").read_bytes()
    counter = {"n": 0}

    async def measure(fields: dict, users: int) -> float:
        options = ServeOptions(refs=("mlp@production",), registry=work / "registry", threads=1, **fields)
        state = ServerState(options, lambda *a, **k: None)
        state.repo.precheck()
        await state.repo.start()
        app = RestApp(state)

        async def send(message: dict) -> None:
            pass

        async def one() -> None:
            counter["n"] += 1
            user = counter["n"] % users if users else counter["n"]
            scope = {"type": "http", "method": "POST", "path": "/v2/models/mlp/infer",
                     "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                                 (b"content-length", str(len(body)).encode()), (b"x-user-id", f"user-{user}".encode())]}
            messages = [{"type": "http.request", "body": body, "more_body": False}]

            async def receive() -> dict:
                if messages:
                    return messages.pop()
                await asyncio.sleep(3600)  # the client stays: no disconnect
                return {"type": "http.disconnect"}

            await app(scope, receive, send)

        for _ in range(50):
            await asyncio.gather(*(one() for _ in range(16)))
        cpu = time.process_time()
        for _ in range(requests // 16):
            await asyncio.gather(*(one() for _ in range(16)))
        used = time.process_time() - cpu
        await state.repo.release(5)
        return used / requests * 1e6

    results: dict[str, list[float]] = {name: [] for name in IN_PROCESS}

    async def main() -> None:
        for _ in range(rounds):
            for name, (fields, users) in IN_PROCESS.items():
                results[name].append(await measure(fields, users))

    uvloop.run(main())
    print("\n# in process (the REST application, no sockets), mlp, 16 requests at a time: CPU us per request, "
          "median [min, max] of the rounds, and over 'single' per round")
    out = {}
    for name, values in results.items():
        ratios = [v / b for v, b in zip(values, results["single"])]
        out[name] = {"cpu_us": _stats(values), "vs_single": _stats(ratios)}
        print(f"  {name:17s} {_fmt_us(out[name]['cpu_us'])}  x{_fmt(out[name]['vs_single'])}")
    return out


def _fmt_us(s: dict) -> str:
    return f"{s['median']:6.1f} [{s['min']:.1f}, {s['max']:.1f}] us"


def _ratios(mine: list[dict], base: dict[int, dict]) -> list[float]:
    return [r["rps"] / base[r["round"]]["rps"] for r in mine if base.get(r["round"], {}).get("rps")]


def _summarize(rows: list[dict], model: str, names: list[str], levels: list[int]) -> dict[str, dict]:
    print(f"\n# {model}: requests/s over 'single' and over 'apart' (the same two versions, no split) in the same "
          "round: median [min, max]; medians of p50 and server CPU per request")
    out = {}
    for c in levels:
        pick = [r for r in rows if r["model"] == model and r["concurrency"] == c]
        single = {r["round"]: r for r in pick if r["server"] == "single"}
        for name in names:
            mine = [r for r in pick if r["server"] == name]
            share = name.split("-")[-1].split("+")[0]
            apart = {r["round"]: r for r in pick if r["server"] == f"apart-{share}"}
            vs_single, vs_apart = _ratios(mine, single), _ratios(mine, apart) if not name.startswith("apart") else []
            doc = {"rps_median": statistics.median(r["rps"] for r in mine),
                   "vs_single": _stats(vs_single), "vs_apart": _stats(vs_apart),
                   "p50_ms": statistics.median(r["p50_ms"] for r in mine),
                   "cpu_ms_per_request": statistics.median(r["cpu_ms"] for r in mine),
                   "errors": sum(r["errors"] for r in mine)}
            out[f"{model} {name} c={c}"] = doc
            print(f"  c={c:<3d} {name:17s} {doc['rps_median']:8.0f} req/s  vs single {_fmt(doc['vs_single'])}  "
                  f"vs apart {_fmt(doc['vs_apart'])}  p50 {doc['p50_ms']:.3f} ms  cpu {doc['cpu_ms_per_request']:.3f} "
                  f"ms/req  errors {doc['errors']}")
    return out


def _stats(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _fmt(s: dict | None) -> str:
    return f"{s['median']:.3f} [{s['min']:.3f}, {s['max']:.3f}]" if s else "-" * 21


if __name__ == "__main__":
    main()

"""mlserve serve against the raw ONNX Runtime ceiling, Seldon MLServer 1.7.1 and KServe's ModelServer.

Same load generator for every server (Debian's ``wrk`` with a Lua POST body), batch-1 JSON requests of
the Open Inference Protocol, an MLP 256-1024-1024-10 and a small CNN (3x64x64), concurrency 1, 4 and
16. All servers run at once, each with both models loaded and one ONNX Runtime thread per session,
and are measured in turn (interleaved) in one run. Figures: requests/s, p50/p99 (wrk), server CPU ms
per request (utime+stime of the server's process tree / requests), RSS of the process tree. Then the
lifecycle checks of mlserve serve: lost requests on SIGTERM under load, non-2xx during 3 hot swaps
under load, and the time from `mlserve promote` to the new version serving.

Peers get their own virtual environments in a cache directory outside the repository
(``--cache``, default ``~/.cache/mlserve-bench``), made on first use: MLServer 1.7.1 with
``uvloop<0.22`` (it does not serve with later uvloop), KServe's latest. Run it under the shared lock:

    flock /tmp/mlserve-bench.lock python benchmarks/bench_serve.py            # everything, ~12 minutes
    flock /tmp/mlserve-bench.lock python benchmarks/bench_serve.py --servers raw,mlserve --duration 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
PEERS = Path(__file__).resolve().parent / "serve_peers"
SERVERS = ("raw", "mlserve", "mlserve-nobatch", "mlserve-w2", "mlserver", "mlserver-pw0", "kserve")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------ processes


def tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def rss_mb(pid: int) -> float:
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen | None
    path: str  # infer path with {model}
    log: Path | None = None

    def url(self, model: str) -> str:
        return f"http://127.0.0.1:{self.port}{self.path.format(model=model)}"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def wait_ok(url: str, body: bytes, timeout: float = 120, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status == 200:
                    return
        except (OSError, urllib.error.HTTPError) as exc:
            last = str(exc)
        time.sleep(0.5)
    raise RuntimeError(f"{url} never answered 200: {last}")


def start(cmd: list[str], log: Path, env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                            cwd=cwd, start_new_session=True)


# ------------------------------------------------------------------------------------------ peers' venvs


def ensure_venv(cache: Path, name: str, packages: list[str]) -> Path:
    venv = cache / name
    marker = venv / ".mlserve-bench-ok"
    if marker.exists():
        return venv / "bin" / "python"
    print(f"[setup] creating {venv} with {' '.join(packages)} (once)", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *packages], check=True)
    marker.write_text(" ".join(packages) + "\n")
    return venv / "bin" / "python"


def start_mlserver(python: Path, work: Path, files: dict[str, Path], workers: int) -> Server:
    root = work / f"mlserver-pw{workers}"
    for name, path in files.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "model-settings.json").write_text(json.dumps({
            "name": name, "implementation": "mlserver_ort.OrtRuntime", "parameters": {"uri": str(path)}}))
    port = free_port()
    (root / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
        "parallel_workers": workers, "debug": False}))
    shutil.copy(PEERS / "mlserver_ort.py", root / "mlserver_ort.py")
    mlserver = python.parent / "mlserver"
    proc = start([str(mlserver), "start", str(root)], work / f"mlserver-pw{workers}.log", cwd=root,
                 env={"PYTHONPATH": str(root)})
    return Server(f"mlserver-pw{workers}" if workers == 0 else "mlserver", port, proc, "/v2/models/{model}/infer")


def start_kserve(python: Path, work: Path, files: dict[str, Path]) -> Server:
    port = free_port()
    proc = start([str(python), str(PEERS / "kserve_ort.py"), str(port), *(f"{n}={p}" for n, p in files.items())],
                 work / "kserve.log")
    return Server("kserve", port, proc, "/v2/models/{model}/infer")


def start_mlserve(work: Path, files: dict[str, Path], batching: bool, name: str, workers: int = 1) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "mlserve", "serve", *(str(p) for p in files.values()), "--http-port", str(port),
           "--grpc-port", "0", "--threads", "1", "--drain-delay", "0", "--workers", str(workers)]
    if not batching:
        cmd += ["--max-batch-size", "1"]
    proc = start(cmd, work / f"{name}.log")
    return Server(name, port, proc, "/v2/models/{model}/infer")


# ------------------------------------------------------------------------------------------ measuring


def _dur(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


@dataclass
class Row:
    server: str
    model: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float
    errors: int
    notes: list[str] = field(default_factory=list)


def run_wrk(url: str, lua: Path, concurrency: int, duration: float) -> tuple[dict, str]:
    threads = 1 if concurrency < 4 else 2
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{max(1, round(duration))}s", "--latency",
                          "-s", str(lua), url], capture_output=True, text=True, timeout=duration + 60).stdout
    doc = {"requests": 0, "rps": 0.0, "p50": float("nan"), "p99": float("nan"), "errors": 0}
    m = re.search(r"(\d+) requests in", out)
    doc["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    doc["rps"] = float(m.group(1)) if m else 0.0
    for pct, key in (("50%", "p50"), ("99%", "p99")):
        m = re.search(rf"^\s+{pct}\s+(\S+)", out, re.M)
        if m:
            doc[key] = _dur(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(g) for g in m.groups())
    doc["errors"] = errors
    return doc, out


def measure_server(server: Server, model: str, lua: Path, concurrency: int, duration: float) -> Row:
    pid = server.proc.pid
    before = cpu_seconds(pid)
    doc, _ = run_wrk(server.url(model), lua, concurrency, duration)
    used = cpu_seconds(pid) - before
    cpu_ms = used * 1000 / doc["requests"] if doc["requests"] else float("nan")
    return Row(server.name, model, concurrency, doc["rps"], doc["p50"], doc["p99"], cpu_ms, doc["errors"])


def measure_raw(path: Path, feeds: dict, concurrency: int, duration: float) -> Row:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    for _ in range(50):
        session.run(None, feeds)
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    stop = threading.Event()

    def loop(i: int) -> None:
        out = latencies[i]
        while not stop.is_set():
            t = time.perf_counter()
            session.run(None, feeds)
            out.append(time.perf_counter() - t)

    cpu0 = time.process_time()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(duration)
    stop.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    flat = sorted(x for lat in latencies for x in lat)
    n = len(flat)
    return Row("raw", path.stem, concurrency, n / wall, flat[n // 2] * 1000, flat[min(n - 1, int(n * 0.99))] * 1000,
               cpu * 1000 / n, 0)


# ------------------------------------------------------------------------------------------ lifecycle


def lifecycle(work: Path, files: dict[str, Path], lua_dir: Path, duration: float) -> dict:
    """Drain under load, 3 hot swaps under load, promote -> serving time (mlserve serve only)."""
    from mlserve.registry import Registry
    from serve import models

    results: dict = {}
    reg_root = work / "registry"
    reg = Registry(reg_root)
    reg.register("mlp", files["mlp"], version="1")
    reg.register("mlp", models.mlp(work / "mlp-v2" / "mlp.onnx", seed=7), version="2")
    reg.promote("mlp", "1")
    body = (lua_dir / "mlp.json").read_bytes()
    lua = lua_dir / "mlp.lua"
    port = free_port()
    proc = start([sys.executable, "-m", "mlserve", "serve", "mlp@production", "--registry", str(reg_root),
                  "--http-port", str(port), "--grpc-port", "0", "--poll-interval", "0.25", "--drain-delay", "0"],
                 work / "swap.log")
    url = f"http://127.0.0.1:{port}/v2/models/mlp/infer"
    try:
        wait_ok(url, body, proc=proc)
        holder: dict = {}
        load = threading.Thread(target=lambda: holder.update(doc=run_wrk(url, lua, 8, 12.0)[0]))
        load.start()
        times = []
        for target in ("2", "1", "2"):
            time.sleep(2.0)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "mlserve", "promote", "mlp", target, "--registry", str(reg_root)],
                           check=True, capture_output=True, env={**os.environ, "MLSERVE_ACTOR": "bench"})
            t_promoted = time.perf_counter()
            while True:
                req = urllib.request.Request(url, data=body)
                with urllib.request.urlopen(req, timeout=5) as r:
                    if r.headers["X-Model-Version"] == target:
                        break
                time.sleep(0.01)
            now = time.perf_counter()
            times.append((now - t0, now - t_promoted))
        load.join()
        results["swap_requests"] = holder["doc"]["requests"]
        results["swap_non2xx_or_errors"] = holder["doc"]["errors"]
        results["promote_cmd_to_serving_s"] = [round(a, 3) for a, _ in times]
        results["stage_moved_to_serving_s"] = [round(b, 3) for _, b in times]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # drain: SIGTERM in the middle of a wrk run; every request wrk had sent must be answered 2xx
    from serve import models as m

    slow = m.slow(work / "slow.onnx", width=1024, layers=8)
    port = free_port()
    proc = start([sys.executable, "-m", "mlserve", "serve", str(slow), "--http-port", str(port), "--grpc-port", "0",
                  "--drain-delay", "1", "--drain-timeout", "30"], work / "drain.log")
    slow_body = json.dumps({"inputs": [{"name": "x", "shape": [1, 1024], "datatype": "FP32",
                                        "data": [0.01] * 1024}]}).encode()
    (lua_dir / "slow.json").write_bytes(slow_body)
    slow_lua = lua_dir / "slow.lua"
    slow_lua.write_text(_lua(lua_dir / "slow.json"))
    url = f"http://127.0.0.1:{port}/v2/models/slow/infer"
    wait_ok(url, slow_body, proc=proc)
    holder = {}
    load = threading.Thread(target=lambda: holder.update(out=run_wrk(url, slow_lua, 16, 4.0)))
    load.start()
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(60)
    load.join()
    doc, out = holder["out"]
    m_non = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    m_sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    results["drain_exit_code"] = code
    results["drain_requests_answered"] = doc["requests"]
    results["drain_non2xx"] = int(m_non.group(1)) if m_non else 0
    # after the listener closes, wrk's reconnects are refused (connect errors): not accepted requests.
    results["drain_socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                              map(int, m_sock.groups()))) if m_sock else {}
    return results


def _lua(body: Path) -> str:
    return (f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f'local f = io.open("{body}", "rb")\nwrk.body = f:read("*all")\nf:close()\n')


# ------------------------------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "mlserve-bench")
    ap.add_argument("--no-lifecycle", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("needs wrk: apt-get install -y wrk")
    servers = args.servers.split(",")
    model_names = args.models.split(",")
    levels = [int(c) for c in args.concurrency.split(",")]
    from serve import models

    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    files = {"mlp": models.mlp(work / "mlp.onnx"), "cnn": models.cnn(work / "cnn.onnx")}
    rng = np.random.default_rng(0)
    inputs = {"mlp": ("x", rng.standard_normal((1, 256)).astype(np.float32)),
              "cnn": ("image", rng.standard_normal((1, 3, 64, 64)).astype(np.float32))}
    luas = {}
    for name, (inp, arr) in inputs.items():
        body = json.dumps({"inputs": [{"name": inp, "shape": list(arr.shape), "datatype": "FP32",
                                       "data": [float(v) for v in arr.ravel()]}]})
        (work / f"{name}.json").write_text(body)
        (work / f"{name}.lua").write_text(_lua(work / f"{name}.json"))
        luas[name] = work / f"{name}.lua"
    load = os.getloadavg()
    print(f"# bench_serve: {os.cpu_count()} CPUs, load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"duration {args.duration:g}s per point; work dir {work}", flush=True)
    running: list[Server] = []
    try:
        if "mlserve" in servers:
            running.append(start_mlserve(work, files, True, "mlserve"))
        if "mlserve-nobatch" in servers:
            running.append(start_mlserve(work, files, False, "mlserve-nobatch"))
        if "mlserve-w2" in servers:
            running.append(start_mlserve(work, files, True, "mlserve-w2", workers=2))
        if any(s.startswith("mlserver") for s in servers):
            py = ensure_venv(args.cache, "mlserver", ["mlserver==1.7.1", "uvloop<0.22", "onnxruntime", "numpy"])
            if "mlserver" in servers:
                running.append(start_mlserver(py, work, files, 1))
            if "mlserver-pw0" in servers:
                running.append(start_mlserver(py, work, files, 0))
        if "kserve" in servers:
            py = ensure_venv(args.cache, "kserve", ["kserve", "onnxruntime", "numpy"])
            running.append(start_kserve(py, work, files))
        for s in running:
            for name in model_names:
                wait_ok(s.url(name), (work / f"{name}.json").read_bytes(), proc=s.proc)
            run_wrk(s.url(model_names[0]), luas[model_names[0]], 4, 1.0)  # warm-up
        rss = {s.name: round(rss_mb(s.proc.pid), 1) for s in running}
        rows: list[Row] = []
        for name in model_names:
            for c in levels:
                if "raw" in servers:
                    inp, arr = inputs[name]
                    rows.append(measure_raw(files[name], {inp: arr}, c, args.duration))
                for s in running:  # interleaved: every server at this point before the next point
                    rows.append(measure_server(s, name, luas[name], c, args.duration))
                for r in rows[-(len(running) + ("raw" in servers)):]:
                    print(f"{r.model:4s} c={r.concurrency:<3d} {r.server:16s} {r.rps:9.0f} req/s  p50 {r.p50_ms:7.3f} ms"
                          f"  p99 {r.p99_ms:7.3f} ms  cpu {r.cpu_ms:6.3f} ms/req  errors {r.errors}", flush=True)
        rss_after = {s.name: round(rss_mb(s.proc.pid), 1) for s in running}
    finally:
        for s in running:
            s.stop()
    print("\n# RSS of each server's process tree with both models loaded (MB): after warm-up / after the run")
    for name in rss:
        print(f"  {name:16s} {rss[name]:8.1f} / {rss_after[name]:8.1f}")
    life = {}
    if not args.no_lifecycle:
        life = lifecycle(work, files, work, args.duration)
        print("\n# lifecycle (mlserve serve)")
        for k, v in life.items():
            print(f"  {k}: {v}")
    print(f"\n# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps({"rows": [r.__dict__ for r in rows], "rss_mb": rss_after, "rss_warm_mb": rss,
                                         "lifecycle": life, "load_before": load}, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

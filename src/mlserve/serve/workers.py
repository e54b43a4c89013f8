"""``--workers N``: N server processes sharing the ports (SO_REUSEPORT), under one supervising process.

Each worker is a full server (its own sessions, queues and stage follower); the kernel spreads
connections over them. Metrics are prometheus-client's multiprocess mode: every worker writes its
values to files in one directory, and ``/metrics`` on any worker adds them up (counters and
histograms summed, gauges as each one's mode says). The supervisor forwards the first SIGTERM or
SIGINT to every worker (each drains as one server does) and waits for them; a second signal kills
them at once. A worker that exits on its own stops the others, and its exit code becomes the
server's error: in a container, the orchestrator restarts the pod.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from mlserve.errors import MlserveError
from mlserve.serve.options import ServeOptions


class WorkerFailedError(MlserveError):
    code = "worker_failed"


def _encode(options: ServeOptions) -> str:
    doc = dataclasses.asdict(options)
    doc["registry"] = str(options.registry) if options.registry else None
    doc["workers"] = 1
    doc["reuse_port"] = True
    doc["assignment_log"] = str(options.assignment_log) if options.assignment_log else None
    doc["admin_token"] = None  # refused with --workers > 1; never written to a pipe
    return json.dumps(doc)


def decode(text: str) -> ServeOptions:
    from mlserve.serve.batching import BatchingOptions

    doc = json.loads(text)
    doc["refs"] = tuple(doc["refs"])
    doc["split_files"] = tuple(doc.get("split_files", ()))
    doc["assignment_log"] = Path(doc["assignment_log"]) if doc.get("assignment_log") else None
    doc["registry"] = Path(doc["registry"]) if doc["registry"] else None
    doc["batching"] = BatchingOptions(**doc["batching"])
    return ServeOptions(**doc)


def supervise(options: ServeOptions, log: Callable[..., None], on_listening: Callable[[str, str | None], None] | None
              ) -> Any:
    from mlserve.serve.server import ServeResult, ServedModel, _url

    mp_dir = tempfile.mkdtemp(prefix="mlserve-metrics-")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": mp_dir}
    encoded = _encode(options)
    started = time.time()
    procs: list[subprocess.Popen] = []
    stopping: dict[str, Any] = {"signal": None}

    def on_signal(signum: int, _frame: Any) -> None:
        if stopping["signal"] is not None:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            os._exit(128 + signum)
        stopping["signal"] = signal.Signals(signum).name
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for i in range(options.workers):
            procs.append(subprocess.Popen([sys.executable, "-m", "mlserve.serve.worker", str(i), mp_dir],
                                          stdin=subprocess.PIPE, env=env))
            assert procs[-1].stdin is not None
            procs[-1].stdin.write(encoded.encode())
            procs[-1].stdin.close()
        http_url = _url("http", options.host, options.http_port)
        grpc_url = _url("grpc", options.host, options.grpc_port) if options.grpc_port else None
        log("supervising", workers=[p.pid for p in procs], http=http_url, grpc=grpc_url)
        if on_listening is not None:
            on_listening(http_url, grpc_url)
        failed: tuple[int, int] | None = None
        while any(p.poll() is None for p in procs):
            time.sleep(0.2)
            if stopping["signal"] is None and failed is None:
                for i, p in enumerate(procs):
                    if p.poll() is not None:
                        failed = (i, p.returncode)
                        log("worker_exited", level="error", worker=i, pid=p.pid, exit_code=p.returncode)
                        for q in procs:
                            if q.poll() is None:
                                q.send_signal(signal.SIGTERM)
                        break
        if failed is not None:
            i, code = failed
            error = WorkerFailedError(f"worker {i} exited with code {code}; the others were stopped",
                                      hint="its error is on stderr above")
            from mlserve.exitcodes import EXIT_CODES

            if code in EXIT_CODES.values() and code != 0:
                error.exit_code = code  # a usage or integrity problem of the worker is the server's
            raise error
        results = []
        for i in range(options.workers):
            path = Path(mp_dir) / f"result-{i}.json"
            if path.is_file():
                results.append(json.loads(path.read_text()))
        bad = [p.returncode for p in procs if p.returncode != 0]
        warnings = [f"{len(bad)} worker(s) exited with {sorted(set(bad))}"] if bad else []
        first = results[0] if results else {}
        models = [ServedModel(**m) for m in first.get("models", [])]
        for m in models:
            m.swaps = max((r2["swaps"] for r in results for r2 in r["models"]
                           if r2["name"] == m.name and r2.get("variant") == m.variant), default=0)
        return ServeResult(http_url=http_url, grpc_url=grpc_url, models=models, stopped_by=stopping["signal"] or "",
                           drained_seconds=max((r.get("drained_seconds", 0.0) for r in results), default=0.0),
                           uptime_seconds=round(time.time() - started, 3), warnings=warnings)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        shutil.rmtree(mp_dir, ignore_errors=True)

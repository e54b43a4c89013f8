"""Real pieces for the ``rollout --target local`` tests: ONNX lookup models, a registry, a server, traffic, the CLI.

Every model is an ONNX ``Gather`` of a table by the input ``index`` (int64 [N] -> float [N, 4]), so versions
differ in what they answer and, for the bad ones, in *which inputs make ONNX Runtime fail at run time*:

* ``good``: an 8-row table, every index 0..7 works;
* ``flaky``: a 4-row table: indices 4..7 make ORT raise, the server answers 500 (half of the traffic below);
* ``broken``: the index is shifted by 100 first: every request fails (the smoke check's zeros too).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from serve.support import ServerProcess, request

TOKEN = "local-rollout-token-0123456789"
MODEL = "churn"
# A short analysis: 1 s rate windows, 0.5 s scrapes, three points per side at 80% confidence (the smallest
# bounded comparison): every step's judge needs 1.5 s warm-up + 2 x 1 s = 3.5 s of traffic.
ANALYSIS = "defaults: {min_points: 3, confidence: 0.8, window: 1s, step: 1s, scrape_interval: 0.5s}\n"
PAUSE = "3.5s"


def lookup_model(path: Path, *, rows: int = 8, shift: int = 0, seed: int = 0) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    from serve.models import _save

    table = np.random.default_rng(seed).standard_normal((rows, 4)).astype(np.float32)
    nodes, inits, index = [], [numpy_helper.from_array(table, "table")], "index"
    if shift:
        inits.append(numpy_helper.from_array(np.array([shift], np.int64), "shift"))
        nodes.append(helper.make_node("Add", ["index", "shift"], ["shifted"]))
        index = "shifted"
    nodes.append(helper.make_node("Gather", ["table", index], ["value"], axis=0))
    graph = helper.make_graph(nodes, "lookup", [helper.make_tensor_value_info("index", TensorProto.INT64, ["N"])],
                              [helper.make_tensor_value_info("value", TensorProto.FLOAT, ["N", 4])], inits)
    return _save(graph, path)


def make_registry(root: Path) -> Path:
    """churn 1 (production, good), 2 (good, other values), 3 (flaky), 4 (broken)."""
    from mlserve.registry import Registry

    reg = Registry(root / "registry", lock_timeout=10)
    reg.register(MODEL, lookup_model(root / "m1" / "m.onnx", seed=1), version="1")
    reg.register(MODEL, lookup_model(root / "m2" / "m.onnx", seed=2), version="2")
    reg.register(MODEL, lookup_model(root / "m3" / "m.onnx", rows=4, seed=3), version="3")
    reg.register(MODEL, lookup_model(root / "m4" / "m.onnx", shift=100, seed=4), version="4")
    reg.promote(MODEL, "1")
    return root / "registry"


def start_server(root: Path, registry: Path, *refs: str, token: str | None = TOKEN) -> ServerProcess:
    return ServerProcess(list(refs or [f"{MODEL}@production"]), root / "srv", "--poll-interval", "0.2",
                         "--drain-delay", "0", registry=registry, admin_token=token, grpc=False)


class Traffic:
    """Requests to the model from a thread (indices 0..7 at random), about ``rate`` per second; counts answers."""

    def __init__(self, server: ServerProcess, *, rate: float = 150.0, seed: int = 0, version: str | None = None) -> None:
        pinned = f"/versions/{version}" if version else ""  # a version: requests pinned to it, whatever the split
        self.url = f"{server.url}/v2/models/{MODEL}{pinned}/infer"
        self.interval = 1.0 / rate
        self.random = random.Random(seed)
        self.codes: dict[int, int] = {}
        self.variants: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            index = self.random.randrange(8)
            body = json.dumps({"inputs": [{"name": "index", "shape": [1], "datatype": "INT64", "data": [index]}]})
            try:
                status, headers, _ = request("POST", self.url, body.encode(), {"Content-Type": "application/json"})
            except OSError:
                status, headers = 0, {}
            self.codes[status] = self.codes.get(status, 0) + 1
            variant = headers.get("x-model-variant", "")
            self.variants[variant] = self.variants.get(variant, 0) + 1
            self._stop.wait(self.interval)

    def __enter__(self) -> "Traffic":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def split(server: ServerProcess) -> dict[str, Any]:
    status, _, doc = server.admin("GET", f"/v2/mlserve/split/{MODEL}")
    assert status == 200, doc
    return doc


def variants(server: ServerProcess) -> dict[str, tuple[float, str | None]]:
    """{variant: (weight, version)} of the model's split now."""
    return {v["name"]: (v["weight"], v["version"]) for v in split(server)["variants"]}


def production(registry: Path) -> str | None:
    from mlserve.registry import Registry

    try:
        return str(Registry(registry).resolve(f"{MODEL}@production").version)
    except Exception:  # noqa: BLE001 - an empty stage
        return None


def target_args(server: ServerProcess, registry: Path) -> list[str]:
    return ["--target", "local", "--server", server.url, "--admin-url", server.admin_url, "--registry", str(registry)]


def cli_env(token: str | None = TOKEN) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVE_") or k.startswith(("MLSERVE_REQUIRE_",
                                                                                                  "MLSERVE_TEST_"))}
    env.update({"MLSERVE_NO_PROGRESS": "1", "NO_COLOR": "1", "MLSERVE_ACTOR": "tester"})
    if token is not None:
        env["MLSERVE_ADMIN_TOKEN"] = token
    return env


def mlserve_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlserve", "--json", *args]


def run_cli(*args: str, token: str | None = TOKEN, timeout: float = 60) -> tuple[int, Any, str]:
    """``mlserve --json ARGS`` in a subprocess: (exit code, the JSON document or None, stderr)."""
    done = subprocess.run(mlserve_cmd(*args), capture_output=True, text=True, env=cli_env(token), timeout=timeout)
    try:
        doc = json.loads(done.stdout) if done.stdout.strip() else None
    except ValueError:
        doc = None
    return done.returncode, doc, done.stderr


def start_cli(*args: str, token: str | None = TOKEN, workdir: Path) -> subprocess.Popen:
    """``mlserve --json ARGS`` in the background; its stdout and stderr go to files in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = (workdir / "rollout.out").open("wb")
    err = (workdir / "rollout.err").open("wb")
    return subprocess.Popen(mlserve_cmd(*args), stdout=out, stderr=err, env=cli_env(token))


def finish(proc: subprocess.Popen, workdir: Path, timeout: float = 60) -> tuple[int, Any, str]:
    rc = proc.wait(timeout)
    text = (workdir / "rollout.out").read_text()
    return rc, json.loads(text) if text.strip() else None, (workdir / "rollout.err").read_text()


def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def status(server: ServerProcess, registry: Path) -> dict[str, Any] | None:
    rc, doc, _ = run_cli("rollout", "status", MODEL, *target_args(server, registry))
    return doc["result"] if rc == 0 and doc else None


def lease(registry: Path) -> dict[str, Any] | None:
    """The rollout state as recorded in the registry directory (the Lease document)."""
    path = registry / "rollouts" / f"mlserve-rollout-{MODEL}.json"
    return json.loads(path.read_text()) if path.exists() else None

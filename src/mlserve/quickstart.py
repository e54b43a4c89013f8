"""``mlserve quickstart``: the main job end to end on one machine, with embedded defaults.

It trains a small churn classifier on synthetic data (numpy only) and saves two versions as ONNX,
plus a deliberately broken build of the second one (:func:`save_example` with ``broken=True``: a real
ONNX Runtime failure for a share of inputs); every later step is an ``mlserve`` command, run for
real through an injected runner (the CLI runs each one as ``python -m mlserve ... --json``), so the
commands the quickstart prints are exactly the ones that ran and can be replayed line by line.
Everything lives under one work directory with its own registry (``export MLSERVE_REGISTRY=...``
comes first in the printed script), so the user's own registry is never touched.

The steps: register both versions with their accuracy; promote version 1 behind a metric gate;
promote version 2 with a compare-and-swap and a stricter gate; roll back (the escape hatch); read the
production history; optimize the production model (the fp32 variant, parity-checked, registered as a
new version). Then live traffic on loopback: ``mlserve serve`` of ``churn@production`` in the
background (admin endpoint, sticky ``X-User-Id``, assignment log), a smoke load, ``mlserve load`` in
the background for the rollouts; a canary of the optimized version with ``--target local`` judged on
the server's own ``/metrics``, which promotes it; the broken version registered and rolled out, which
the judge rejects at its first step and the server rolls back; the load stopped (its report: requests
and errors per version, and the requests of users on stable, which must all have succeeded) and the
server drained. Then a short A/B experiment: a second server splits users 50/50 by their key between
production and version 2 and writes the assignment log, the quickstart simulates an outcome per user
(``outcomes.csv``) and ``mlserve ab analyze`` gives the verdict. ``with_manifests`` adds the
manifest-mode Kubernetes canary (no cluster needed) of the A/B's treatment; last, verify the registry.

Long-running commands are the exception to "one step, one command that returns": they are started
in the background (the script line ends in ``& NAME_PID=$!``) and stopped by a later step
(``kill -TERM $NAME_PID && wait $NAME_PID``: the server drains); :func:`run_quickstart` stops every
one it started on any failure or interrupt too, so no process is left behind.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

from pydantic import BaseModel, Field, PrivateAttr, computed_field

from mlserve.errors import MlserveError, UsageError
from mlserve.progress import NULL_PROGRESS, Progress

MARKER = ".mlserve-quickstart"
"""Written into the work directory, so a rerun knows which files it may remove."""

MADE = ("registry", "manifests", "churn-v1.onnx", "churn-v2.onnx", "churn-v1.npz", "churn-v2.npz", "churn-broken.onnx",
        "analysis.yaml", "ab-split.json", "outcomes.csv", "serve.json", "serve.log", "load.json", "load.log",
        "load.jsonl", "assignments.jsonl", "ab-serve.json", "ab-serve.log", "ab-assignments.jsonl")
"""What a quickstart writes in its directory (a rerun removes these, and nothing else)."""


class Background(Protocol):
    pid: int

    def running(self) -> bool: ...

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait up to ``timeout`` seconds (then SIGKILL); the exit status."""
        ...


class Runner(Protocol):
    """Runs ``mlserve`` command lines (without the program name) in the work directory with its registry."""

    def __call__(self, argv: list[str], *, ok_exit: tuple[int, ...] = (0,)) -> dict[str, Any]:
        """Run to the end with ``--json``; its JSON document's result (an error for an exit not in ``ok_exit``)."""
        ...

    def start(self, argv: list[str], *, stdout: str, stderr: str) -> Background:
        """Start in the background, stdout and stderr to those files of the work directory (``argv`` as printed)."""
        ...


class QuickstartStep(BaseModel):
    name: str
    argv: Optional[list[str]] = None
    """The ``mlserve`` arguments that ran; None for a step that is not an ``mlserve`` command (training, a stop)."""
    outcome: str
    ok_exit: list[int] = Field(default_factory=lambda: [0])
    """Exit statuses that mean the step went as planned (10: a rollout that was meant to be rolled back)."""
    stdout: Optional[str] = None
    stderr: Optional[str] = None
    background: Optional[str] = None
    """For a command started in the background: the shell variable that keeps its pid (``SERVE_PID``)."""
    shell: Optional[str] = None
    """A shell line that is not an ``mlserve`` command (stopping a background command)."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def command(self) -> str:
        if self.argv is None:
            return self.shell or ""
        line = shlex.join(["mlserve", *self.argv])
        if self.stdout:
            line += f" > {shlex.quote(self.stdout)}"
        if self.stderr:
            line += f" 2> {shlex.quote(self.stderr)}"
        if self.background:
            line += f" & {self.background}=$!"
        others = [c for c in self.ok_exit if c != 0]
        if others:
            line += " || [ $? -eq " + " -o $? -eq ".join(map(str, others)) + " ]"
        return line


class VersionErrors(BaseModel):
    version: str
    requests: int
    errors: int
    users: int
    users_with_errors: int


class LoadSummary(BaseModel):
    """What the background load saw during the rollouts (``mlserve load``'s report)."""

    requests: int
    errors: int
    unanswered: int
    seconds: float
    by_version: list[VersionErrors]
    stable_requests: int
    stable_errors: int
    """Failed requests of users the split gave to stable, plus requests with no answer at all (nobody to blame):
    the quickstart's promise is that this is 0."""
    canary_errors: int


class RolloutVerdict(BaseModel):
    version: str
    outcome: str
    """``promoted`` or ``rolled-back`` (as ``mlserve rollout`` says)."""
    exit_code: int
    steps: list[str]
    """``weight%: verdict (reason)`` per judged step."""
    message: str = ""


class AbVerdict(BaseModel):
    experiment: str
    units: dict[str, int]
    verdict: str
    """``ship treatment``, ``keep control``, ... as ``mlserve ab analyze`` says."""
    reason: str
    sample_ratio_passed: Optional[bool] = None


class QuickstartResult(BaseModel):
    workdir: Path
    registry: Path
    steps: list[QuickstartStep]
    production: str
    started_clean: bool = False
    """True when a previous quickstart's files were removed from the work directory first."""
    canary: Optional[RolloutVerdict] = None
    broken: Optional[RolloutVerdict] = None
    load: Optional[LoadSummary] = None
    ab: Optional[AbVerdict] = None
    stable_ok: Optional[bool] = None
    """True when no request of a user on stable failed during the rollouts (None: no live part ran)."""
    server_pids: list[int] = Field(default_factory=list)
    """The pids of the background processes (servers, load); all of them have exited when the result is made."""
    elapsed_seconds: float = 0.0
    warnings: list[str] = Field(default_factory=list)
    _admin_token: str = PrivateAttr(default="")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def replay_script(self) -> str:
        """:meth:`script`, in the JSON document too (``mlserve quickstart --json | jq -r .result.replay_script``)."""
        return self.script()

    def script(self) -> str:
        """The steps as a shell script: one replayable line per command, its outcome as a comment."""
        lines = ["# mlserve quickstart: replay any line below in a shell (the registry is the work directory's).",
                 "# The commands use the files quickstart wrote there (churn-*.onnx, analysis.yaml, ab-split.json,",
                 "# outcomes.csv, manifests/); to replay from scratch, rerun 'mlserve quickstart' (it starts clean).",
                 shlex.join(["cd", str(self.workdir)]), f"export MLSERVE_REGISTRY={shlex.quote(str(self.registry))}",
                 "export MLSERVE_ACTOR=quickstart"]
        if self._admin_token and any(s.background for s in self.steps):
            lines.append(f"export MLSERVE_ADMIN_TOKEN={shlex.quote(self._admin_token)}  "
                         "# this run's throwaway token of the servers' loopback admin endpoints")
        variables = [s.background for s in self.steps if s.background]
        for step in self.steps:
            if step.argv is not None or step.shell:
                if step.background and step.background == variables[0]:
                    # whatever happens to the script, the background commands it started are stopped with it
                    lines.append("trap '" + "kill " + " ".join(f"${v}" for v in variables)
                                 + " 2>/dev/null || true' EXIT")
                lines.append(step.command)
            lines.extend(f"#   {line}" for line in step.outcome.splitlines())
        return "\n".join(lines) + "\n"


def _dataset(seed: int = 7, n: int = 2000) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    logits = 1.5 * x[:, 0] - 2.0 * x[:, 1] + 0.7 * x[:, 2] * x[:, 3]
    y = (logits + rng.normal(scale=0.5, size=n) > 0).astype("int64")
    return x, y


def train_example(epochs: int, seed: int = 7) -> tuple[dict[str, Any], float]:
    """A 4-16-2 MLP trained with plain gradient descent; returns (weights, accuracy on held-out data)."""
    import numpy as np

    x, y = _dataset(seed)
    xt, yt, xv, yv = x[:1500], y[:1500], x[1500:], y[1500:]
    rng = np.random.default_rng(seed)
    w = {"w1": rng.normal(scale=0.5, size=(4, 16)).astype("float32"), "b1": np.zeros(16, "float32"),
         "w2": rng.normal(scale=0.5, size=(16, 2)).astype("float32"), "b2": np.zeros(2, "float32")}
    onehot = np.eye(2, dtype="float32")[yt]
    for _ in range(epochs):
        h = np.maximum(xt @ w["w1"] + w["b1"], 0)
        z = h @ w["w2"] + w["b2"]
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        gz = (p - onehot) / len(xt)
        gh = (gz @ w["w2"].T) * (h > 0)
        for key, grad in {"w2": h.T @ gz, "b2": gz.sum(0), "w1": xt.T @ gh, "b1": gh.sum(0)}.items():
            w[key] -= 0.5 * grad.astype("float32")
    pred = (np.maximum(xv @ w["w1"] + w["b1"], 0) @ w["w2"] + w["b2"]).argmax(1)
    return w, float((pred == yv).mean())


def save_example(weights: dict[str, Any], path: Path, *, broken: bool = False) -> Path:
    """Write the MLP as ONNX when onnx is installed, else as ``.npz``; returns the file written.

    ``broken=True`` writes a deliberately broken version (it needs onnx): the same network, whose
    probabilities come out through a ``GatherElements`` whose indices are computed from the input,
    ``[0, 1] + 1000 * (input[:, 0] > 0.5)``. For rows whose first feature is at most 0.5 (the zeros the server
    warms up with, and about 69% of the example's users) it answers exactly what the healthy network
    answers; for the others the index is out of range and ONNX Runtime fails while running, so the
    server answers 500 for them: a real failure of a real model, nothing injected into the server.
    """
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        if broken:
            raise
        import numpy as np

        out = path.with_suffix(".npz")
        np.savez(out, **weights)
        return out
    import numpy as np

    nodes = [helper.make_node("MatMul", ["input", "w1"], ["h0"]), helper.make_node("Add", ["h0", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h2"]), helper.make_node("MatMul", ["h2", "w2"], ["z0"]),
             helper.make_node("Add", ["z0", "b2"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probs" if broken else "probabilities"], axis=1)]
    initializer = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    if broken:
        nodes += [helper.make_node("Gather", ["input", "first_column"], ["x0"], axis=1),
                  helper.make_node("Greater", ["x0", "limit"], ["over"]),
                  helper.make_node("Cast", ["over"], ["over_i"], to=TensorProto.INT64),
                  helper.make_node("Mul", ["over_i", "jump"], ["offset"]),
                  helper.make_node("Add", ["offset", "columns"], ["index"]),
                  helper.make_node("GatherElements", ["probs", "index"], ["probabilities"], axis=1)]
        initializer += [numpy_helper.from_array(np.array([0], np.int64), "first_column"),
                        numpy_helper.from_array(np.array(BROKEN_ABOVE, np.float32), "limit"),
                        numpy_helper.from_array(np.array(1000, np.int64), "jump"),
                        numpy_helper.from_array(np.array([[0, 1]], np.int64), "columns")]
    graph = helper.make_graph(
        nodes, "churn_mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        initializer=initializer)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="mlserve-quickstart")
    model.ir_version = 8
    onnx.checker.check_model(model)
    out = path.with_suffix(".onnx")
    onnx.save(model, out)
    return out


BROKEN_ABOVE = 0.5
"""The broken version fails for every row whose first feature is above this."""


MANIFESTS = {
    "churn.yaml": """\
# The model server for the churn model (written by mlserve quickstart).
apiVersion: apps/v1
kind: Deployment
metadata:
  name: churn
  namespace: ml
spec:
  replicas: 3  # sized for peak traffic
  selector:
    matchLabels:
      app: churn
  template:
    metadata:
      labels:
        app: churn
    spec:
      containers:
        - name: server
          image: registry.example/churn-server:1  # the model version is the tag
          env:
            - name: MLSERVE_MODEL_VERSION
              value: "1"
          readinessProbe:
            httpGet: {path: /ready, port: 8000}
---
apiVersion: v1
kind: Service
metadata:
  name: churn
  namespace: ml
spec:
  selector:
    app: churn
  ports:
    - port: 80
      targetPort: 8000
""",
    "route.yaml": """\
# Public traffic for the churn model, split by weight during a canary.
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: churn
  namespace: ml
spec:
  parentRefs:
    - name: public-gateway
  rules:
    - backendRefs:
        - name: churn
          port: 80
          weight: 100  # stable
""",
}



def _prepare(workdir: Path) -> bool:
    """Make ``workdir`` ready; True when a previous quickstart's files were removed. A non-empty directory that
    a quickstart did not make is refused: its files are the user's."""
    from mlserve.registry.fsio import remove_tree

    if workdir.exists() and not workdir.is_dir():
        raise UsageError(f"--workdir {workdir} is a file", hint="choose a directory")
    workdir.mkdir(parents=True, exist_ok=True)
    entries = list(workdir.iterdir())
    if not entries:
        (workdir / MARKER).write_text("made by mlserve quickstart; a rerun removes what it made here\n")
        return False
    if not (workdir / MARKER).exists():
        raise UsageError(f"--workdir {workdir} is not empty and was not made by mlserve quickstart",
                         hint="choose a new or empty directory; quickstart never deletes files it did not make")
    for name in MADE:
        path = workdir / name
        if path.is_dir():
            remove_tree(path)
        elif path.exists():
            path.unlink()
    return True


def free_ports(count: int, first: int | None = None) -> list[int]:
    """``count`` loopback ports that are free now: ``first``, ``first + 1``, ... (each checked), or chosen by the
    kernel when ``first`` is None. A port in use is a :class:`UsageError`."""
    import socket

    if first is not None:
        if not 1024 <= first <= 65535 - count + 1:
            raise UsageError(f"--port {first} is out of range: it needs {count} ports from it, within 1024-65535")
        ports = list(range(first, first + count))
        for port in ports:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    raise UsageError(f"--port {first}: loopback port {port} is in use",
                                     hint=f"quickstart needs {count} free ports from --port; choose others, or leave "
                                          "--port out for free ones") from None
        return ports
    socks, ports = [], []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
            ports.append(sock.getsockname()[1])
    finally:
        for sock in socks:
            sock.close()
    return ports


ANALYSIS = """\
# The judge of the quickstart's local canaries, on the server's own /metrics (the rollout scrapes it every
# 0.25 s): one-second windows and 4 points per side, so a step is judged about 4.5 s after its traffic started.
step: 1s
window: 1s
scrape_interval: 0.25s
metrics:
  # the ready-made success-rate check, on the server's variants: >= 99%, and no worse than stable
  - name: success-rate
    query: >
      1 - ((sum(rate(http_requests_total{model="{model}",variant="{target}",code=~"5.."}[{window}])) or vector(0))
      / sum(rate(http_requests_total{model="{model}",variant="{target}"}[{window}])))
    direction: min
    threshold: 0.99
    threshold_on: worst  # every one-second point must be >= 99%: a few failures a second must not hide in a median
    allowed_decrease_pct: 0
    tolerance: 0.005
    critical: true
    min_points: 4
  # p99 latency against a limit only: at 10% of 200 requests/s a canary's one-second p99 is the slowest of about
  # 20 requests, too noisy on a busy laptop to compare with stable's (use the defaults, with longer windows, for that)
  - name: latency-p99
    query: >
      histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{model="{model}",variant="{target}"}[{window}])))
    direction: max
    threshold: 0.5
    compare: false
    critical: true
    min_points: 4
"""

EXPERIMENT = "churn-ab"
RETENTION = {"control": 0.30, "treatment": 0.36}
"""The simulated outcome: the share of each arm's users who renew (the treatment is the better-trained model)."""


def _ab_split(treatment: str) -> str:
    import json

    return json.dumps({"v": 1, "model": "churn", "experiment": EXPERIMENT, "sticky": {"header": "X-User-Id"},
                       "variants": [{"name": "control", "ref": "churn@production", "weight": 50},
                                    {"name": "treatment", "ref": f"churn:{treatment}", "weight": 50}]}, indent=2) + "\n"


def simulate_outcomes(assignment_log: Path, out: Path, seed: int = 11) -> dict[str, int]:
    """One outcome per user of the log (``retained`` 0/1, drawn from the user's key hash, at the rate of the
    variant the log gives it), as ``key_hash,retained`` CSV; the number of users per variant."""
    import hashlib
    import json

    variants: dict[str, str] = {}
    for line in assignment_log.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            variants.setdefault(record["key_hash"], record["variant"])
    counts: dict[str, int] = {}
    rows = ["key_hash,retained"]
    for key_hash, variant in sorted(variants.items()):
        draw = int.from_bytes(hashlib.sha256(f"{seed}\n{key_hash}".encode()).digest()[:8], "big") / 2 ** 64
        rows.append(f"{key_hash},{int(draw < RETENTION.get(variant, 0.3))}")
        counts[variant] = counts.get(variant, 0) + 1
    out.write_text("\n".join(rows) + "\n")
    return counts


def run_quickstart(workdir: Path, run: Runner, *, progress: Progress = NULL_PROGRESS, ports: list[int] | None = None,
                   admin_token: str | None = None, with_manifests: bool = False,
                   clock: Callable[[], float] = time.monotonic) -> QuickstartResult:
    """Run every step in ``workdir``; ``run`` executes ``mlserve`` command lines in ``workdir`` with
    ``MLSERVE_REGISTRY`` set to :func:`registry_of` and ``MLSERVE_ADMIN_TOKEN`` to ``admin_token`` (the CLI passes
    a subprocess runner). ``ports``: 4 free loopback ports (server, its admin endpoint, the A/B server, its admin
    endpoint); default: chosen now. Every background command is stopped before this returns or raises."""
    began = clock()
    workdir = Path(workdir).absolute()
    started_clean = _prepare(workdir)
    started: list[Background] = []
    result = QuickstartResult(workdir=workdir, registry=registry_of(workdir), steps=[], production="",
                              started_clean=started_clean)
    steps = result.steps  # the steps are appended to the result's own list (pydantic copied the one given)
    result._admin_token = admin_token or ""

    def step(name: str, argv: list[str] | None, outcome: Callable[[dict[str, Any]], str] | str, *,
             ok_exit: tuple[int, ...] = (0,)) -> dict[str, Any]:
        r = run(argv, ok_exit=ok_exit) if argv is not None else {}
        text = outcome(r) if callable(outcome) else outcome
        steps.append(QuickstartStep(name=name, argv=argv, outcome=text, ok_exit=list(ok_exit)))
        progress.note(f"{name}: {text}")
        return r

    def start(name: str, argv: list[str], var: str, stdout: str, stderr: str, outcome: str) -> Background:
        handle = run.start(argv, stdout=stdout, stderr=stderr)
        started.append(handle)
        result.server_pids.append(handle.pid)
        steps.append(QuickstartStep(name=name, argv=argv, outcome=f"{outcome} (pid {handle.pid})", background=var,
                                    stdout=stdout, stderr=stderr))
        progress.note(f"{name}: {outcome}")
        return handle

    def stop(name: str, handle: Background, var: str, what: str) -> int:
        code = handle.stop()
        steps.append(QuickstartStep(name=name, shell=f"kill -TERM ${var} && wait ${var}",
                                    outcome=f"{what}: exit {code}"))
        progress.note(f"{name}: {what}: exit {code}")
        if code != 0:
            raise MlserveError(f"quickstart step '{name}': the background command exited {code}",
                               hint=f"see its log in {workdir}")
        return code

    try:
        _main_steps(workdir, run, step, start, stop, result, ports, with_manifests, progress)
    finally:
        for handle in reversed(started):  # the load first, then the servers: nothing is left behind
            if handle.running():
                handle.stop()
    result.production = run(["resolve", "churn@production"])["version"]
    result.elapsed_seconds = round(clock() - began, 1)
    return result


def _main_steps(workdir: Path, run: Runner, step: Callable[..., dict[str, Any]], start: Callable[..., Background],
                stop: Callable[..., int], result: QuickstartResult, ports: list[int] | None, with_manifests: bool,
                progress: Progress) -> None:
    with progress.task("training two versions of the example model", total=2) as task:
        files = []
        for version, epochs in (("1", 40), ("2", 400)):
            weights, accuracy = train_example(epochs)
            files.append((save_example(weights, workdir / f"churn-v{version}"), accuracy))
            task.advance()
    live = _can_serve()
    broken_file = save_example(weights, workdir / "churn-broken", broken=True) if live else None
    step("train", None, "trained a 4-16-2 churn MLP twice with numpy: " + ", ".join(
        f"{f.name} (accuracy {acc:.3f})" for f, acc in files)
        + (f"; {broken_file.name}: version 2's network whose output goes through a GatherElements with an index "
           f"computed from the input, out of range when the first feature is above {BROKEN_ABOVE:g}" if broken_file
           else ""))
    versions = []
    for path, accuracy in files:
        r = step("register", ["register", "churn", path.name, "--metric", f"accuracy={accuracy:.3f}",
                              "--meta", "trained_by=quickstart"],
                 lambda r: f"registered churn:{r['version']} sha256:{r['sha256'][:12]}")
        versions.append(r["version"])
    v1, v2 = versions
    step("promote", ["promote", f"churn:{v1}", "--require", "accuracy>=0.5", "--reason", "first production model"],
         lambda r: f"production: {r['previous'] or '(empty)'} -> {r['version']}")
    step("promote", ["promote", f"churn:{v2}", "--expect-current", v1, "--require", "accuracy>=0.8",
                     "--reason", "more training"],
         lambda r: f"production: {r['previous']} -> {r['version']} (compare-and-swap: it held {v1})")
    step("rollback", ["rollback", "churn", "--reason", "practise the escape hatch"],
         lambda r: f"production: {r['previous']} -> {r['version']}")
    step("history", ["history", "churn@production"],
         lambda r: f"{len(r['events'])} production change(s), the last by {r['events'][-1]['actor']}")
    optimized = _optimize_step(step) or v2
    if live and broken_file is not None and hasattr(run, "start"):
        _live_steps(workdir, run, step, start, stop, result, optimized, v2, broken_file, ports or free_ports(4))
    else:
        result.warnings.append("the live part (serve, load, local canaries, A/B) needs mlserve[onnx]: skipped")
    if with_manifests or not live:
        _rollout_step(workdir, v2 if live else optimized, step, after_ab=live)
    step("verify", ["verify"], lambda r: "clean" if not r["problems"] else f"{len(r['problems'])} problem(s)")


def _can_serve() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _judged(s: dict[str, Any]) -> str:
    """``10%: fail (critical metric(s) failed: success-rate: canary median 0.91 is not >= 0.99; ...)``."""
    failed = [f"{m['name']}: {m['reason']}" for m in (s.get("analysis") or {}).get("metrics") or []
              if m.get("verdict") not in ("pass", None)]
    return f"{s['weight']}%: {s['verdict']} ({s['reason']}" + (f"; {'; '.join(failed)}" if failed else "") + ")"


def _verdict(r: dict[str, Any]) -> RolloutVerdict:
    judged = [_judged(s) for s in r.get("steps") or [] if s.get("verdict")]
    return RolloutVerdict(version=str(r.get("version")), outcome=str(r.get("outcome")), exit_code=int(r.get("exit_code") or 0),
                          steps=judged, message=str(r.get("message") or ""))


def _live_steps(workdir: Path, run: Runner, step: Callable[..., dict[str, Any]], start: Callable[..., Background],
                stop: Callable[..., int], result: QuickstartResult, optimized: str, treatment: str, broken_file: Path,
                ports: list[int]) -> None:
    import json

    http, admin, ab_http, ab_admin = ports
    url, admin_url, ab_url = f"http://127.0.0.1:{http}", f"http://127.0.0.1:{admin}", f"http://127.0.0.1:{ab_http}"
    (workdir / "analysis.yaml").write_text(ANALYSIS)
    server = start("serve", ["serve", "churn@production", "--http-port", str(http), "--grpc-port", "0",
                             "--admin-port", str(admin), "--sticky-header", "X-User-Id",
                             "--assignment-log", "assignments.jsonl", "--drain-delay", "0", "--json"],
                   "SERVE_PID", "serve.json", "serve.log",
                   f"serving churn@production on {url} in the background (admin endpoint {admin_url}, token from "
                   "MLSERVE_ADMIN_TOKEN; users assigned by their X-User-Id; log in serve.log)")
    step("smoke", ["load", "churn", "--server", url, "--requests", "50", "--users", "50"],
         lambda r: f"waited for the server to be ready; {r['requests']} requests, {r['errors']} failed, served by "
                   + ", ".join(f"version {v}" for v in r["by_version"]))
    load = start("load", ["load", "churn", "--server", url, "--rate", "200", "--users", "400", "--threads", "4",
                          "--records", "load.jsonl", "--json"], "LOAD_PID", "load.json", "load.log",
                 f"200 requests/s from 400 users (X-User-Id user-0 ... user-399) to {url} until stopped; "
                 "every request in load.jsonl")
    target = ["--target", "local", "--server", url, "--admin-url", admin_url, "--steps", "10,50,100",
              "--analysis", "analysis.yaml"]
    r = step("canary", ["rollout", "canary", "churn", "--to", optimized, *target],
             lambda r: f"{r['outcome']}: canary of churn:{optimized} at " + " -> ".join(
                 f"{s['weight']}% ({s['verdict']})" for s in r["steps"]) + "; judged on the server's /metrics; "
                 f"churn@production is now {optimized} and the server's stable variant serves it")
    result.canary = _verdict(r)
    broken = step("register", ["register", "churn", broken_file.name, "--meta", "trained_by=quickstart",
                               "--meta", "note=deliberately broken: fails for some inputs"],
                  lambda r: f"registered churn:{r['version']} (the deliberately broken build)")["version"]
    r = step("canary", ["rollout", "canary", "churn", "--to", broken, *target],
             lambda r: f"{r['outcome']} (exit {r.get('exit_code')}, as intended): " + "; ".join(
                 _judged(s) for s in r["steps"] if s.get("verdict"))
                 + f"; the canary got no more traffic, production stays {optimized}", ok_exit=(0, 10))
    result.broken = _verdict(r)
    step("status", ["rollout", "status", "churn", "--target", "local", "--server", url, "--admin-url", admin_url],
         lambda r: f"{r['outcome'] or r['phase']} on the server: " + "; ".join(
             f"{o['kind']}/{o['name']} {o['detail']}" for o in r.get("objects") or []))
    stop("stop-load", load, "LOAD_PID", "the load stopped; its report is load.json")
    result.load = _load_summary(json.loads((workdir / "load.json").read_text())["result"])
    stop("stop-serve", server, "SERVE_PID", "the server drained and stopped (zero-loss drain on SIGTERM)")
    s = result.load
    result.stable_ok = s.stable_errors == 0
    steps = result.steps
    steps[-1].outcome += (f"\nduring the rollouts: {s.requests} requests, {s.errors} failed ("
                          + ", ".join(f"version {v.version}: {v.errors} of {v.requests}" for v in s.by_version)
                          + f"); users on stable: {s.stable_requests} requests, {s.stable_errors} failed")
    if not result.stable_ok:
        result.warnings.append(f"{s.stable_errors} request(s) of users on stable failed during the rollouts "
                               f"(see load.jsonl): the rollouts should never fail a user on stable")

    (workdir / "ab-split.json").write_text(_ab_split(treatment))
    ab = start("ab-serve", ["serve", "--split", "ab-split.json", "--http-port", str(ab_http), "--grpc-port", "0",
                            "--admin-port", str(ab_admin), "--assignment-log", "ab-assignments.jsonl",
                            "--drain-delay", "0", "--json"], "AB_PID", "ab-serve.json", "ab-serve.log",
               f"the A/B experiment {EXPERIMENT!r} on {ab_url}: users split 50/50 by X-User-Id between "
               f"control (churn@production) and treatment (churn:{treatment}) (ab-split.json)")
    step("ab-load", ["load", "churn", "--server", ab_url, "--requests", "3000", "--users", "1500"],
         lambda r: f"{r['requests']} requests from {r['users']} users, {r['errors']} failed; by version: "
                   + ", ".join(f"{v}: {g['users']} users" for v, g in r["by_version"].items()))
    stop("stop-ab", ab, "AB_PID", "the A/B server stopped; ab-assignments.jsonl holds each user's variant")
    counts = simulate_outcomes(workdir / "ab-assignments.jsonl", workdir / "outcomes.csv")
    step("simulate", None, f"simulated whether each exposed user renews (retained: control {RETENTION['control']:.0%}, "
                           f"treatment {RETENTION['treatment']:.0%}) into outcomes.csv: "
                           + ", ".join(f"{k} {v} users" for k, v in sorted(counts.items())))
    r = step("ab-analyze", ["ab", "analyze", "ab-assignments.jsonl", "--outcomes", "outcomes.csv",
                            "--experiment", EXPERIMENT, "--metric", "retained", "--split", "control=50,treatment=50"],
             lambda r: f"verdict: {_ab_fields(r)[2]}: {_ab_fields(r)[3]}; units per variant "
                       + ", ".join(f"{k} {v}" for k, v in _ab_fields(r)[1].items()))
    units, verdict, reason = _ab_fields(r)[1:]
    srm = r.get("sample_ratio") or {}
    result.ab = AbVerdict(experiment=EXPERIMENT, units=units, verdict=verdict, reason=reason,
                          sample_ratio_passed=srm.get("passed"))


def _ab_fields(r: dict[str, Any]) -> tuple[None, dict[str, int], str, str]:
    """(None, units per variant, verdict such as "ship treatment", reason) of ``ab analyze``'s result."""
    verdict = str(r.get("verdict") or "")
    if r.get("winner"):
        verdict = f"{verdict} {r['winner']}"
    units = {str(k): int(v) for k, v in ((r.get("sample_ratio") or {}).get("counts") or {}).items()}
    return None, units, verdict, str(r.get("reason") or "")


def _load_summary(doc: dict[str, Any]) -> LoadSummary:
    variants = doc.get("by_variant") or {}
    stable = variants.get("stable") or {}
    return LoadSummary(
        requests=doc["requests"], errors=doc["errors"], unanswered=doc["unanswered"], seconds=doc["seconds"],
        by_version=[VersionErrors(version=v, requests=g["requests"], errors=g["errors"], users=g["users"],
                                  users_with_errors=g["users_with_errors"]) for v, g in doc["by_version"].items()],
        stable_requests=stable.get("requests", 0), stable_errors=stable.get("errors", 0) + doc["unanswered"],
        canary_errors=(variants.get("canary") or {}).get("errors", 0))


def registry_of(workdir: Path) -> Path:
    return Path(workdir).absolute() / "registry"


def _optimize_step(step: Callable[..., dict[str, Any]]) -> str | None:
    """Optimize the production model with --auto and register the result (needs the onnx extra)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        step("optimize", None, "skipped: install mlserve[onnx] to optimize")
        return None
    # one named variant, not --auto: --auto may find the file it was given fastest on a busy machine and then has
    # nothing new to register, and the printed script would not replay to the same versions
    r = step("optimize", ["optimize", "churn@production", "--variant", "fp32", "--register", "churn"],
             lambda r: f"built {r['chosen']} (ONNX Runtime graph optimizations), parity with the source passed, "
                       f"registered churn:{(r.get('registered') or {}).get('version', '-')}")
    registered = r.get("registered") or {}
    return registered.get("version") if registered.get("created", True) else None


def _rollout_step(workdir: Path, version: str, step: Callable[..., dict[str, Any]], *, after_ab: bool) -> None:
    """A canary of ``version`` in manifest mode (GitOps files, no cluster needed), promoting it in the registry."""
    try:
        import ruamel.yaml  # noqa: F401
    except ImportError:
        step("rollout", None, "skipped: install mlserve[kubernetes] for the canary")
        return
    manifests = workdir / "manifests"
    manifests.mkdir()
    for name, text in MANIFESTS.items():
        (manifests / name).write_text(text)
    what = "the A/B's treatment " if after_ab else ""
    step("rollout", ["rollout", "canary", "churn", "--to", version, "-n", "ml", "--manifests", "manifests",
                     "--steps", "10,50,100", "--pause", "0"],
         lambda r: f"{r['outcome']}: canary of {what}churn:{version} " + " -> ".join(f"{s['weight']}%" for s in r["steps"])
                   + " in manifests/ (Deployment, Service, HTTPRoute: Kubernetes manifest mode, no cluster needed); "
                     "the registry promoted it")

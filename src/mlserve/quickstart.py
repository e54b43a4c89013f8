"""``mlserve quickstart``: the main job end to end on one machine, with embedded defaults.

It trains a small churn classifier on synthetic data (numpy only) and saves two versions as ONNX;
every later step is an ``mlserve`` command, run for real through an injected runner (the CLI runs
each one as ``python -m mlserve ... --json``), so the commands the quickstart prints are exactly the
ones that ran and can be replayed line by line. Everything lives under one work directory with its
own registry (``export MLSERVE_REGISTRY=...`` comes first in the printed script), so the user's own
registry is never touched.

The steps: register both versions with their accuracy; promote version 1 behind a metric gate;
promote version 2 with a compare-and-swap and a stricter gate; roll back (the escape hatch); read the
production history; optimize the production model (the fp32 variant: ONNX Runtime's graph
optimizations, parity-checked against the source, registered as a new version); roll that version out as a canary (10% -> 50% -> 100%) on generated Kubernetes
manifests (manifest mode, no cluster needed; the registry promotes it at the end); verify the registry.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Callable, Optional

from pydantic import BaseModel, Field, computed_field

from mlserve.errors import UsageError
from mlserve.progress import NULL_PROGRESS, Progress

MARKER = ".mlserve-quickstart"
"""Written into the work directory, so a rerun knows which files it may remove."""

Runner = Callable[[list[str]], dict[str, Any]]
"""Runs one ``mlserve`` command line (without the program name) and returns its JSON document's result."""


class QuickstartStep(BaseModel):
    name: str
    argv: Optional[list[str]] = None
    """The ``mlserve`` arguments that ran; None for a step that is not a command (training)."""
    outcome: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def command(self) -> str:
        return shlex.join(["mlserve", *self.argv]) if self.argv is not None else ""


class QuickstartResult(BaseModel):
    workdir: Path
    registry: Path
    steps: list[QuickstartStep]
    production: str
    started_clean: bool = False
    """True when a previous quickstart's files were removed from the work directory first."""
    warnings: list[str] = Field(default_factory=list)

    def script(self) -> str:
        """The steps as a shell script: one replayable line per command, its outcome as a comment."""
        lines = ["# mlserve quickstart: replay any line below in a shell (the registry is the work directory's).",
                 "# The commands use the files quickstart wrote there: churn-v1.onnx, churn-v2.onnx and manifests/;",
                 "# to replay from scratch, rerun 'mlserve quickstart' (it starts clean) or restore those files.",
                 shlex.join(["cd", str(self.workdir)]), f"export MLSERVE_REGISTRY={shlex.quote(str(self.registry))}",
                 "export MLSERVE_ACTOR=quickstart"]
        for step in self.steps:
            if step.argv is not None:
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
    ``[0, 1] + 1000 * (input[:, 0] > 1)``. For rows whose first feature is at most 1 (the zeros the server
    warms up with, and about 84% of the example's users) it answers exactly what the healthy network
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


BROKEN_ABOVE = 1.0
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
    for name in ("registry", "manifests", "churn-v1.onnx", "churn-v2.onnx", "churn-v1.npz", "churn-v2.npz"):
        remove_tree(workdir / name)
    return True


def run_quickstart(workdir: Path, run: Runner, *, progress: Progress = NULL_PROGRESS) -> QuickstartResult:
    """Run every step in ``workdir``; ``run`` executes one ``mlserve`` command line in ``workdir`` with
    ``MLSERVE_REGISTRY`` set to :func:`registry_of` (the CLI passes a subprocess runner)."""
    workdir = Path(workdir).absolute()
    started_clean = _prepare(workdir)
    steps: list[QuickstartStep] = []

    def step(name: str, argv: list[str] | None, outcome: Callable[[dict[str, Any]], str] | str) -> dict[str, Any]:
        result = run(argv) if argv is not None else {}
        text = outcome(result) if callable(outcome) else outcome
        steps.append(QuickstartStep(name=name, argv=argv, outcome=text))
        progress.note(f"{name}: {text}")
        return result

    with progress.task("training two versions of the example model", total=2) as task:
        files = []
        for version, epochs in (("1", 40), ("2", 400)):
            weights, accuracy = train_example(epochs)
            files.append((save_example(weights, workdir / f"churn-v{version}"), accuracy))
            task.advance()
    step("train", None, "trained a 4-16-2 churn MLP twice with numpy: " + ", ".join(
        f"{f.name} (accuracy {acc:.3f})" for f, acc in files))
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
    to_roll = _optimize_step(step) or v2
    _rollout_step(workdir, to_roll, step)
    step("verify", ["verify"], lambda r: "clean" if not r["problems"] else f"{len(r['problems'])} problem(s)")
    production = run(["resolve", "churn@production"])["version"]
    return QuickstartResult(workdir=workdir, registry=registry_of(workdir), steps=steps, production=production,
                            started_clean=started_clean)


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


def _rollout_step(workdir: Path, version: str, step: Callable[..., dict[str, Any]]) -> None:
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
    step("rollout", ["rollout", "canary", "churn", "--to", version, "-n", "ml", "--manifests", "manifests",
                     "--steps", "10,50,100", "--pause", "0"],
         lambda r: f"{r['outcome']}: canary " + " -> ".join(f"{s['weight']}%" for s in r["steps"])
                   + " in manifests/ (Deployment, Service, HTTPRoute); the registry promoted it")

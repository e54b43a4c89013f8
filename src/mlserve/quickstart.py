"""``mlserve quickstart``: the main job end to end on one machine, with embedded defaults.

It trains a small churn classifier on synthetic data (numpy only), saves two versions as ONNX (or
``.npz`` when onnx is not installed), registers both with their accuracy, promotes one behind a
metric gate, promotes the other, rolls back, and reads the history. Everything lives under one
work directory, so the user's own registry is never touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, Field

from mlserve.progress import NULL_PROGRESS, Progress
from mlserve.registry import Registry


class QuickstartStep(BaseModel):
    name: str
    command: str
    outcome: str


class QuickstartResult(BaseModel):
    workdir: Path
    registry: Path
    steps: list[QuickstartStep]
    production: str
    warnings: list[str] = Field(default_factory=list)


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


def save_example(weights: dict[str, Any], path: Path) -> Path:
    """Write the MLP as ONNX when onnx is installed, else as ``.npz``; returns the file written."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        import numpy as np

        out = path.with_suffix(".npz")
        np.savez(out, **weights)
        return out
    nodes = [helper.make_node("MatMul", ["input", "w1"], ["h0"]), helper.make_node("Add", ["h0", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h2"]), helper.make_node("MatMul", ["h2", "w2"], ["z0"]),
             helper.make_node("Add", ["z0", "b2"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]
    graph = helper.make_graph(
        nodes, "churn_mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="mlserve-quickstart")
    model.ir_version = 8
    onnx.checker.check_model(model)
    out = path.with_suffix(".onnx")
    onnx.save(model, out)
    return out


def _optimize_step(reg: Registry, step: Callable[[str, str, str], None], progress: Progress) -> str | None:
    """Optimize the production model with --auto and register the result (needs the onnx extra)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        step("optimize", "mlserve optimize churn@production --auto --register churn",
             "skipped: install mlserve[onnx] to optimize")
        return None
    from mlserve.optimize import OptimizeOptions, optimize
    from mlserve.optimize.timing import TimingSettings

    options = OptimizeOptions(auto=True, register_as="churn", registry_root=reg.root,
                              timing=TimingSettings(warmup_s=0.05, min_iterations=50, min_seconds=0.3))
    result = optimize("churn@production", options, progress=progress)
    chosen = next(c for c in result.candidates if c.name == result.chosen)
    registered = result.registered.version if result.registered else "-"
    step("optimize", "mlserve optimize churn@production --auto --register churn",
         f"{len(result.candidates)} candidates, chose {result.chosen} "
         f"({(chosen.speedup_vs_source or 1):.2f}x the source, parity passed), registered churn:{registered}")
    return registered


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


def _rollout_step(reg: Registry, workdir: Path, version: str, step: Callable[[str, str, str], None],
                  progress: Progress) -> None:
    """A canary of ``version`` in manifest mode (GitOps files, no cluster needed), promoting it in the registry."""
    try:
        import ruamel.yaml  # noqa: F401
    except ImportError:
        step("rollout", "mlserve rollout canary churn --manifests DIR", "skipped: install mlserve[kubernetes]")
        return
    from mlserve.rollout.api import Target, run_rollout
    from mlserve.rollout.engine import RolloutConfig

    manifests = workdir / "manifests"
    if manifests.exists():
        from mlserve.registry.fsio import remove_tree

        remove_tree(manifests)  # start each run from version 1 in the files
    manifests.mkdir()
    for name, text in MANIFESTS.items():
        (manifests / name).write_text(text)
    result = run_rollout(RolloutConfig(name="churn", to=version, namespace="ml", steps=[10, 50, 100], pause=0),
                         Target(namespace="ml", manifests=manifests, registry=reg.root), progress=progress)
    weights = " -> ".join(f"{s.weight}%" for s in result.steps)
    step("rollout", f"mlserve rollout canary churn --to {version} -n ml --manifests {manifests.name} --steps 10,50,100",
         f"{result.outcome}: canary {weights}, files updated in {manifests.name}/")


StepHook = Callable[[Registry, Path, list[QuickstartStep], Progress], None]
EXTRA_STEPS: list[StepHook] = []
"""Later capabilities (optimize, rollout) append their quickstart steps here."""


def run_quickstart(workdir: Path, *, progress: Progress = NULL_PROGRESS) -> QuickstartResult:
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    reg = Registry(workdir / "registry", lock_timeout=30, actor="quickstart")
    steps: list[QuickstartStep] = []

    def step(name: str, command: str, outcome: str) -> None:
        steps.append(QuickstartStep(name=name, command=command, outcome=outcome))
        progress.note(f"{name}: {outcome}")

    with progress.task("training two versions of the example model", total=2) as task:
        files = []
        for version, epochs in (("1", 40), ("2", 400)):
            weights, accuracy = train_example(epochs)
            files.append((save_example(weights, workdir / f"churn-v{version}"), accuracy))
            task.advance()
    step("train", "(numpy) train a 4-16-2 churn MLP twice", ", ".join(
        f"{f.name} accuracy={acc:.3f}" for f, acc in files))
    registered = []
    for path, accuracy in files:
        r = reg.register("churn", path, metrics={"accuracy": accuracy}, meta={"trained_by": "quickstart"})
        registered.append(r.version)
        word = "registered" if r.created else "already registered as"
        step("register", f"mlserve register churn {path.name} --metric accuracy={accuracy:.3f}",
             f"{word} churn:{r.version} sha256:{r.sha256[:12]}")
    v1, v2 = registered
    r = reg.promote("churn", v1, reason="first production model", require=["accuracy>=0.5"])
    step("promote", f"mlserve promote churn {v1} --require accuracy>=0.5",
         f"production: {r.previous or '(empty)'} -> {r.version}" if r.changed else f"production already {v1}")
    r = reg.promote("churn", v2, reason="more training", expect_current=v1 if r.changed else None,
                    require=["accuracy>=0.8"])
    step("promote", f"mlserve promote churn {v2} --expect-current {v1} --require accuracy>=0.8",
         f"production: {r.previous} -> {r.version}")
    r = reg.rollback("churn", reason="quickstart: practise the escape hatch")
    step("rollback", "mlserve rollback churn", f"production: {r.previous} -> {r.version}")
    history = reg.history("churn", stage="production")
    step("history", "mlserve history churn --stage production",
         f"{len(history.events)} production change(s), last by {history.events[-1].actor}")
    optimized = _optimize_step(reg, step, progress)
    _rollout_step(reg, workdir, optimized or v2, step, progress)
    for hook in EXTRA_STEPS:
        hook(reg, workdir, steps, progress)
    report = reg.verify()
    step("verify", "mlserve verify", "clean" if not report.problems else f"{len(report.problems)} problem(s)")
    return QuickstartResult(workdir=workdir, registry=reg.root, steps=steps,
                            production=reg.resolve("churn@production").version)

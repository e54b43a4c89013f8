"""``mlserve quickstart``: run the main job end to end, printing every step as a command to replay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mlserve.cli._options import JsonOpt



def _runner(workdir: Path, registry: Path) -> Any:
    """Run ``mlserve ARGS --json`` as its own process in ``workdir``, with the quickstart's registry."""
    from mlserve.errors import MlserveError

    env = {k: v for k, v in os.environ.items() if k != "MLSERVE_CONFIG"}
    env.update(MLSERVE_REGISTRY=str(registry), MLSERVE_ACTOR="quickstart", MLSERVE_NO_PROGRESS="1")

    def run(argv: list[str]) -> dict:
        proc = subprocess.run([sys.executable, "-m", "mlserve", *argv, "--json"], cwd=workdir, env=env,
                              capture_output=True, text=True)
        try:
            doc = json.loads(proc.stdout)
        except ValueError:
            doc = {}
        if proc.returncode != 0 or doc.get("kind") == "error":
            error = MlserveError(f"quickstart step 'mlserve {' '.join(argv)}' failed (exit {proc.returncode}): "
                                 + (proc.stderr.strip().splitlines() or ["no message"])[-1])
            error.exit_code = proc.returncode or 1
            raise error
        return doc["result"]

    return run


def _render(out: Any, r: Any) -> None:
    if r.started_clean:
        print(f"# started clean: removed the previous quickstart's files in {r.workdir}")
    sys.stdout.write(r.script())
    print(f"# churn@production is version {r.production}")


def quickstart(
    workdir: Annotated[Path, typer.Option("--workdir", metavar="DIR", help=(
        "Where the example model, its registry and its manifests go. A rerun in a quickstart's directory starts "
        "clean; any other non-empty directory is refused."))] = Path("mlserve-quickstart"),
    as_json: JsonOpt = False,
) -> None:
    """Run the whole workflow on an example model, in its own directory and registry.

    \b
    Steps, each a real mlserve command printed so that it can be replayed:
      1. train a small churn classifier twice (numpy) and save both as ONNX;
      2. register both versions with their accuracy as a metric;
      3. promote version 1 behind a metric gate ('accuracy>=0.5');
      4. promote version 2 with a compare-and-swap (--expect-current 1) and a stricter gate;
      5. roll back to version 1 (the escape hatch) and read the production history;
      6. optimize the production model (--variant fp32, parity-checked) and register the result;
      7. roll that version out as a canary (10% -> 50% -> 100%) on generated Kubernetes manifests
         (manifest mode: no cluster needed), which promotes it in the registry;
      8. verify the registry.

    \b
    Example:
      mlserve quickstart --workdir /tmp/mlserve-demo
    """
    from mlserve.cli._output import emit, progress_for
    from mlserve.quickstart import registry_of, run_quickstart

    workdir = workdir.absolute()
    result = run_quickstart(workdir, _runner(workdir, registry_of(workdir)), progress=progress_for(as_json))
    emit("quickstart", result, as_json, _render)

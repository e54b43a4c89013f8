"""``mlserve quickstart``: run the main job end to end, printing every step as a command to replay."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from mlserve.cli._options import JsonOpt


class _Background:
    """A command started in the background: its own session (a Ctrl-C at the terminal reaches the quickstart,
    which stops it in order), stopped with SIGTERM and waited for."""

    def __init__(self, proc: subprocess.Popen, files: list[Any]) -> None:
        self.proc = proc
        self.pid = proc.pid
        self._files = files

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        for fh in self._files:
            fh.close()
        return code


class _Runner:
    """Run ``mlserve ARGS --json`` as its own process in ``workdir``, with the quickstart's registry."""

    def __init__(self, workdir: Path, registry: Path, admin_token: str) -> None:
        env = {k: v for k, v in os.environ.items() if k != "MLSERVE_CONFIG"}
        env.update(MLSERVE_REGISTRY=str(registry), MLSERVE_ACTOR="quickstart", MLSERVE_NO_PROGRESS="1",
                   MLSERVE_ADMIN_TOKEN=admin_token)
        self.env = env
        self.workdir = workdir

    def __call__(self, argv: list[str], *, ok_exit: tuple[int, ...] = (0,)) -> dict:
        from mlserve.errors import MlserveError

        proc = subprocess.run([sys.executable, "-m", "mlserve", *argv, "--json"], cwd=self.workdir, env=self.env,
                              capture_output=True, text=True)
        try:
            doc = json.loads(proc.stdout)
        except ValueError:
            doc = {}
        if proc.returncode not in ok_exit or doc.get("kind") in (None, "error"):
            error = MlserveError(f"quickstart step 'mlserve {' '.join(argv)}' failed (exit {proc.returncode}): "
                                 + (proc.stderr.strip().splitlines() or ["no message"])[-1])
            error.exit_code = proc.returncode or 1
            raise error
        return doc["result"]

    def start(self, argv: list[str], *, stdout: str, stderr: str) -> _Background:
        out = (self.workdir / stdout).open("wb")
        err = (self.workdir / stderr).open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "mlserve", *argv], cwd=self.workdir, env=self.env,
                                stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        return _Background(proc, [out, err])


def _render(out: Any, r: Any) -> None:
    if r.started_clean:
        print(f"# started clean: removed the previous quickstart's files in {r.workdir}")
    sys.stdout.write(r.script())
    if r.canary is not None:
        print(f"# canary of churn:{r.canary.version}: {r.canary.outcome}")
    if r.broken is not None:
        print(f"# broken churn:{r.broken.version}: {r.broken.outcome} ({r.broken.message})")
    if r.load is not None:
        s = r.load
        print(f"# load: {s.requests} requests in {s.seconds:g} s, {s.errors} failed: "
              + ", ".join(f"version {v.version} {v.errors}/{v.requests}" for v in s.by_version))
        print(f"# users on stable: {s.stable_requests} requests, {s.stable_errors} failed"
              + ("" if r.stable_ok else "  <-- NOT ZERO"))
    if r.ab is not None:
        print(f"# A/B {r.ab.experiment}: {r.ab.verdict}")
    print(f"# churn@production is version {r.production}")
    print(f"# quickstart took {r.elapsed_seconds:g} s")


def quickstart(
    directory: Annotated[Optional[Path], typer.Argument(metavar="DIR", show_default=False, help=(
        "The work directory (the same as --workdir)."))] = None,
    workdir: Annotated[Path, typer.Option("--workdir", metavar="DIR", help=(
        "Where the example model, its registry, logs and files go. A rerun in a quickstart's directory starts "
        "clean; any other non-empty directory is refused."))] = Path("mlserve-quickstart"),
    port: Annotated[Optional[int], typer.Option("--port", metavar="PORT", help=(
        "First of 4 consecutive loopback ports (server, its admin endpoint, the A/B server, its admin endpoint); "
        "default: free ports chosen at start."))] = None,
    with_manifests: Annotated[bool, typer.Option("--with-manifests", help=(
        "Also roll the A/B's treatment out as a canary on generated Kubernetes manifests (manifest mode, "
        "no cluster needed)."))] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run the whole workflow on an example model, in its own directory and registry.

    \b
    Steps, each a real mlserve command printed so that it can be replayed:
      1. train a small churn classifier twice (numpy), save both as ONNX, and a deliberately broken build;
      2. register both versions; promote, promote with a compare-and-swap, roll back, read the history;
      3. optimize the production model (--variant fp32, parity-checked) and register the result;
      4. start mlserve serve in the background on loopback (admin endpoint, sticky X-User-Id), and
         mlserve load in the background (200 requests/s from 400 users);
      5. roll the optimized version out as a canary with --target local, judged on the server's own
         /metrics: promoted;
      6. register the broken version and roll it out: the judge rejects it, the server rolls back;
         the load's report: errors by version, and none for users on stable;
      7. a short A/B experiment (a 50/50 split by user key, simulated outcomes) and mlserve ab analyze;
      8. with --with-manifests, a canary on generated Kubernetes manifests; verify the registry.
    Every process started is stopped at the end (also on failure or Ctrl-C). Under 90 s on 2 cores.

    \b
    Example:
      mlserve quickstart --workdir /tmp/mlserve-demo
      mlserve quickstart /tmp/mlserve-demo --with-manifests --json
    """
    import secrets

    from mlserve.cli._output import emit, progress_for
    from mlserve.quickstart import free_ports, registry_of, run_quickstart

    if directory is not None:
        if workdir != Path("mlserve-quickstart"):
            from mlserve.errors import UsageError

            raise UsageError(f"give the work directory once: {directory} or --workdir {workdir}")
        workdir = directory
    workdir = workdir.absolute()
    ports = free_ports(4, port) if port is not None else None
    token = secrets.token_hex(16)
    runner = _Runner(workdir, registry_of(workdir), token)
    # a SIGTERM or Ctrl-C unwinds run_quickstart (cli/entry.py raises it in the main thread): it stops what it started
    result = run_quickstart(workdir, runner, progress=progress_for(as_json), ports=ports, admin_token=token,
                            with_manifests=with_manifests)
    emit("quickstart", result, as_json, _render)
    if result.stable_ok is False:
        raise typer.Exit(1)

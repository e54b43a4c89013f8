"""``mlserve config``: the settings in effect, where each came from, the registry, what is installed."""

from __future__ import annotations

import sys
from typing import Any

import typer

from mlserve import exitcodes
from mlserve.cli._options import JsonOpt, RegistryOpt


def _render(out: Any, r: Any) -> None:
    from mlserve.cli._output import print_table

    where = "" if r.config_file_exists else " (not present" + (", but named by MLSERVE_CONFIG" if r.config_file_explicit
                                                               else "; defaults apply") + ")"
    out.print(f"mlserve {r.mlserve_version} on {r.python}", markup=False)
    out.print(f"config file: {r.config_file}{where}", markup=False)
    out.print(f"registry: {r.registry} ({r.registry_state})", markup=False)
    for problem in r.problems:
        out.print(f"problem: {problem}", markup=False)
    print_table(out, ["setting", "value", "source", "env var"],
                [[s.key, "-" if s.value is None else s.value, s.source, s.env] for s in r.settings], title="settings")
    print_table(out, ["extra", "installed", "missing"],
                [[e.name, "yes" if e.installed else "no", ", ".join(e.missing) or "-"] for e in r.extras],
                title="extras")
    print_table(out, ["package", "version", "extras"],
                [[d.distribution, d.version or "not installed", ", ".join(d.extras) or "(core)"] for d in r.dependencies],
                title="packages")


def show_config(ctx: typer.Context, registry: RegistryOpt = None, as_json: JsonOpt = False) -> None:
    """Show every setting in effect, its value and where it came from (flag, env var, file, default),
    the registry path, and the versions of mlserve's dependencies and which extras are installed.

    Example: mlserve config --json
    """
    from mlserve.cli._output import emit
    from mlserve.doctor import config_report

    from_flag = ctx.get_parameter_source("registry")
    flags = {"registry": registry} if from_flag is not None and from_flag.name == "COMMANDLINE" else {}
    report = config_report(flags)  # a value typer took from MLSERVE_REGISTRY is reported as the env var's
    emit("config", report, as_json, _render)
    if report.problems:
        for problem in report.problems:
            print(f"error: {problem}", file=sys.stderr)
        raise typer.Exit(exitcodes.USAGE)

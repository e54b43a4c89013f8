"""``mlserve quickstart``: run the main job end to end on embedded defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mlserve.cli._options import JsonOpt
from mlserve.cli._output import emit, progress_for


def _render(out: Console, r: Any) -> None:
    table = Table("step", "command", "outcome")
    for s in r.steps:
        table.add_row(s.name, s.command, s.outcome)
    out.print(table)
    out.print(f"registry: {r.registry}")
    out.print(f"churn@production is version {r.production}")


def quickstart(
    workdir: Annotated[Path, typer.Option("--workdir", help="Where the example model and its registry go.")] = Path(
        "mlserve-quickstart"),
    as_json: JsonOpt = False,
) -> None:
    """Build an example model, register two versions, promote, roll back and show the history.

    Example: mlserve quickstart --workdir /tmp/demo
    """
    from mlserve.quickstart import run_quickstart

    emit("quickstart", run_quickstart(workdir, progress=progress_for(as_json)), as_json, _render)


def install(app: typer.Typer) -> None:
    """Add the quickstart command to the root app."""
    app.command("quickstart")(quickstart)

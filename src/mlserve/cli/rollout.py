"""CLI for `mlserve rollout` (being built)."""

from __future__ import annotations

import typer


def install(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""

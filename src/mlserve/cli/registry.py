"""CLI for the registry commands (being built)."""

from __future__ import annotations

import typer


def install(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""

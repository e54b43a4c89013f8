"""Options shared by many commands, declared once so their help and environment variables agree."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mlserve import config

JsonOpt = Annotated[bool, typer.Option(
    "--json", help="Print a versioned JSON document on stdout instead of text (also before the command name).")]

RegistryOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--registry",
        metavar="DIR",
        envvar=config.env_var("registry"),
        show_envvar=True,
        help="Registry directory (default: a directory under the user's data dir; config key 'registry').",
    ),
]
LockTimeoutOpt = Annotated[
    Optional[float],
    typer.Option(
        "--lock-timeout",
        metavar="SECONDS",
        envvar=config.env_var("lock_timeout"),
        show_envvar=True,
        help="Seconds to wait for the registry lock before giving up with exit code 4 (default 30).",
    ),
]

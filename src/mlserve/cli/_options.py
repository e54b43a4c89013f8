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

# --- options that optimize and benchmark share: one name, one meaning, one default ---------------

InputOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--input",
        "-i",
        metavar="NAME[:DIMS][:DTYPE][:LOW..HIGH][=VALUE]",
        help="Describe an input (repeatable): 'x:Nx3x224x224:float32' (N: the batch; needed where the model declares no "
             "size), 'ids:0..30522' (integers drawn from [0, 30522)), 'sr=16000' (a fixed value). Parts left out come from the model.",
    ),
]
ThreadsOpt = Annotated[
    Optional[str],
    typer.Option(
        "--threads",
        metavar="LIST",
        help="Intra-op thread counts, comma-separated, e.g. 1,2: every model and backend runs at each (torch.set_num_threads,"
             " ONNX Runtime intra_op_num_threads). Default: the cores this process may use.",
    ),
]
WarmupOpt = Annotated[float, typer.Option("--warmup", min=0, metavar="SECONDS", help="Seconds of untimed warm-up calls before measuring each model.")]
IterationsOpt = Annotated[int, typer.Option("--iterations", min=1, metavar="N", help="Each measurement makes at least this many timed calls ...")]
DurationOpt = Annotated[float, typer.Option("--duration", min=0, metavar="SECONDS", help="... and lasts at least this many seconds.")]
RoundsOpt = Annotated[int, typer.Option("--rounds", min=1, metavar="N", help="Models compared with each other are timed in this many interleaved rounds (A B A B ...); ratios are the median of the per-round ratios.")]

WARMUP_DEFAULT = 0.2
ITERATIONS_DEFAULT = 10
DURATION_DEFAULT = 3.0
ROUNDS_DEFAULT = 10


def parse_threads(text: str | None) -> list[int]:
    """``--threads 1,2`` -> [1, 2]; empty when not given (the caller's default: the usable cores)."""
    from mlserve.errors import UsageError

    if text is None:
        return []
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"bad --threads {text!r}: use comma-separated positive integers, e.g. 1,2") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"bad --threads {text!r}: use comma-separated positive integers, e.g. 1,2")
    return list(dict.fromkeys(values))

"""Every exit code the ``mlserve`` command can return, named once.

The README's table is generated from this module's ``EXIT_CODES`` (a test checks that they agree).
"""

from __future__ import annotations

OK = 0
"""The command did what was asked (a rollout: the new version was promoted)."""
ERROR = 1
"""Unexpected internal error: a bug. Rerun with --traceback and report it."""
USAGE = 2
"""Bad command line or bad input value (unknown option, invalid name, malformed file)."""
NOT_FOUND = 3
"""A model, version, stage, file or resource does not exist (or a stage is empty)."""
CONFLICT = 4
"""Lock timeout, a failed compare-and-swap (--expect-current), an existing version, or a rollout already running."""
INTEGRITY = 5
"""Stored data is damaged: a checksum mismatch, a corrupt index, a dangling or foreign symlink."""
GATE_FAILED = 6
"""A gate said no: --require on metrics, a parity check, --fail-if-slower-than, an unstable benchmark."""
MISSING_DEPENDENCY = 7
"""An optional dependency or capability is missing (install mlserve[x], or no CUDA/TensorRT here)."""
IO_ERROR = 8
"""The file system refused an operation (permission denied, disk full, not a directory)."""
ROLLED_BACK = 10
"""Rollout: the judge (analysis or smoke check) failed a step and traffic went back to stable."""
INCONCLUSIVE = 11
"""Rollout: not enough data to judge; traffic went back to stable (never counted as a pass)."""
INFRASTRUCTURE = 12
"""Rollout: the Kubernetes API or Prometheus was unreachable or failed; state is left recoverable."""
ABORTED = 13
"""Rollout: aborted by a user (abort command, SIGINT/SIGTERM) or its deadline; traffic is on stable."""
INTERRUPTED = 130
"""Interrupted by Ctrl-C (SIGINT) outside a rollout; nothing half-written is left behind."""
BROKEN_PIPE = 141
"""Stdout was closed early (a reader such as `head -1` quit): 128 + SIGPIPE, as a shell reports for tools stopped by a closed pipe. Work already committed stays committed; nothing is printed."""
TERMINATED = 143
"""Terminated by SIGTERM outside a rollout: 128 + SIGTERM; partial copies are removed as for Ctrl-C."""

EXIT_CODES: dict[str, int] = {
    name: value for name, value in dict(globals()).items() if name.isupper() and isinstance(value, int)
}


def describe(code: int) -> str:
    """The docstring of a named exit code (used for the README table)."""
    import ast
    import inspect
    import sys

    source = inspect.getsource(sys.modules[__name__])
    tree = ast.parse(source)
    body = tree.body
    for i, node in enumerate(body):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and node.value.value == code:
            if i + 1 < len(body) and isinstance(body[i + 1], ast.Expr):
                return str(body[i + 1].value.value)  # type: ignore[attr-defined]
    return ""

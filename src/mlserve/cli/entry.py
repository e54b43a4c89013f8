"""The ``mlserve`` executable's first code: standard library only, so it is in charge from the first instant.

Ctrl-C (SIGINT) or SIGTERM at any moment, even while the command modules are still being imported,
ends the process with its documented exit code (130, 143) and one line on stderr, never a
traceback. Both arrive as exceptions in the main thread, so ``finally`` blocks run: a ``register``
interrupted during its copy removes its staging directory either way.
"""

from __future__ import annotations

import signal
import sys

from mlserve import exitcodes


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException, like KeyboardInterrupt, so no ``except Exception`` swallows it."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def _say(message: str) -> None:
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def main() -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        from mlserve.cli import _fast

        code = _fast.run(sys.argv[1:])
        if code is None:
            from mlserve.cli.app import run

            code = run(sys.argv[1:])
    except KeyboardInterrupt:
        _say("interrupted")
        code = exitcodes.INTERRUPTED
    except Terminated:
        _say("terminated")
        code = exitcodes.TERMINATED
    # The command is over and its exit code decided: a Ctrl-C now would otherwise land after the interpreter
    # restored the default handlers during shutdown and kill the process with -SIGINT instead.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(code)

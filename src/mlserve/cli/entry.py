"""The ``mlserve`` executable's first code: standard library only, so it is in charge from the first instant.

Signals, in three phases:

- Start-up (imports, parsing, read-only fast paths): nothing has been changed yet, so SIGINT and SIGTERM
  end the process at once with one line on stderr and exit 130 or 143. Raising an exception here
  instead would land inside importlib or a library's import and be swallowed or turned into another
  error.
- The command's own work (from the moment its function is called, :func:`begin_work`): the signal is
  raised as KeyboardInterrupt or :class:`Terminated` in the main thread, so ``finally`` blocks clean up
  (a ``register`` interrupted during its copy removes its staging directory).
- After the exit code is decided: both are blocked, so a late Ctrl-C cannot turn a finished command
  into a failure.

The few milliseconds before this module runs belong to the interpreter's own start-up.
"""

from __future__ import annotations

import os
import signal
import sys

from mlserve import exitcodes


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException, like KeyboardInterrupt, so no ``except Exception`` swallows it."""


_working = False
_WORDS = {signal.SIGINT: ("interrupted", exitcodes.INTERRUPTED), signal.SIGTERM: ("terminated", exitcodes.TERMINATED)}


def _on_signal(signum: int, frame: object) -> None:
    word, code = _WORDS[signal.Signals(signum)]
    if not _working:
        try:
            os.write(2, f"{word}\n".encode())
        except OSError:
            pass
        os._exit(code)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt()
    raise Terminated()


def begin_work() -> None:
    """The command's function starts: from now on a signal unwinds the stack so that cleanup runs."""
    global _working
    _working = True


def _say(message: str) -> None:
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):
        pass


def main() -> None:
    for sig in _WORDS:
        signal.signal(sig, _on_signal)
    from mlserve.cli._output import QuietStderr

    sys.stderr = QuietStderr(sys.stderr)  # type: ignore[assignment]
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
    # The exit code is decided: a Ctrl-C now would otherwise land after the interpreter restored the
    # default handlers during shutdown and kill the process with -SIGINT instead.
    signal.pthread_sigmask(signal.SIG_BLOCK, set(_WORDS))
    sys.exit(code)

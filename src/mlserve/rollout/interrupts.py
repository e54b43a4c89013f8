"""SIGINT/SIGTERM during a rollout: the handler only raises a flag; the engine reacts at its next check.

The engine checks the flag at least every 50 ms while it waits, so a Ctrl-C or a CI runner's
SIGTERM leads to the documented end state: traffic back to stable (``--on-interrupt abort``, the
default) or left where it is with the Lease marked ``paused`` (``--on-interrupt pause``).
A second signal while the first is being handled is ignored, so a nervous double Ctrl-C cannot
leave the revert half-done.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from mlserve.rollout.world import Interrupt


@contextmanager
def catch_signals(interrupt: Interrupt | None = None) -> Iterator[Interrupt]:
    """Turn SIGINT and SIGTERM into ``interrupt.set(name)`` for the duration of the block."""
    interrupt = interrupt or Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield interrupt  # signal handlers can only be installed from the main thread
        return

    def handler(signum: int, frame: object) -> None:
        if interrupt.signal is None:
            interrupt.set(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield interrupt
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)

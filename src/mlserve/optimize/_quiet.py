"""Silence libraries that print: the exporters and quantizers write to stdout, stderr and the root logger.

The core must not print (stdout carries JSON documents), so their chatter is captured here and
only surfaces inside an error message when the call fails.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Iterator


class Captured:
    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.warnings: list[str] = []

    def tail(self, limit: int = 300) -> str:
        text = " ".join(self.stream.getvalue().split())
        return text[-limit:]


@contextlib.contextmanager
def quiet() -> Iterator[Captured]:
    captured = Captured()
    previous_disable = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(captured.stream), contextlib.redirect_stderr(
            captured.stream
        ):
            warnings.simplefilter("always")
            yield captured
        captured.warnings = [str(w.message) for w in caught]
    finally:
        logging.disable(previous_disable)

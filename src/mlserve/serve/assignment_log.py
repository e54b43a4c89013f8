"""The assignment log of ``mlserve serve --assignment-log FILE``: who was sent to which variant.

JSON lines of version 1 (docs/experiments.md), made by :func:`mlserve.experiments.assignment_line`
(so ``mlserve ab analyze`` reads them as they are), with two fields that version 1 lets writers add:
``model`` and ``version`` (the version that answered). Only requests with a sticky key are logged:
a request without one is not a unit of an experiment.

A key is written when it is first seen in this process with that variant and version; later requests
of the same key are the same exposure and are not written again (a bounded memory of recent keys:
when it is full it starts over, and a key seen again is written once more, which the analysis counts
once). Lines are collected and appended with one ``write`` per flush (the file is opened with
O_APPEND, so the workers of ``--workers N`` can share it without tearing lines); the server flushes
every half second and when it stops.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from mlserve.errors import UsageError

FLUSH_LINES = 512
SEEN_LIMIT = 200_000


class AssignmentLog:
    def __init__(self, path: Path, log: Callable[..., None] | None = None, *, seen_limit: int = SEEN_LIMIT) -> None:
        self.path = path
        try:
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UsageError(f"--assignment-log {path}: cannot open it for appending: {exc.strerror or exc}") from None
        self._log = log
        self._pending: list[tuple[float, str, str, str, str, str]] = []
        self._seen: set[tuple[str, str, str, str]] = set()
        self._seen_limit = seen_limit
        self.written = 0
        self.failed = False

    def record(self, experiment: str, key: str, variant: str, model: str, version: str) -> None:
        """Note one exposure (from the event loop); written at the next flush unless already seen.

        Only the seen-check and an append happen here, on every request's path; the lines are made at the flush.
        """
        seen = (experiment, variant, version, key)
        if seen in self._seen:
            return
        if len(self._seen) >= self._seen_limit:
            self._seen.clear()
        self._seen.add(seen)
        self._pending.append((time.time(), experiment, key, variant, model, version))
        if len(self._pending) >= FLUSH_LINES:
            self.flush()

    def _lines(self, pending: list[tuple[float, str, str, str, str, str]]) -> bytes:
        from mlserve.experiments import assignment_line

        out = []
        for at, experiment, key, variant, model, version in pending:
            line = assignment_line(experiment, key, variant, datetime.fromtimestamp(at, timezone.utc))
            out.append(f'{line[:-1]},"model":{json.dumps(model)},"version":{json.dumps(version)}}}\n')
        return "".join(out).encode("utf-8")

    def flush(self) -> None:
        if not self._pending or self._fd is None:
            return
        pending, self._pending = self._pending, []
        data = self._lines(pending)
        count = len(pending)
        try:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            self.written += count
        except OSError as exc:  # a full disk must not stop the serving; it is said once
            if not self.failed and self._log is not None:
                self._log("assignment_log_failed", level="error", path=str(self.path), error=str(exc))
            self.failed = True

    def close(self) -> None:
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

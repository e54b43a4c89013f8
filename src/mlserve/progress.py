"""Progress reporting that the core can call without knowing who listens.

The core takes a :class:`Progress` and calls ``with progress.task("hashing", total=n) as t:
t.advance(k)``. The default does nothing; the CLI passes one that draws on stderr.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class Task:
    def advance(self, amount: float = 1) -> None:  # pragma: no cover - trivial
        pass

    def update(self, *, completed: float | None = None, total: float | None = None, description: str | None = None) -> None:
        pass


class Progress:
    """A progress sink that ignores everything (the default for library callers)."""

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[Task]:
        yield Task()

    def note(self, message: str) -> None:
        """A one-line status message (a warning or a phase change) for humans."""


NULL_PROGRESS = Progress()

"""Rendering shared by every command: JSON documents on stdout, tables for people, progress on stderr.

A JSON document is ``{"kind": ..., "result": ..., "schema_version": 1}`` with sorted keys, built from
the same result object the table is rendered from. Under ``--json`` nothing but the document goes to
stdout and nothing at all goes to stderr on success.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

from mlserve.progress import Progress, Task

if TYPE_CHECKING:  # rich is imported only when something is drawn: `mlserve resolve` never pays for it
    from rich.console import Console

SCHEMA_VERSION = 1

_plain_forced = False
"""Set by ``--plain`` (anywhere on the command line): plain tab-separated output even on a terminal."""


def force_plain(value: bool = True) -> None:
    global _plain_forced
    _plain_forced = value


def plain_output() -> bool:
    """Plain text (tab-separated tables, nothing truncated) when stdout is not a terminal, or with --plain."""
    return _plain_forced or not sys.stdout.isatty()


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def print_table(out: "Console", header: list[str], rows: list[list[Any]], *, title: str | None = None,
                right: set[str] | frozenset[str] = frozenset()) -> None:
    """A table for people on a terminal; tab-separated lines (``# title``, a header line, nothing cut) otherwise.

    The plain form is what scripts grep: one row per line, cells separated by one tab, tabs and newlines
    inside a cell written as ``\\t`` and ``\\n``. ``right`` names the columns aligned right on a terminal.
    """
    if plain_output():  # a title becomes one "# title" line; then a header line and one line per row
        lines = ([f"# {title}"] if title else []) + ["\t".join(_cell(c) for c in row) for row in [header, *rows]]
        out.file.write("\n".join(lines) + "\n")
        out.file.flush()
        return
    from rich.table import Table

    table = Table(title=title, title_justify="left") if title else Table()
    for i, name in enumerate(header):  # short cells (versions, shas, times) never fold mid-token; long ones fold
        longest = max([len(name), *(len(_cell(row[i])) for row in rows)])
        table.add_column(name, justify="right" if name in right else "left", overflow="fold",
                         min_width=longest if longest <= 20 else 20)
    for row in rows:
        table.add_row(*(_cell(c) for c in row))
    out.print(table)


def stdout_console() -> "Console":
    from rich.console import Console

    return Console(file=sys.stdout, soft_wrap=True, highlight=False, markup=False, emoji=False)


def stderr_console() -> "Console":
    from rich.console import Console

    return Console(file=sys.stderr, stderr=True, highlight=False, soft_wrap=True)


class _LazyConsole:
    """Stands for the stdout console and builds it on first use (a renderer that only prints never does)."""

    def __init__(self) -> None:
        self._console: Any = None

    def _real(self) -> Any:
        if self._console is None:
            object.__setattr__(self, "_console", stdout_console())
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_console":
            object.__setattr__(self, name, value)
        else:
            setattr(self._real(), name, value)


class StdoutClosed(Exception):
    """The reader of stdout went away (``| head -1``): the command stops quietly with exit 141."""


class GuardedStdout:
    """Wraps stdout so that a closed pipe raises :class:`StdoutClosed`, which no library turns into an exit of
    its own (rich and click exit 1 on a BrokenPipeError), and later writes go to /dev/null instead of failing."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner  # None when the process was started with stdout closed (`mlserve list >&-`)

    def write(self, text: str) -> int:
        if self._inner is None:
            raise StdoutClosed()
        try:
            return self._inner.write(text)
        except BrokenPipeError:
            self._closed()
            raise  # unreachable: _closed raises

    def flush(self) -> None:
        if self._inner is None:
            return
        try:
            self._inner.flush()
        except BrokenPipeError:
            self._closed()

    def isatty(self) -> bool:
        return self._inner is not None and self._inner.isatty()

    def _closed(self) -> None:
        try:
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, self._inner.fileno())
            os.close(fd)
        except (OSError, ValueError, AttributeError):
            pass
        raise StdoutClosed()

    def __getattr__(self, name: str) -> Any:
        if self._inner is None:
            raise StdoutClosed()
        return getattr(self._inner, name)


class QuietStderr:
    """Wraps stderr so that a closed or full stderr (`2>&1 | true`, `2>/dev/full`, `2>&-`) never changes the exit
    code: what cannot be written is dropped, and the command's own exit code stands."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        if self._inner is not None:
            try:
                return self._inner.write(text)
            except (OSError, ValueError):
                self._drop()
        return len(text)

    def flush(self) -> None:
        if self._inner is not None:
            try:
                self._inner.flush()
            except (OSError, ValueError):
                self._drop()

    def _drop(self) -> None:
        try:
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 2)
            os.close(fd)
        except OSError:
            pass
        self._inner = None

    def isatty(self) -> bool:
        return self._inner is not None and self._inner.isatty()

    def fileno(self) -> int:
        return 2

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner if self._inner is not None else sys.__stderr__, name)


def to_jsonable(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(item) for item in obj]
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    return obj


def document(kind: str, result: Any) -> str:
    doc = {"kind": kind, "schema_version": SCHEMA_VERSION, "result": to_jsonable(result)}
    return json.dumps(doc, sort_keys=True, indent=2, allow_nan=False, default=str)


def emit(kind: str, result: Any, as_json: bool, render: Callable[["Console", Any], None]) -> None:
    """Print ``result`` as a JSON document or through ``render`` (a table for people)."""
    if as_json:
        sys.stdout.write(document(kind, result) + "\n")
        sys.stdout.flush()
        return
    render(_LazyConsole(), result)  # type: ignore[arg-type]
    for warning in getattr(result, "warnings", None) or []:
        warn(warning)


def warn(message: str) -> None:
    from rich.markup import escape

    stderr_console().print(f"[yellow]warning:[/yellow] {escape(message)}", markup=True)


def info(message: str, as_json: bool = False) -> None:
    if not as_json:
        stderr_console().print(message, markup=False)


class _RichTask(Task):
    def __init__(self, progress: Any, task_id: Any) -> None:
        self._progress, self._id = progress, task_id

    def advance(self, amount: float = 1) -> None:
        self._progress.advance(self._id, amount)

    def update(self, *, completed: float | None = None, total: float | None = None, description: str | None = None) -> None:
        kwargs: dict[str, Any] = {}
        if completed is not None:
            kwargs["completed"] = completed
        if total is not None:
            kwargs["total"] = total
        if description is not None:
            kwargs["description"] = description
        self._progress.update(self._id, **kwargs)


class RichProgress(Progress):
    """Progress bars on stderr, drawn only when stderr is a terminal."""

    def __init__(self) -> None:
        self.console = stderr_console()

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[Task]:
        from rich.progress import BarColumn, DownloadColumn, Progress as _P, SpinnerColumn, TextColumn, TimeRemainingColumn

        columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn()]
        if total and total > 4096:
            columns += [DownloadColumn(), TimeRemainingColumn()]
        with _P(*columns, console=self.console, transient=True) as bar:
            yield _RichTask(bar, bar.add_task(description, total=total))

    def note(self, message: str) -> None:
        self.console.print(message, markup=False)


def progress_for(as_json: bool) -> Progress:
    """A progress sink for a command: silent under --json or when stderr is not a terminal."""
    from mlserve import config

    if as_json or not sys.stderr.isatty() or config.resolve("no_progress"):
        return Progress()
    return RichProgress()

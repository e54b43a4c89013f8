"""Small JSON records that other parts of mlserve keep inside the registry directory.

A :class:`RecordFolder` is one folder under the registry root (``<root>/<area>/``) holding named
records (``<name>.json``). Each record is changed under its own ``flock`` (``<name>.lock``, dropped
by the kernel the instant its holder dies, like the model lock) and written by one atomic rename,
so a reader never sees half a record and two writers never interleave. The registry itself does
not read these folders; ``mlserve rollout --target local`` keeps its rollout state (the Lease of a
cluster rollout) here.

    folder = Registry(root).records("rollouts")
    with folder.locked("mlserve-rollout-churn"):
        doc = folder.read("mlserve-rollout-churn")
        folder.write("mlserve-rollout-churn", b"{...}")
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from mlserve.errors import LockTimeoutError, UsageError
from mlserve.registry import fsio, locks

AREAS = frozenset({"rollouts"})
"""The folders other parts of mlserve may keep under the registry root (each one named in ``layout.ROOT_ENTRIES``)."""

_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,252}$")


def check_record_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise UsageError(f"invalid record name {name!r}: lowercase letters, digits, '.' and '-', at most 253")
    return name


class RecordFolder:
    """Named JSON records under ``<registry root>/<area>/``, each behind a file lock, written atomically."""

    def __init__(self, root: Path, area: str, *, lock_timeout: float) -> None:
        if area not in AREAS:
            raise UsageError(f"unknown record area {area!r} (known: {', '.join(sorted(AREAS))})")
        self.dir = Path(root) / area
        self.lock_timeout = lock_timeout

    def path(self, name: str) -> Path:
        return self.dir / f"{check_record_name(name)}.json"

    def read(self, name: str) -> bytes | None:
        """The record's bytes, or None when there is none (an atomic rename: never half a record)."""
        try:
            return self.path(name).read_bytes()
        except FileNotFoundError:
            return None

    @contextmanager
    def locked(self, name: str) -> Iterator[None]:
        """Hold the record's lock (waiting up to ``lock_timeout``; :class:`LockTimeoutError` after)."""
        check_record_name(name)
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            held = locks.model_lock(self.dir / f"{name}.lock", name, self.lock_timeout)
            held.__enter__()
        except LockTimeoutError:
            raise LockTimeoutError(f"could not lock {self.dir.name}/{name} within {self.lock_timeout:g}s: another mlserve "
                                   "process is writing it", hint="retry, or raise --lock-timeout / MLSERVE_LOCK_TIMEOUT") from None
        try:
            yield
        finally:
            held.__exit__(None, None, None)

    def write(self, name: str, data: bytes) -> None:
        """Replace the record in one rename (call it while holding :meth:`locked`)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fsio.atomic_write_bytes(self.path(name), data)

    def remove(self, name: str) -> bool:
        """Delete the record (call it while holding :meth:`locked`); False when there was none."""
        try:
            self.path(name).unlink()
        except FileNotFoundError:
            return False
        fsio.fsync_dir(self.dir)
        return True

"""Inter-process locks: the per-model write lock, and the liveness locks of staging entries.

Both are ``flock`` locks held on an open file, so the kernel drops them the instant their holder
dies, whatever its PID namespace (containers) and whichever machine mounted the volume last: a
lock is alive exactly while its writer is. (The model lock is compatible with ``filelock``, which
older mlserve versions used: same file, same ``flock``.)

Read-only work (``verify`` without ``--repair``, ``gc --dry-run``) takes the model lock when it can
and never needs to create it, so a registry on a read-only mount can still be checked.
"""

from __future__ import annotations

import errno
import os
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from mlserve.errors import LockTimeoutError

_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}
_POLL = 0.01


def _flock(fd: int, *, blocking: bool) -> bool:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        return False


def _wait(fd: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    delay = _POLL
    while not _flock(fd, blocking=False):
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    return True


@contextmanager
def model_lock(lock_path: Path, name: str, timeout: float, *, read_only: bool = False) -> Iterator[bool]:
    """Hold the write lock of one model. ``read_only``: open the lock file without creating or writing
    it, and go ahead unlocked when it cannot be opened (nothing can write a read-only registry).
    Yields whether the lock is held."""
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if not read_only or exc.errno not in _READ_ONLY | {errno.ENOENT}:
            raise
        try:
            fd = os.open(lock_path, os.O_RDONLY)
        except OSError:
            yield False
            return
    try:
        if not _wait(fd, timeout):
            raise LockTimeoutError(
                f"could not lock model {name!r} within {timeout:g}s: another mlserve process is writing it",
                hint="retry, or raise --lock-timeout / MLSERVE_LOCK_TIMEOUT")
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock


class EntryLock:
    """The liveness lock of a staging entry: ``<dir>/<id>.lock``, held by the writer for the entry's life.

    The lock file is created and locked before the entry itself, so an entry without a held lock
    belongs to no live writer.
    """

    def __init__(self, folder: Path, ident: str | None = None) -> None:
        self.ident = ident or uuid.uuid4().hex
        self.entry = folder / self.ident
        self.path = folder / f"{self.ident}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            _flock(fd, blocking=True)
            try:  # a cleaner may have removed the file between our open and our lock: lock the one on disk
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return
            os.close(fd)

    def release(self, *, remove: bool = True) -> None:
        if self._fd is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


def entry_is_live(lock_path: Path) -> bool:
    """Whether a live writer holds ``lock_path`` (a missing lock file: no writer)."""
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        return not _flock(fd, blocking=False)
    finally:
        os.close(fd)


@contextmanager
def claim_dead_entry(lock_path: Path) -> Iterator[bool]:
    """Lock a staging entry's lock file if no live writer holds it; yields whether it is dead (and now ours).

    While the claim is held the entry can be removed safely; the lock file is removed last.
    """
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        yield True  # no lock file: an entry of an older mlserve or a writer that died while cleaning up
        return
    except OSError as exc:
        if exc.errno not in _READ_ONLY:
            raise
        fd = os.open(lock_path, os.O_RDONLY)
    try:
        if not _flock(fd, blocking=False):
            yield False
            return
        yield True
        lock_path.unlink(missing_ok=True)
    finally:
        os.close(fd)

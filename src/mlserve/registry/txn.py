"""The write-ahead record (``.txn.json``) of the change in progress, and how to tell whether it committed.

A writer (holding the model lock) writes the record, passes the commit point, stamps the event with
the commit time, journals it and updates the derived indexes, then removes the record. If it dies,
or a follow-up fails (a full disk), the record stays: the next writer finishes the change, and
readers already report it (see :func:`pending_event`). This module only reads and writes records and
answers "did it commit, and when"; the follow-ups live with their domains (``recovery`` dispatches).
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from typing import Callable

from mlserve.errors import CorruptIndexError, MlserveError
from mlserve.registry import journal
from mlserve.registry.layout import ModelPaths, load_doc, save_doc
from mlserve.registry.schema import Event, TxnRecord


def write(paths: ModelPaths, record: TxnRecord) -> None:
    save_doc(paths.txn, record)


def read(paths: ModelPaths) -> TxnRecord | None:
    """The pending record; None when there is none or it is unreadable (a record torn before its
    commit point could pass: the writer fsyncs it before going on)."""
    try:
        return load_doc(paths.txn, TxnRecord, "write-ahead record")
    except (FileNotFoundError, CorruptIndexError):
        return None


def remove(paths: ModelPaths) -> None:
    paths.txn.unlink(missing_ok=True)


def state_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def committed(paths: ModelPaths, record: TxnRecord) -> bool:
    """Whether the change's commit point passed."""
    if record.op == "stage":
        try:
            return os.readlink(paths.stage(record.stage or "")) == f"../versions/{record.to_version}"
        except OSError:
            return False
    if record.op == "register":
        return (paths.versions / str(record.version) / "version.json").is_file()
    if record.op == "state":
        try:
            data = (paths.version(str(record.version)) / "state.json").read_bytes()
        except OSError:
            return False
        return state_digest(data) == record.state_sha256
    if record.op == "gc":
        return journal.contains(paths, record.event.id)
    return False


def commit_time(paths: ModelPaths, record: TxnRecord) -> datetime:
    """When the commit point passed: the inode change time of what the commit renamed (the rename sets
    it), else the record's own stamp."""
    target = None
    if record.op == "stage":
        target = paths.stage(record.stage or "")
    elif record.op == "register":
        target = paths.versions / str(record.version)
    elif record.op == "state":
        target = paths.version(str(record.version)) / "state.json"
    if target is not None:
        try:
            return datetime.fromtimestamp(os.lstat(target).st_ctime, timezone.utc)
        except OSError:
            pass
    return record.event.at


def stamped(paths: ModelPaths, record: TxnRecord) -> Event:
    """The record's event with its time set to the commit point (for a gc: the journaled event as is)."""
    if record.op == "gc":
        return record.event
    return record.event.model_copy(update={"at": commit_time(paths, record)})


def pending_event(paths: ModelPaths, journaled_ids: set[str] | None = None) -> Event | None:
    """The event of a committed change that is not journaled yet (a killed writer or a full disk):
    what readers must already report."""
    if not paths.txn.exists():
        return None
    record = read(paths)
    if record is None or not committed(paths, record):
        return None
    if journaled_ids is not None:
        if record.event.id in journaled_ids:
            return None
    elif journal.contains(paths, record.event.id):
        return None
    return stamped(paths, record)


def follow_up(done: str, paths: ModelPaths, work: Callable[[], None]) -> list[str]:
    """Run the follow-ups of a committed change; a failure becomes a warning (the change stands, and
    the record left behind lets the next writer, or ``verify --repair``, finish them)."""
    try:
        work()
    except (OSError, MlserveError) as exc:
        message = exc.message if isinstance(exc, MlserveError) else f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
        return [f"{done}, but finishing the change failed ({message}); the next change to {paths.name} "
                "or 'mlserve verify --repair' completes it"]
    return []

"""Finish or discard the change a writer left half-done (called under the model lock, before any write).

A change whose commit point passed is finished (journaled exactly once, with the commit time, and
its derived indexes brought in line); one whose commit point did not pass is discarded, so the
registry is as if it never started.
"""

from __future__ import annotations

from mlserve.registry import indexes, registration, retention, stages, txn
from mlserve.registry.layout import ModelPaths
from mlserve.registry.schema import TxnRecord


def pending(paths: ModelPaths) -> tuple[TxnRecord | None, bool]:
    """The pending record (None if none or unreadable) and whether its change committed."""
    if not paths.txn.exists():
        return None, False
    record = txn.read(paths)
    return record, record is not None and txn.committed(paths, record)


def recover(paths: ModelPaths) -> str | None:
    """Bring the model to a clean state; returns what was done ("finished ...", "discarded ...") or None."""
    if not paths.txn.exists():
        return None
    record, done = pending(paths)
    if record is None:
        txn.remove(paths)  # torn before its fsync: its writer never passed the commit point
        return "discarded an unreadable write-ahead record"
    if not done:
        if record.op == "gc":
            retention.discard(paths, record)
        else:
            txn.remove(paths)
            registration.forget_staging(paths, record)
        return f"discarded an interrupted {record.op} change that had not committed"
    event = txn.stamped(paths, record)
    if record.op == "stage":
        stages.finish(paths, record, event)
    elif record.op == "state":
        indexes.finish_state(paths, event)
    elif record.op == "register":
        registration.finish(paths, record, event)
    else:
        retention.finish(paths, record)
    return f"finished an interrupted {record.op} change ({describe(record)})"


def describe(record: TxnRecord) -> str:
    if record.op == "stage":
        return f"{record.stage}: {record.from_version} -> {record.to_version}"
    if record.op == "gc":
        return f"removing {', '.join(record.removed) or 'nothing'}"
    return f"{record.event.kind} of version {record.version}"

"""Registering a version: a staging area outside the lock, then one rename under it.

The artifact is copied (and hashed) into ``.staging/<id>/`` while no lock is held; the staging
entry's liveness lock (``.staging/<id>.lock``) tells ``verify --repair`` it belongs to a live
writer. Under the model lock the version name and sequence number are chosen, ``version.json`` is
written into the staging entry, the write-ahead record goes down, and the rename to
``versions/<v>`` is the commit point; the digest link, ``model.json`` and the journal follow.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from mlserve.errors import VersionExistsError
from mlserve.registry import artifacts, fsio, indexes, journal, locks, txn, versions
from mlserve.registry.layout import Layout, ModelPaths, dump_doc, now
from mlserve.registry.locks import EntryLock
from mlserve.registry.schema import Event, ModelIndex, TxnRecord, VersionRecord


@contextmanager
def staging_area(layout: Layout) -> Iterator[Path]:
    """A fresh staging directory, held alive by its lock and removed (with the lock) on the way out."""
    layout.staging.mkdir(parents=True, exist_ok=True)
    lock = EntryLock(layout.staging)
    lock.acquire()
    try:
        lock.entry.mkdir()
        yield lock.entry
    finally:
        try:
            fsio.remove_tree(lock.entry)  # after the commit it was renamed away: nothing to remove
        finally:
            lock.release(remove=True)


@dataclass
class Copied:
    source: Path
    sha256: str
    size: int
    kind: str
    count: int


@dataclass
class Published:
    version: str
    record: VersionRecord | None
    created: bool
    duplicate_of: str | None = None
    warnings: list[str] = field(default_factory=list)


def publish(paths: ModelPaths, staging: Path, copied: Copied, *, version: str | None, metrics: dict[str, float],
            meta: dict[str, Any], reason: str | None, actor: str) -> Published:
    """Turn the staging entry into a version (the caller holds the model lock)."""
    existing = artifacts.find_by_digest(paths, copied.sha256)
    if existing is not None:
        if version is not None and version != existing:
            raise VersionExistsError(
                f"content is identical to {paths.name}:{existing}; version {version!r} was not created",
                hint=f"use {paths.name}:{existing}, or register different content", details={"duplicate_of": existing})
        if artifacts.digest_target(paths, copied.sha256) != existing:
            artifacts.link_digest(paths, copied.sha256, existing)  # a wrong link found the scan: put it right
        return Published(existing, None, False, existing,
                         [f"content is identical to version {existing}; nothing new was registered"])
    index = indexes.read_index(paths) if paths.index.exists() else ModelIndex(name=paths.name, created_at=now())
    paths.versions.mkdir(exist_ok=True)
    if version is None:
        version = str(versions.next_number(paths.versions, paths.tombstones))
    elif os.path.lexists(paths.versions / version):
        raise VersionExistsError(f"version {version!r} of model {paths.name!r} already exists; versions are immutable",
                                 hint="register under a new version, or omit --version to get the next number")
    elif (paths.tombstones / version).exists():
        raise VersionExistsError(f"version {version!r} of model {paths.name!r} was removed by gc; a version name is "
                                 "never reused, so references to it cannot change meaning", hint="choose a new version")
    seq = index.next_seq
    index.next_seq += 1  # moves before the commit point: a crash in between leaves a gap, never a reused number
    indexes.save_index(paths, index)
    source = str(copied.source.absolute())
    artifact_name = copied.source.name if copied.kind == "file" else ""
    record = VersionRecord(model=paths.name, version=version, seq=seq, sha256=copied.sha256, size=copied.size,
                           artifact_kind=copied.kind, artifact_name=artifact_name,  # type: ignore[arg-type]
                           file_count=copied.count, registered_at=now(), registered_by=actor, source=source,
                           metrics=metrics, meta=meta)
    record_file = staging / "version.json"
    fsio.atomic_write_bytes(record_file, dump_doc(record))
    os.chmod(record_file, 0o444)
    fsio.fsync_dir(staging)
    event = journal.new_event(paths.name, "register", actor, version=version, reason=reason, details={
        "sha256": copied.sha256, "size": copied.size, "source": source, "kind": copied.kind,
        "artifact_name": artifact_name, "file_count": copied.count, "seq": seq, "metrics": metrics, "meta": meta})
    pending = TxnRecord(op="register", version=version, staging=staging.name, event=event)
    txn.write(paths, pending)
    try:
        commit(staging, paths.versions / version)
    except BaseException:
        if not txn.committed(paths, pending):
            txn.remove(paths)
        raise
    event.at = now()
    warnings = txn.follow_up(f"{paths.name}:{version} is registered", paths, lambda: finish(paths, pending, event))
    return Published(version, record, True, warnings=warnings)


def commit(staging: Path, destination: Path) -> None:
    """The commit point of a registration."""
    os.rename(staging, destination)


def finish(paths: ModelPaths, record: TxnRecord, event: Event) -> None:
    """Everything after the rename, idempotent: digest link, ``model.json``, journal."""
    version = str(record.version)
    fsio.fsync_dir(paths.versions)
    sha = event.details.get("sha256")
    if isinstance(sha, str) and artifacts.digest_target(paths, sha) != version:
        artifacts.link_digest(paths, sha, version)
    index = indexes.read_index_or_none(paths)
    if index is not None and index.latest != version:
        index.latest = version
        indexes.save_index(paths, index)
    journal.append_once(paths, event)
    txn.remove(paths)
    forget_staging(paths, record)


def forget_staging(paths: ModelPaths, record: TxnRecord) -> None:
    """After a killed writer's change is finished or discarded: remove its staging entry and lock file,
    if no live process holds them (a record is written under the model lock, so its writer is gone)."""
    if not record.staging:
        return
    lock = paths.staging / f"{record.staging}.lock"
    with locks.claim_dead_entry(lock) as dead:
        if dead:
            fsio.remove_tree(paths.staging / record.staging)

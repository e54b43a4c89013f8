"""gc: which versions may go, and removing them as one journaled change.

Never removed: a version that holds a stage, the one that held production before the current
holder, production's rollback target. The gc event (with every removed name and digest) is the
commit point; after it, under the model lock, the versions are moved to the model's ``.trash``,
their digest links go, the trash is deleted (space is freed before anything new is written), and
tombstones keep the removed names from ever being reused. A gc killed after its event is finished
by the next writer; one killed before it leaves nothing removed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from mlserve.registry import artifacts, fsio, indexes, journal, txn, versions
from mlserve.registry.layout import PRODUCTION, ModelPaths, now
from mlserve.registry.schema import Event, TxnRecord, VersionRow

WORKERS = 8
"""Threads removing trees and creating tombstones: each such call waits on the file system, not the CPU."""


@dataclass
class Plan:
    rows: list[VersionRow]
    protected: dict[str, str] = field(default_factory=dict)
    doomed: list[VersionRow] = field(default_factory=list)

    @property
    def freed(self) -> int:
        return sum(r.size for r in self.doomed)

    @property
    def kept(self) -> list[str]:
        gone = {r.version for r in self.doomed}
        return [r.version for r in self.rows if r.version not in gone]


def plan(paths: ModelPaths, keep: int, events: list[Event], links: dict[str, str]) -> Plan:
    """What ``gc --keep`` would remove, from the trusted links and the journal (pending change included)."""
    stages_of: dict[str, list[str]] = {}
    for stage, version in links.items():
        stages_of.setdefault(version, []).append(stage)
    rows = versions.list_rows(paths, stages_of)
    result = Plan(rows)
    for row in rows:
        if row.stages:
            result.protected[row.version] = "holds " + ", ".join(row.stages)
    previous = journal.previous_holder(events, PRODUCTION)
    if previous:
        result.protected.setdefault(previous, "held production before the current version")
    if PRODUCTION in links:
        target = journal.rollback_target(events, PRODUCTION, lambda v: versions.exists(paths, v))
        if target:
            result.protected.setdefault(target, "production's rollback target")
    newest = {r.version for r in rows[-keep:]} if keep else set()
    result.doomed = [r for r in rows if r.version not in newest and r.version not in result.protected]
    return result


def execute(paths: ModelPaths, result: Plan, keep: int, actor: str) -> tuple[Event, list[str]]:
    """Remove the doomed versions (the caller holds the model lock)."""
    removed = [r.version for r in result.doomed]
    event = journal.new_event(paths.name, "gc", actor, details={
        "removed": sorted(removed), "sha256": {r.version: r.sha256 for r in result.doomed}, "keep": keep,
        "freed_bytes": result.freed})
    record = TxnRecord(op="gc", removed=removed, event=event)
    txn.write(paths, record)
    try:
        event.at = now()
        journal.append(paths, event)  # the commit point
    except BaseException:
        if not txn.committed(paths, record):
            txn.remove(paths)
        raise
    kept = result.kept  # in registration order
    latest = kept[-1:] or [None]
    warnings = txn.follow_up(f"gc of {len(removed)} version(s) of {paths.name} is recorded", paths,
                             lambda: finish(paths, record, latest=latest[0], known=True))
    return event, warnings


def finish(paths: ModelPaths, record: TxnRecord, *, latest: str | None = None, known: bool = False) -> None:
    """Everything after the gc event, idempotent. ``known``: ``latest`` is the newest version left
    (else it is found by reading the remaining versions)."""
    digests = record.event.details.get("sha256") or {}
    trash = paths.trash / record.event.id
    versions_dir, trash_dir, digests_dir = str(paths.versions), str(trash), str(paths.digests)
    trash.mkdir(parents=True, exist_ok=True)
    moved = False
    for version in record.removed:  # plain strings: this loop runs once per removed version
        try:
            os.rename(f"{versions_dir}/{version}", f"{trash_dir}/{version}")
            moved = True
        except FileNotFoundError:
            pass  # moved before a crash, or never there
        sha = digests.get(version)
        if sha and artifacts.link_version(f"{digests_dir}/{sha}") == version:
            os.unlink(f"{digests_dir}/{sha}")
    if moved:
        fsio.fsync_dir(paths.versions)
    fsio.remove_tree(trash, workers=WORKERS)  # under the lock: verify never sees a half-deleted tree as damage
    write_tombstones(paths, record.removed)
    index = indexes.read_index_or_none(paths)
    if index is not None:
        if not known:
            remaining = [(r.seq, r.version) for r in versions.list_rows(paths, {})]
            latest = max(remaining)[1] if remaining else None
        if index.latest != latest:
            index.latest = latest
            indexes.save_index(paths, index)
    txn.remove(paths)


def write_tombstones(paths: ModelPaths, names: list[str]) -> None:
    """One empty file per removed name (the digests are in the gc event). Created in parallel and not
    fsynced one by one: they are derived from the gc events, and a lost one is put back by the next
    writer's recovery or by repair before any version name is chosen."""
    if not names:
        return
    paths.tombstones.mkdir(exist_ok=True)
    folder = str(paths.tombstones)

    def create(name: str) -> None:
        os.close(os.open(f"{folder}/{name}", os.O_WRONLY | os.O_CREAT, 0o644))

    if len(names) < 64:
        for name in names:
            create(name)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            for _ in pool.map(create, names, chunksize=64):
                pass
    fsio.fsync_dir(paths.tombstones)


def discard(paths: ModelPaths, record: TxnRecord) -> None:
    """A gc whose event never reached the journal removed nothing: drop its record."""
    txn.remove(paths)

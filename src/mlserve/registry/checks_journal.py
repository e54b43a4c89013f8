"""verify's checks of a model's history: interrupted changes, folder shapes, leftovers, the journal
itself, and what the journal says against what is on disk."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mlserve.registry import fsio, journal, recovery, retention, stages, txn
from mlserve.registry.schema import Event, TxnRecord

if TYPE_CHECKING:
    from mlserve.registry.verify import ModelCheck


def check_pending_change(mc: ModelCheck) -> None:
    paths = mc.paths
    if not paths.txn.exists():
        return
    record, done = recovery.pending(paths)
    if record is None:
        what = "an unreadable write-ahead record (cut before its commit point)"
    else:
        what = (f"an interrupted change that committed and whose follow-ups are missing ({recovery.describe(record)})"
                if done else f"an interrupted change that never committed ({recovery.describe(record)})")
    mc.problem("interrupted-change", what, path=paths.txn, fix=lambda: recovery.recover(paths))


def check_shapes(mc: ModelCheck) -> None:
    for folder in (mc.paths.versions, mc.paths.stages, mc.paths.digests, mc.paths.tombstones):
        if folder.exists() and not folder.is_dir():
            if folder == mc.paths.versions:
                mc.problem("not-a-directory", f"{folder} is a file: the model's versions cannot be read",
                           path=folder)
            else:
                mc.problem("not-a-directory", f"{folder} is a file, not a directory (moved aside by repair, "
                           "then rebuilt)", path=folder, fix=lambda f=folder: fsio.move_aside(f))


def check_leftovers(mc: ModelCheck) -> None:
    paths = mc.paths
    for folder in (paths.dir, paths.stages, paths.digests, paths.tombstones):  # version folders: in versions()
        for entry in fsio.scan(folder):
            if entry.name.startswith(fsio.TMP_PREFIX):
                mc.problem("leftover", f"temporary file of an interrupted write: {entry.path}", path=entry.path,
                           fix=lambda e=entry.path: fsio.remove_tree(e))
    for entry in fsio.scan(paths.trash):  # under the lock: no gc is deleting it now
        mc.problem("leftover", f"leftover of an interrupted gc: {entry.path}", path=entry.path,
                   fix=lambda e=entry.path: fsio.remove_tree(e))

# ------------------------------------------------------------ the journal


def check_journal(mc: ModelCheck) -> None:
    paths = mc.paths
    read = journal.read(paths)
    bad = [d for d in read.damaged if not d.torn]
    done: list[bool] = []

    def quarantine_all() -> None:  # one rewrite for every bad line: their offsets stay valid
        if not done:
            journal.quarantine(paths, bad)
            done.append(True)

    for damaged in read.damaged:
        if damaged.torn:
            mc.problem("torn-journal-line", f"{paths.journal}: the last line was cut off by a killed writer",
                       path=paths.journal, fix=lambda: journal.cut_torn_line(paths))
        else:
            mc.problem("corrupt-journal", f"{paths.journal} line {damaged.number} (byte {damaged.offset}) is not "
                       f"a valid event ({damaged.reason}); repair moves it to {paths.quarantine.name}",
                       path=paths.journal, fix=quarantine_all)
    mc.journal_damaged = bool(bad) or read.quarantined > 0
    mc.events = read.events
    pending = txn.pending_event(paths, {e.id for e in mc.events})
    if pending is not None:
        mc.events = [*mc.events, pending]
    for event_id, copies in journal.duplicate_ids(mc.events).items():
        if all(c == copies[0] for c in copies):
            mc.problem("duplicate-event", f"event {event_id} is journaled {len(copies)} times",
                       path=paths.journal, fix=lambda: drop_duplicates(mc))
        else:
            mc.problem("duplicate-event-id", f"{len(copies)} different events share the id {event_id}",
                       path=paths.journal)
    for gap in journal.chain_breaks(mc.events):
        mc.problem("broken-stage-history", gap.message(), path=paths.journal)


def drop_duplicates(mc: ModelCheck) -> None:
    journal.drop_duplicate_copies(mc.paths)
    mc.events = journal.read(mc.paths).events


def check_disk_against_journal(mc: ModelCheck) -> None:
    paths = mc.paths
    registered = journal.register_events(mc.events)
    removed = journal.removed_by_gc(mc.events)
    links = stages.all_links(paths)
    for version in sorted(set(registered) - set(mc.records) - set(removed)):
        if os.path.lexists(paths.versions / version):
            continue  # reported above (an incomplete version)
        uses = [f"{s} would roll back to it" for s in sorted(journal.holders(mc.events))
                if journal.rollback_stack(mc.events, s)[-1:] == [version]]
        uses += [f"it holds {s}" for s, link in links.items() if link.version == version]
        why = f" ({'; '.join(uses)})" if uses else ""
        mc.problem("missing-version", f"{mc.model}:{version} was registered (journal) but versions/{version} "
                   f"is gone and no gc removed it{why}", version=version, path=paths.versions / version)
    tombstones = set(fsio.list_names(str(paths.tombstones)))
    for version, event in sorted(removed.items()):
        if version in mc.records:
            holds = [s for s, link in links.items() if link.version == version]
            mc.problem("gc-incomplete", f"{mc.model}:{version} was removed by gc (event {event.id[:12]}) but "
                       "is still on disk" + (f" and holds {', '.join(holds)}" if holds else ""),
                       version=version, path=paths.versions / version,
                       fix=None if holds else (lambda v=version, e=event: finish_removal(mc, v, e)))
        elif version not in tombstones:
            mc.problem("missing-tombstone", f"no tombstone for {mc.model}:{version}, removed by gc: its name "
                       "could be reused", version=version, path=paths.tombstones / version,
                       fix=lambda v=version: retention.write_tombstones(paths, [v]))


def finish_removal(mc: ModelCheck, version: str, event: Event) -> None:
    retention.finish(mc.paths, TxnRecord(op="gc", removed=[version], event=event), latest=None, known=False)
    mc.records.pop(version, None)

# ------------------------------------------------------------ digest links

"""``verify``: check a registry against itself; with ``repair``, rebuild what can be rebuilt.

The journal and the stage links are the truth; ``model.json``, ``state.json``, ``registry.json``,
digest links and tombstones are derived from them (and a lost ``version.json`` from its register
event, digest link and artifact, where those agree). Repair rebuilds derived files, restores a
broken stage link from the journal (it never just erases a stage), finishes or discards an
interrupted change, quarantines damaged journal lines, and removes leftovers of writers that are
gone (a staging entry whose liveness lock nobody holds). It never "repairs" a checksum mismatch or
a version that is gone: that would hide damage; those are reported as not repairable, by name.

Each model is checked under its lock (taken without creating anything when not repairing, so a
read-only registry can be verified), so a writer half-way through never looks like damage.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable

from mlserve.errors import CorruptIndexError, IntegrityError, NotFoundError, UsageError
from mlserve.progress import Progress
from mlserve.registry import (
    artifacts, fsio, indexes, journal, locks, recovery, retention, stages, txn, versions,
)
from mlserve.registry.layout import PRODUCTION, Layout, ModelPaths, load_doc, now, parse_doc, save_doc
from mlserve.registry.schema import Event, ModelIndex, Problem, RootIndex, VerifyReport, VersionRecord, VersionState


class Checker:
    """Collects problems; under ``repair`` runs each fix as soon as its problem is found (later checks
    then see the repaired state)."""

    def __init__(self, repair: bool) -> None:
        self.repair = repair
        self.problems: list[Problem] = []

    def problem(self, model: str | None, kind: str, message: str, *, version: str | None = None,
                path: Path | str | None = None, fix: Callable[[], None] | None = None) -> None:
        item = Problem(model=model, version=version, kind=kind, path=str(path) if path else None, message=message,
                       repairable=fix is not None)
        if fix is not None and self.repair:
            fix()
            item.repaired = True
        self.problems.append(item)


def verify_registry(layout: Layout, name: str | None, *, repair: bool, content: bool, progress: Progress,
                    lock_timeout: float, actor: str) -> VerifyReport:
    root = layout.root
    layout.refuse_non_directory()
    if not root.exists():
        raise NotFoundError(f"registry {root} does not exist", hint="check --registry / MLSERVE_REGISTRY")
    check = Checker(repair)
    _check_root(layout, check)
    if name:
        paths = layout.model(name)
        if not paths.dir.is_dir():
            raise NotFoundError(f"model {name!r} not found in registry {root}")
        names = [name]
    elif layout.models_dir.is_dir():
        names = []
        for entry in sorted(os.scandir(layout.models_dir), key=lambda e: e.name):
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            if _is_name(entry.name):
                names.append(entry.name)
            else:
                check.problem(None, "unknown-entry", f"{entry.path} is not a model (its name is not a valid model name)",
                              path=entry.path)
    else:
        names = []
    checked = 0
    for model in names:
        paths = layout.model(model)
        with locks.model_lock(paths.lock, model, lock_timeout, read_only=not repair):
            checked += ModelCheck(paths, check, actor=actor, content=content, progress=progress).run()
    return VerifyReport(registry=root, models_checked=len(names), versions_checked=checked, problems=check.problems,
                        repaired=repair)


def _check_root(layout: Layout, check: Checker) -> None:
    marker, root = layout.marker, layout.root
    if layout.models_dir.exists() and not layout.models_dir.is_dir():
        check.problem(None, "not-a-directory", f"{layout.models_dir} is a file, not the registry's models directory: "
                      "no model can be read", path=layout.models_dir)
    if marker.exists():
        try:
            load_doc(marker, RootIndex, "registry index")
        except CorruptIndexError as exc:
            check.problem(None, "corrupt-index", exc.message, path=marker, fix=lambda: _rebuild_marker(layout))
    elif layout.models_dir.is_dir():
        check.problem(None, "missing-index", f"{marker} is missing", path=marker, fix=lambda: _rebuild_marker(layout))
    elif any(True for _ in os.scandir(root)):
        raise UsageError(f"{root} is not an mlserve registry (no registry.json)")
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(fsio.TMP_PREFIX):
            check.problem(None, "leftover", f"temporary file of an interrupted write: {entry}", path=entry,
                          fix=lambda e=entry: fsio.remove_tree(e))
    _check_staging(layout, check)
    if layout.legacy_trash.is_dir():  # written by mlserve before gc kept its trash under the model lock
        for entry in sorted(layout.legacy_trash.iterdir()):
            check.problem(None, "leftover", f"leftover of an interrupted gc: {entry}", path=entry,
                          fix=lambda e=entry: fsio.remove_tree(e))


def _rebuild_marker(layout: Layout) -> None:
    times = []
    for entry in os.scandir(layout.models_dir) if layout.models_dir.is_dir() else []:
        index = indexes.read_index_or_none(layout.model(entry.name)) if _is_name(entry.name) else None
        if index is not None:
            times.append(index.created_at)
    save_doc(layout.marker, RootIndex(created_at=min(times, key=lambda t: t.timestamp()) if times else now()))


def _is_name(text: str) -> bool:
    try:
        from mlserve.registry.names import check_model_name

        check_model_name(text)
        return True
    except UsageError:
        return False


def _check_staging(layout: Layout, check: Checker) -> None:
    folder = layout.staging
    if not folder.is_dir():
        return
    entries = sorted(folder.iterdir())
    names = {e.name for e in entries}
    for entry in entries:
        if entry.name.endswith(".lock"):
            if entry.name[:-5] in names or locks.entry_is_live(entry):
                continue  # checked with its entry, or a writer between taking the lock and creating the entry
            check.problem(None, "leftover", f"lock file of a finished or dead register: {entry}", path=entry,
                          fix=lambda e=entry: _remove_dead(e, None))
            continue
        lock = folder / f"{entry.name}.lock"
        if locks.entry_is_live(lock):
            continue  # a register in progress (its writer holds the lock, in whatever container or host)
        check.problem(None, "leftover", f"leftover of an interrupted register: {entry}", path=entry,
                      fix=lambda e=entry, lk=lock: _remove_dead(lk, e))


def _remove_dead(lock: Path, entry: Path | None) -> None:
    with locks.claim_dead_entry(lock) as dead:
        if dead and entry is not None:
            fsio.remove_tree(entry)


class ModelCheck:
    """The checks of one model, in an order where each repair leaves a sound base for the next."""

    def __init__(self, paths: ModelPaths, check: Checker, *, actor: str, content: bool, progress: Progress) -> None:
        self.paths, self.check, self.actor, self.content, self.progress = paths, check, actor, content, progress
        self.model = paths.name
        self.records: dict[str, VersionRecord] = {}
        self.events: list[Event] = []
        self.journal_damaged = False
        self.good: dict[str, str] = {}
        self.has_state: dict[str, bool] = {}

    def problem(self, kind: str, message: str, **kw) -> None:
        self.check.problem(self.model, kind, message, **kw)

    def run(self) -> int:
        self.pending_change()
        self.shapes()
        self.leftovers()
        self.journal()
        self.versions()
        self.disk_against_journal()
        self.digest_links()
        self.stage_links()
        self.model_index()
        self.current_link()
        return len(self.records)

    # ------------------------------------------------------------ interrupted changes and leftovers

    def pending_change(self) -> None:
        paths = self.paths
        if not paths.txn.exists():
            return
        record, done = recovery.pending(paths)
        if record is None:
            what = "an unreadable write-ahead record (cut before its commit point)"
        else:
            what = (f"an interrupted change that committed and whose follow-ups are missing ({recovery.describe(record)})"
                    if done else f"an interrupted change that never committed ({recovery.describe(record)})")
        self.problem("interrupted-change", what, path=paths.txn, fix=lambda: recovery.recover(paths))

    def shapes(self) -> None:
        for folder in (self.paths.versions, self.paths.stages, self.paths.digests, self.paths.tombstones):
            if folder.exists() and not folder.is_dir():
                if folder == self.paths.versions:
                    self.problem("not-a-directory", f"{folder} is a file: the model's versions cannot be read",
                                 path=folder)
                else:
                    self.problem("not-a-directory", f"{folder} is a file, not a directory (moved aside by repair, "
                                 "then rebuilt)", path=folder, fix=lambda f=folder: _move_aside(f))

    def leftovers(self) -> None:
        paths = self.paths
        for folder in (paths.dir, paths.stages, paths.digests, paths.tombstones):  # version folders: in versions()
            for entry in _scan(folder):
                if entry.name.startswith(fsio.TMP_PREFIX):
                    self.problem("leftover", f"temporary file of an interrupted write: {entry.path}", path=entry.path,
                                 fix=lambda e=entry.path: fsio.remove_tree(e))
        for entry in _scan(paths.trash):  # under the lock: no gc is deleting it now
            self.problem("leftover", f"leftover of an interrupted gc: {entry.path}", path=entry.path,
                         fix=lambda e=entry.path: fsio.remove_tree(e))

    # ------------------------------------------------------------ the journal

    def journal(self) -> None:
        paths = self.paths
        read = journal.read(paths)
        bad = [d for d in read.damaged if not d.torn]
        done: list[bool] = []

        def quarantine_all() -> None:  # one rewrite for every bad line: their offsets stay valid
            if not done:
                journal.quarantine(paths, bad)
                done.append(True)

        for damaged in read.damaged:
            if damaged.torn:
                self.problem("torn-journal-line", f"{paths.journal}: the last line was cut off by a killed writer",
                             path=paths.journal, fix=lambda: journal.cut_torn_line(paths))
            else:
                self.problem("corrupt-journal", f"{paths.journal} line {damaged.number} (byte {damaged.offset}) is not "
                             f"a valid event ({damaged.reason}); repair moves it to {paths.quarantine.name}",
                             path=paths.journal, fix=quarantine_all)
        self.journal_damaged = bool(bad) or read.quarantined > 0
        self.events = read.events
        pending = txn.pending_event(paths, {e.id for e in self.events})
        if pending is not None:
            self.events = [*self.events, pending]
        for event_id, copies in journal.duplicate_ids(self.events).items():
            if all(c == copies[0] for c in copies):
                self.problem("duplicate-event", f"event {event_id} is journaled {len(copies)} times",
                             path=paths.journal, fix=self._drop_duplicates)
            else:
                self.problem("duplicate-event-id", f"{len(copies)} different events share the id {event_id}",
                             path=paths.journal)
        for gap in journal.chain_breaks(self.events):
            self.problem("broken-stage-history", gap.message(), path=paths.journal)

    def _drop_duplicates(self) -> None:
        journal.drop_duplicate_copies(self.paths)
        self.events = journal.read(self.paths).events

    def _append(self, event: Event) -> None:
        journal.append(self.paths, event)
        self.events.append(event)

    # ------------------------------------------------------------ versions

    def versions(self) -> None:
        paths = self.paths
        registered = journal.register_events(self.events)
        replayed = indexes.replay_states(self.events)
        base = str(paths.versions)
        # one directory read per version finds its leftovers and whether it has a record and a state: this
        # loop runs 10,000 times on a big model, so it works on plain strings
        for name in sorted(_names(base)):
            if name.startswith("."):
                continue
            folder = f"{base}/{name}"
            try:
                inside = os.listdir(folder)
            except NotADirectoryError:
                continue
            for entry in inside:
                if entry.startswith(fsio.TMP_PREFIX):
                    self.problem("leftover", f"temporary file of an interrupted write: {folder}/{entry}",
                                 path=f"{folder}/{entry}", fix=lambda e=f"{folder}/{entry}": fsio.remove_tree(e))
            record = self.record(name, registered.get(name), "version.json" in inside)
            if record is None:
                continue
            self.has_state[record.version] = "state.json" in inside
            self.records[record.version] = record
            if self.content:
                try:
                    artifacts.verify_checksum(paths, record, self.progress)
                except IntegrityError as exc:
                    self.problem("checksum-mismatch", exc.message, version=record.version,
                                 path=versions.artifact_path(paths, record))
            if record.version not in registered:
                self.problem("missing-register-event", f"version {record.version} has no register event in the journal",
                             version=record.version, path=paths.journal,
                             fix=lambda r=record: self._append(_recovered_register(self.model, r, self.actor)))
            else:
                self.state(record.version, replayed.get(record.version))
        seen: dict[int, str] = {}
        for record in sorted(self.records.values(), key=lambda r: r.version):
            if record.seq in seen:
                self.problem("duplicate-sequence", f"versions {seen[record.seq]} and {record.version} share sequence "
                             f"number {record.seq}: their order (and what gc keeps) is ambiguous", version=record.version)
            seen.setdefault(record.seq, record.version)

    def record(self, version: str, event: Event | None, present: bool) -> VersionRecord | None:
        path = f"{self.paths.versions}/{version}/version.json"
        raw = versions.read_small(path) if present else None
        if raw is not None:
            try:
                return parse_doc(raw, path, VersionRecord, "version record")  # type: ignore[arg-type]
            except CorruptIndexError as exc:
                what = exc.message
        else:
            what = f"{self.paths.versions / version} has no version.json"
        rebuilt = self._rebuild_record(version, event)
        if rebuilt.record is None:
            self.problem("incomplete-version", f"{what}; it cannot be rebuilt: {rebuilt.why_not}", version=version,
                         path=path)
            return None
        lost = f" (lost: {', '.join(rebuilt.lost)})" if rebuilt.lost else ""
        self.problem("lost-version-record", f"{what}; repair rebuilds it from its register event, digest link and "
                     f"artifact{lost}", version=version, path=path, fix=lambda: _write_record(Path(path), rebuilt.record))
        if rebuilt.lost and self.check.repair:
            self.problem("unrecoverable", f"{self.model}:{version}: the journal does not hold its "
                         f"{', '.join(rebuilt.lost)}; those are lost", version=version, path=path)
        return rebuilt.record

    def _rebuild_record(self, version: str, event: Event | None) -> versions.Rebuilt:
        paths = self.paths
        sha = event.details.get("sha256") if event is not None else None
        target = artifacts.digest_target(paths, sha) if isinstance(sha, str) else None
        base = paths.versions / version / "artifact"

        def measure(kind: str, name: str) -> tuple[str, int, int] | None:
            try:
                if kind == "file":
                    path = base / name
                    if path.is_symlink() or not path.is_file():
                        return None
                    digest, size = fsio.hash_file(path)
                    return digest, size, 1
                return artifacts.measure_tree(base)
            except (OSError, IntegrityError):
                return None

        top = max([r.seq for r in self.records.values()] + [0])
        return versions.rebuild_record(paths, version, event, target, measure, fallback_seq=top + 1000)

    def state(self, version: str, replayed) -> None:
        paths = self.paths
        path = f"{paths.versions}/{version}/state.json"
        expected = replayed or indexes.EMPTY_STATE
        raw = versions.read_small(path) if self.has_state.get(version) else None
        try:
            current = indexes.EMPTY_STATE if raw is None else parse_doc(raw, path, VersionState,  # type: ignore
                                                                         "version state")
        except CorruptIndexError as exc:
            self.problem("corrupt-state", f"{exc.message}; repair replays it from the journal", version=version,
                         path=path, fix=lambda: indexes.save_state(paths, version, expected))
            return
        if self.journal_damaged:
            return  # the journal lost lines: state.json may know more than the replay; it is kept
        if not indexes.same_state(current, expected):
            self.problem("state-mismatch", f"state.json of {self.model}:{version} disagrees with the journal "
                         f"(tags {current.tags} vs {expected.tags}); repair replays it from the journal",
                         version=version, path=path, fix=lambda: indexes.save_state(paths, version, expected))

    # ------------------------------------------------------------ the journal against the disk

    def disk_against_journal(self) -> None:
        paths = self.paths
        registered = journal.register_events(self.events)
        removed = journal.removed_by_gc(self.events)
        links = stages.all_links(paths)
        for version in sorted(set(registered) - set(self.records) - set(removed)):
            if os.path.lexists(paths.versions / version):
                continue  # reported above (an incomplete version)
            uses = [f"{s} would roll back to it" for s in sorted(journal.holders(self.events))
                    if journal.rollback_stack(self.events, s)[-1:] == [version]]
            uses += [f"it holds {s}" for s, link in links.items() if link.version == version]
            why = f" ({'; '.join(uses)})" if uses else ""
            self.problem("missing-version", f"{self.model}:{version} was registered (journal) but versions/{version} "
                         f"is gone and no gc removed it{why}", version=version, path=paths.versions / version)
        tombstones = set(_names(str(paths.tombstones)))
        for version, event in sorted(removed.items()):
            if version in self.records:
                holds = [s for s, link in links.items() if link.version == version]
                self.problem("gc-incomplete", f"{self.model}:{version} was removed by gc (event {event.id[:12]}) but "
                             "is still on disk" + (f" and holds {', '.join(holds)}" if holds else ""),
                             version=version, path=paths.versions / version,
                             fix=None if holds else (lambda v=version, e=event: self._finish_removal(v, e)))
            elif version not in tombstones:
                self.problem("missing-tombstone", f"no tombstone for {self.model}:{version}, removed by gc: its name "
                             "could be reused", version=version, path=paths.tombstones / version,
                             fix=lambda v=version: retention.write_tombstones(paths, [v]))

    def _finish_removal(self, version: str, event: Event) -> None:
        from mlserve.registry.schema import TxnRecord

        retention.finish(self.paths, TxnRecord(op="gc", removed=[version], event=event), latest=None, known=False)
        self.records.pop(version, None)

    # ------------------------------------------------------------ digest links

    def digest_links(self) -> None:
        paths = self.paths
        base = str(paths.digests)
        links = {name: artifacts.link_version(f"{base}/{name}") for name in _names(base)
                 if not name.startswith(fsio.TMP_PREFIX)}
        by_sha: dict[str, str] = {}
        for record in sorted(self.records.values(), key=lambda r: r.seq):
            by_sha.setdefault(record.sha256, record.version)  # identical content twice: the oldest keeps the link
        for sha, version in by_sha.items():
            target = links.get(sha)
            if target == version:
                continue
            if target is None:
                self.problem("missing-digest-link", f"no digest link for version {version}", version=version,
                             path=paths.digest(sha), fix=lambda h=sha, v=version: artifacts.link_digest(paths, h, v))
            else:
                self.problem("wrong-digest-link", f"the digest link of version {version}'s content points at "
                             f"version {target}, whose sha256 differs", version=version, path=paths.digest(sha),
                             fix=lambda h=sha, v=version: artifacts.link_digest(paths, h, v))
        for name, target in links.items():
            if name in by_sha:
                continue
            if target is not None and target not in self.records and os.path.lexists(paths.versions / target):
                continue  # a witness of an incomplete version (reported above): kept
            self.problem("stale-digest-link", f"digest link {name[:16]}... points at no matching version",
                         path=f"{base}/{name}", fix=lambda p=f"{base}/{name}": fsio.remove_tree(p))

    # ------------------------------------------------------------ stage links

    def stage_links(self) -> None:
        paths = self.paths
        said = journal.holders(self.events)
        index = indexes.read_index_or_none(paths)
        links = stages.all_links(paths)
        self.good = {}
        for stage in sorted(set(links) | {s for s, v in said.items() if v}):
            link = links.get(stage) or stages.Link(stage, "missing")
            if link.kind == "dangling" and link.version in self.records:
                link = stages.Link(stage, "ok", link.version, link.raw)  # its record is reported (and rebuilt) above
            journal_holder = said.get(stage)
            if link.ok:
                self.good[stage] = link.version  # type: ignore[assignment]
                if journal_holder != link.version:
                    self.problem("stage-journal-mismatch", f"stage {stage} holds {link.version} but the journal says "
                                 f"{journal_holder or 'nothing'}: the link was changed outside mlserve; repair journals "
                                 "the link's version", path=paths.journal,
                                 fix=lambda s=stage, old=journal_holder, new=link.version: self._append(journal.new_event(
                                     self.model, "promote", self.actor, version=new, stage=s, from_version=old,
                                     to_version=new, reason="recorded by verify --repair: the link was changed "
                                     "outside mlserve", details={"recovered": True})))
                continue
            candidates = [journal_holder, index.stages.get(stage) if index else None]
            restore = next((v for v in candidates if v and v in self.records), None)
            where = paths.stages / stage
            if link.kind == "missing":
                if restore:
                    self.problem("missing-stage-link", f"stage {stage} has no link; the journal says {journal_holder} "
                                 "holds it", path=where, fix=lambda s=stage, v=restore, lk=link: self._restore(s, v, lk))
                continue
            message = link.problem(paths)
            if restore:
                self.problem(f"{link.kind}-stage-link", f"{message}; repair restores it to version {restore} (journal)",
                             path=where, fix=lambda s=stage, v=restore, lk=link: self._restore(s, v, lk))
            else:
                self.problem(f"{link.kind}-stage-link", f"{message}; the journal names no existing version to restore",
                             path=where)

    def _restore(self, stage: str, version: str, link: stages.Link) -> None:
        if link.kind == "not-a-link":
            _move_aside(self.paths.stages / stage)
        stages.restore_link(self.paths, stage, version)
        self.good[stage] = version

    # ------------------------------------------------------------ model.json

    def model_index(self) -> None:
        paths = self.paths
        good = dict(sorted(self.good.items()))
        try:
            index: ModelIndex | None = load_doc(paths.index, ModelIndex, "model index")
            trouble = None
        except FileNotFoundError:
            index, trouble = None, ("missing-index", f"{paths.index} is missing")
        except CorruptIndexError as exc:
            index, trouble = None, ("corrupt-index", exc.message)
        if trouble is not None:
            rebuilt = indexes.rebuild_index(paths, self.events, self.records, _kept_stages(good, None, self.records))
            self.problem(trouble[0], f"{trouble[1]}; repair rebuilds it from the links, versions and journal",
                         path=paths.index, fix=lambda: indexes.save_index(paths, rebuilt))
            return
        assert index is not None
        wanted = _kept_stages(good, index, self.records)
        if index.stages != wanted:
            def fix_stages(idx: ModelIndex = index) -> None:
                idx.stages = dict(wanted)
                indexes.save_index(paths, idx)

            self.problem("index-mismatch", f"model.json stages {index.stages} disagree with the links {wanted}",
                         path=paths.index, fix=fix_stages)
        if self.records:
            top = max(r.seq for r in self.records.values())
            latest = max(self.records.values(), key=lambda r: r.seq).version
            if index.next_seq <= top or index.latest != latest:
                def fix_seq(idx: ModelIndex = index) -> None:
                    idx.next_seq = max(idx.next_seq, top + 1)
                    idx.latest = latest
                    indexes.save_index(paths, idx)

                self.problem("index-mismatch", "model.json sequence counter or latest version is behind the versions",
                             path=paths.index, fix=fix_seq)

    def current_link(self) -> None:
        current = self.paths.current
        if PRODUCTION in self.good:
            try:
                ok = os.readlink(current) == f"stages/{PRODUCTION}"
            except OSError:
                ok = False
            if not ok:
                self.problem("bad-current-link", f"{current} does not point at stages/{PRODUCTION}", path=current,
                             fix=lambda: _relink_current(current))


def _kept_stages(good: dict[str, str], index: ModelIndex | None, records: dict[str, VersionRecord]) -> dict[str, str]:
    """The stages model.json should hold: every trusted link, and a stage whose link is broken beyond repair
    keeps its entry (the one record that could restore it)."""
    out = dict(good)
    if index is not None:
        for stage, version in index.stages.items():
            if stage not in out and version not in records:
                out[stage] = version
    return dict(sorted(out.items()))


def _recovered_register(model: str, record: VersionRecord, actor: str) -> Event:
    return journal.new_event(model, "register", actor, version=record.version, reason="recovered by verify --repair",
                             details={"sha256": record.sha256, "size": record.size, "source": record.source,
                                      "kind": record.artifact_kind, "artifact_name": record.artifact_name,
                                      "file_count": record.file_count, "seq": record.seq, "metrics": record.metrics,
                                      "meta": record.meta, "recovered": True})


def _write_record(path: Path, record: VersionRecord | None) -> None:
    assert record is not None
    from mlserve.registry.layout import dump_doc

    fsio.atomic_write_bytes(path, dump_doc(record))
    os.chmod(path, 0o444)


def _relink_current(current: Path) -> None:
    if current.exists() and not current.is_symlink():
        _move_aside(current)
    fsio.atomic_symlink(f"stages/{PRODUCTION}", current)


def _move_aside(path: Path) -> None:
    """Keep what is in the way (never delete it): rename it to ``<name>.damaged-<id>``."""
    os.rename(path, path.with_name(f"{path.name}.damaged-{uuid.uuid4().hex[:8]}"))


def _names(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _scan(folder: Path) -> list[os.DirEntry]:
    try:
        return list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []

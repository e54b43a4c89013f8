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
from pathlib import Path
from typing import Callable

from mlserve.errors import CorruptIndexError, NotFoundError, UsageError
from mlserve.progress import Progress
from mlserve.registry import fsio, indexes, journal, locks
from mlserve.registry.checks_journal import (
    check_disk_against_journal, check_journal, check_leftovers, check_pending_change, check_shapes,
)
from mlserve.registry.checks_links import check_current_link, check_digest_links, check_model_index, check_stage_links
from mlserve.registry.checks_versions import check_versions
from mlserve.registry.layout import Layout, ModelPaths, load_doc, now, save_doc
from mlserve.registry.schema import Event, Problem, RootIndex, VerifyReport, VersionRecord


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
    """What the checks of one model share (``checks_journal``, ``checks_versions``, ``checks_links``),
    and their order: each repair leaves a sound base for the next check."""

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
        check_pending_change(self)
        check_shapes(self)
        check_leftovers(self)
        check_journal(self)
        check_versions(self)
        check_disk_against_journal(self)
        check_digest_links(self)
        check_stage_links(self)
        check_model_index(self)
        check_current_link(self)
        return len(self.records)

    def _append(self, event: Event) -> None:
        """Journal an event repair adds, and let the later checks see it."""
        journal.append(self.paths, event)
        self.events.append(event)

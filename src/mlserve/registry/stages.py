"""Stage links and stage transactions.

A stage changes by renaming a fresh symlink ``stages/<stage> -> ../versions/<v>`` over the old one:
the stage never points nowhere and never at two versions, and the rename is the commit point. The
write-ahead record goes first; after the rename the event is stamped, journaled, and ``model.json``,
``current`` and the archive marks follow (finished by the next writer if this one dies).

A link is trusted only when it reads exactly ``../versions/<v>`` and that version is complete: a
link that points outside the model (``/x/versions/2`` only looks like version 2) or at a missing
version is *broken*. Readers skip broken links and warn; ``resolve`` refuses them; a promotion
replaces one (and never answers "already there" because of it); ``--expect-current`` never matches
one; ``verify --repair`` restores it from the journal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from mlserve.errors import CorruptIndexError, ExpectationFailedError
from mlserve.registry import fsio, indexes, journal, txn
from mlserve.registry.layout import PRODUCTION, ModelPaths, now
from mlserve.registry.schema import Event, TxnRecord

REPAIR = "run 'mlserve verify --repair': it restores the link from the journal"


@dataclass(frozen=True)
class Link:
    """What ``stages/<stage>`` is: ``ok`` (a trusted link to ``version``), ``missing``, ``foreign``
    (points outside the model), ``dangling`` (at a missing or incomplete version) or ``not-a-link``."""

    stage: str
    kind: str
    version: str | None = None
    raw: str | None = None

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    @property
    def broken(self) -> bool:
        return self.kind in {"foreign", "dangling", "not-a-link"}

    def problem(self, paths: ModelPaths) -> str:
        where = paths.stages / self.stage
        if self.kind == "foreign":
            return f"stage link {where} points outside the model: {self.raw}"
        if self.kind == "dangling":
            return f"stage link {where} points at version {self.version!r}, which is missing or incomplete"
        return f"{where} is not a symlink"


def read_link(paths: ModelPaths, stage: str) -> Link:
    return _classify(paths, stage, str(paths.stage(stage)))


def _classify(paths: ModelPaths, stage: str, full: str) -> Link:
    try:
        raw = os.readlink(full)
    except FileNotFoundError:
        return Link(stage, "missing")
    except OSError:
        return Link(stage, "not-a-link")
    version = raw.rsplit("/", 1)[-1]
    if raw != f"../versions/{version}" or not version or version.startswith("."):
        return Link(stage, "foreign", None, raw)
    if not os.path.isfile(f"{paths.versions}/{version}/version.json"):
        return Link(stage, "dangling", version, raw)
    return Link(stage, "ok", version, raw)


def all_links(paths: ModelPaths) -> dict[str, Link]:
    """Every entry under ``stages/`` (temporary files of a swap in progress left out)."""
    try:
        entries = list(os.scandir(paths.stages))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    return {e.name: _classify(paths, e.name, e.path) for e in entries if not e.name.startswith(fsio.TMP_PREFIX)}


def valid_links(paths: ModelPaths) -> tuple[dict[str, str], list[str]]:
    """stage -> version for every trusted link, and a warning for each broken one."""
    good: dict[str, str] = {}
    warnings = []
    for stage, link in sorted(all_links(paths).items()):
        if link.ok:
            good[stage] = link.version  # type: ignore[assignment]
        elif link.broken:
            warnings.append(f"{paths.name}@{stage} is not shown: {link.problem(paths)} ({REPAIR})")
    return good, warnings


def strict_holder(paths: ModelPaths, stage: str) -> str | None:
    """The version a reader may use for ``stage``; refuses a broken link."""
    link = read_link(paths, stage)
    if link.kind == "missing":
        return None
    if not link.ok:
        raise CorruptIndexError(link.problem(paths), hint=REPAIR)
    return link.version


def check_expected(paths: ModelPaths, link: Link, expect_current: str) -> None:
    """The compare-and-swap precondition: the stage holds exactly that version ("none": empty)."""
    expected = None if expect_current.lower() in {"none", ""} else expect_current
    if link.broken:
        raise ExpectationFailedError(
            f"{paths.name}@{link.stage} cannot be compared with {expected or 'nothing'}: {link.problem(paths)}",
            hint=f"{REPAIR}, or promote without --expect-current to replace it",
            details={"current": None, "expected": expected, "link": link.raw})
    current = link.version if link.ok else None
    if current != expected:
        raise ExpectationFailedError(f"{paths.name}@{link.stage} holds {current or 'nothing'}, not {expected or 'nothing'} "
                                     "as expected", details={"current": current, "expected": expected})


def from_version(paths: ModelPaths, link: Link) -> str | None:
    """What the change starts from: the trusted link, or for a broken one the journal's holder (so the
    journal's chain stays unbroken)."""
    if link.ok:
        return link.version
    if link.broken:
        return journal.holders(journal.read(paths).events).get(link.stage)
    return None


# ---------------------------------------------------------------- the transaction


def swap(paths: ModelPaths, stage: str, version: str) -> None:
    """The commit point of a stage change: rename a fresh symlink over ``stages/<stage>``."""
    paths.stages.mkdir(exist_ok=True)
    link = paths.stage(stage)
    tmp = fsio.tmp_name(link)
    try:
        os.symlink(f"../versions/{version}", tmp)
    except OSError as exc:
        if fsio.is_full(exc):
            raise fsio.no_space(exc, link, len(version) + 12) from exc
        raise
    try:
        os.replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def set_stage(paths: ModelPaths, stage: str, version: str, *, previous: str | None, kind: str, actor: str,
              reason: str | None, details: dict[str, Any] | None = None) -> tuple[Event, list[str]]:
    """Point ``stage`` at ``version`` (the caller holds the model lock and has checked everything).

    Returns the journaled event and warnings: once the link is swapped the change is committed, and
    a follow-up that fails (a full disk) is a warning, finished by the next writer, never an error.
    """
    event = journal.new_event(paths.name, kind, actor, version=version, stage=stage, from_version=previous,
                              to_version=version, reason=reason, details=details or {})
    record = TxnRecord(op="stage", stage=stage, from_version=previous, to_version=version, event=event)
    txn.write(paths, record)
    try:
        swap(paths, stage, version)
    except BaseException:
        if not txn.committed(paths, record):
            txn.remove(paths)
        raise
    event.at = now()  # stamped at the commit point: what `history --at` answers matches what readers saw
    warnings = txn.follow_up(f"{paths.name}@{stage} now holds {version}", paths, lambda: finish(paths, record, event))
    return event, warnings


def finish(paths: ModelPaths, record: TxnRecord, event: Event) -> None:
    """Everything after the swap, idempotent: journal, ``current``, ``model.json``, archive marks."""
    stage, new, old = record.stage or "", record.to_version, record.from_version
    fsio.fsync_dir(paths.stages)
    journal.append_once(paths, event)
    if stage == PRODUCTION and not _current_ok(paths):
        fsio.atomic_symlink(f"stages/{PRODUCTION}", paths.current)
    try:
        index = indexes.read_index(paths)
    except CorruptIndexError:
        index = None  # derived: verify --repair rebuilds it from the links and the journal
    if index is not None and index.stages.get(stage) != new:
        index.stages[stage] = new  # type: ignore[assignment]
        indexes.save_index(paths, index)
    held = set(valid_links(paths)[0].values())
    if old and old != new and old not in held and (paths.versions / old / "version.json").is_file():
        indexes.mark_archived(paths, old, at=event.at, stage=stage, replaced_by=new)
    if new:
        indexes.unmark_archived(paths, new)
    txn.remove(paths)
    fsio.fsync_dir(paths.dir)


def _current_ok(paths: ModelPaths) -> bool:
    try:
        return os.readlink(paths.current) == f"stages/{PRODUCTION}"
    except OSError:
        return False


def restore_link(paths: ModelPaths, stage: str, version: str) -> None:
    """Repair: put back a broken stage link (the damaged one is replaced, never just erased)."""
    paths.stages.mkdir(exist_ok=True)
    fsio.atomic_symlink(f"../versions/{version}", paths.stage(stage))

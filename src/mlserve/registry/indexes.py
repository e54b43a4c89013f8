"""The derived indexes: ``model.json``, ``versions/<v>/state.json``, ``registry.json``.

The journal and the stage links are the truth; these files make reads fast and are rebuilt from
the truth by ``verify --repair`` (:func:`replay_states`, :func:`rebuild_index`). Every change to a
version's state is one journaled event whose details say exactly what changed, so replaying the
journal gives back the state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from mlserve.errors import CorruptIndexError, NotFoundError
from mlserve.registry import fsio, journal, txn
from mlserve.registry.journal import STAGE_KINDS
from mlserve.registry.layout import ModelPaths, dump_doc, load_doc, now, save_doc
from mlserve.registry.schema import ArchiveMark, Event, ModelIndex, TxnRecord, VersionRecord, VersionState

STATE_KINDS = frozenset({"tag", "untag", "set-meta", "record-metrics"})
EMPTY_STATE = VersionState()


# ---------------------------------------------------------------- model.json


def read_index(paths: ModelPaths) -> ModelIndex:
    try:
        return load_doc(paths.index, ModelIndex, "model index")
    except FileNotFoundError:
        raise NotFoundError(f"model {paths.name!r} not found in registry {paths.dir.parent.parent}") from None


def read_index_or_none(paths: ModelPaths) -> ModelIndex | None:
    """For follow-ups: a missing or damaged index is left to repair, never an error of a committed change."""
    try:
        return load_doc(paths.index, ModelIndex, "model index")
    except (FileNotFoundError, CorruptIndexError):
        return None


def save_index(paths: ModelPaths, index: ModelIndex) -> None:
    save_doc(paths.index, index)


def rebuild_index(paths: ModelPaths, events: list[Event], records: dict[str, VersionRecord],
                  stages: dict[str, str], old: ModelIndex | None = None) -> ModelIndex:
    """``model.json`` from what remains: stages from the links, counter and latest from the versions and
    the journal's register events, creation time from the oldest evidence."""
    seqs = [r.seq for r in records.values()]
    for event in events:
        if event.kind == "register" and isinstance(event.details.get("seq"), int):
            seqs.append(event.details["seq"])
    times = [e.at for e in events[:1]] + [r.registered_at for r in records.values()]
    created = old.created_at if old is not None else (min(times, key=_sortable) if times else now())
    latest = max(records.values(), key=lambda r: r.seq).version if records else None
    next_seq = max(max(seqs, default=0) + 1, old.next_seq if old is not None else 1)
    return ModelIndex(name=paths.name, created_at=created, stages=dict(stages), next_seq=next_seq, latest=latest)


def _sortable(at: datetime) -> float:
    return at.timestamp()


# ---------------------------------------------------------------- state.json


def state_path(paths: ModelPaths, version: str):
    return paths.version(version) / "state.json"


def read_state(paths: ModelPaths, version: str) -> VersionState:
    try:
        return load_doc(state_path(paths, version), VersionState, "version state")
    except FileNotFoundError:
        return VersionState()


def state_bytes(state: VersionState) -> bytes:
    return dump_doc(state)


def write_state_bytes(paths: ModelPaths, version: str, data: bytes) -> None:
    fsio.atomic_write_bytes(state_path(paths, version), data)


def save_state(paths: ModelPaths, version: str, state: VersionState) -> None:
    write_state_bytes(paths, version, state_bytes(state))


def apply_change(state: VersionState, kind: str, details: dict[str, Any]) -> list[str]:
    """Apply one state event's details to ``state``; returns the tags it tried to remove but were absent."""
    state.metrics.update(details.get("metrics") or {})
    meta = details.get("meta") or {}
    state.meta.update(meta)
    hidden = [k for k in state.unset_meta if k not in meta]
    for key in details.get("unset") or []:
        state.meta.pop(key, None)
        if key not in hidden:
            hidden.append(key)
    state.unset_meta = sorted(hidden)
    tags = list(details.get("tags") or [])
    if kind == "untag":
        missing = [t for t in tags if t not in state.tags]
        state.tags = [t for t in state.tags if t not in tags]
        return missing
    for tag in tags:
        if tag not in state.tags:
            state.tags.append(tag)
    return []


def mark_archived(paths: ModelPaths, version: str, *, at: datetime, stage: str, replaced_by: str | None) -> None:
    state = _readable_state(paths, version)
    if state is not None:
        state.archived = ArchiveMark(at=at, stage=stage, replaced_by=replaced_by)
        save_state(paths, version, state)


def unmark_archived(paths: ModelPaths, version: str) -> None:
    state = _readable_state(paths, version)
    if state is not None and state.archived is not None:
        state.archived = None
        save_state(paths, version, state)


def _readable_state(paths: ModelPaths, version: str) -> VersionState | None:
    """For follow-ups (archive marks): a damaged state is left alone for repair, which replays it whole."""
    try:
        return read_state(paths, version)
    except CorruptIndexError:
        return None


def replay_states(events: Iterable[Event]) -> dict[str, VersionState]:
    """Every version's state as the journal tells it: tags, metadata, metrics and archive marks."""
    states: dict[str, VersionState] = {}
    held: dict[str, str | None] = {}
    for event in events:
        if event.kind in STATE_KINDS and event.version:
            apply_change(states.setdefault(event.version, VersionState()), event.kind, event.details)
        elif event.kind in STAGE_KINDS and event.stage:
            held[event.stage] = event.to_version
            old, new = event.from_version, event.to_version
            if old and old != new and old not in held.values():
                states.setdefault(old, VersionState()).archived = ArchiveMark(at=event.at, stage=event.stage,
                                                                            replaced_by=new)
            if new:
                states.setdefault(new, VersionState()).archived = None
    return states


def effective_meta(record: Any, state: VersionState) -> dict[str, Any]:
    """A version's metadata: the registration's (less the keys unset since) overlaid by the later changes."""
    return {**{k: v for k, v in record.meta.items() if k not in state.unset_meta}, **state.meta}


def state_differences(a: VersionState, b: VersionState) -> list[str]:
    """Where two states disagree on what the journal records, as ``field A vs B`` (empty: they agree)."""
    pairs = [("tags", sorted(a.tags), sorted(b.tags)), ("meta", a.meta, b.meta), ("metrics", a.metrics, b.metrics),
             ("unset meta", sorted(a.unset_meta), sorted(b.unset_meta)),
             ("archived", a.archived is not None, b.archived is not None)]
    return [f"{what} {x} vs {y}" for what, x, y in pairs if x != y]


def same_state(a: VersionState, b: VersionState) -> bool:
    """Whether two states agree on what the journal records (tags, metadata, metrics, archived or not)."""
    return not state_differences(a, b)


# ---------------------------------------------------------------- the state transaction


def change_state(paths: ModelPaths, version: str, kind: str, actor: str, reason: str | None,
                 details: dict[str, Any]) -> tuple[Event, list[str]]:
    """Apply one journaled change to a version's state (the caller holds the model lock).

    The write-ahead record names the new content; the rename of ``state.json`` is the commit point;
    the event is then stamped and journaled. Returns the event and the warnings of follow-ups that
    failed after the commit (the next writer finishes them).
    """
    state = read_state(paths, version)
    missing = apply_change(state, kind, details)
    if missing:
        raise NotFoundError(f"{paths.name}:{version} has no tag {', '.join(missing)}")
    data = state_bytes(state)
    event = journal.new_event(paths.name, kind, actor, version=version, reason=reason, details=details)
    record = TxnRecord(op="state", version=version, state_sha256=txn.state_digest(data), event=event)
    txn.write(paths, record)
    try:
        write_state_bytes(paths, version, data)
    except BaseException:
        if not txn.committed(paths, record):
            txn.remove(paths)
        raise
    event.at = now()
    warnings = txn.follow_up(f"{paths.name}:{version} is changed", paths, lambda: finish_state(paths, event))
    return event, warnings


def finish_state(paths: ModelPaths, event: Event) -> None:
    journal.append_once(paths, event)
    txn.remove(paths)

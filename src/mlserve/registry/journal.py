"""The journal: one append-only file of events per model, the truth of what happened and when.

Every change appends exactly one event (the write-ahead record in ``.txn.json`` carries it until
then, and :func:`append_once` skips an event whose id is already there, so recovery never journals
a change twice). Reading tolerates damage: a line that is not a valid event is skipped and
reported with its line number and byte offset; ``verify --repair`` moves such lines into
``journal.quarantine.jsonl`` with their offsets, and readers keep saying that the history is
incomplete.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from mlserve.registry import fsio
from mlserve.registry.docs import DocError
from mlserve.registry.layout import ModelPaths, now
from mlserve.registry.schema import Event

STAGE_KINDS = frozenset({"promote", "rollback"})
TAIL = 262144
"""How far back :func:`contains` looks: the event of a pending change is always among the last lines."""


def new_event(model: str, kind: str, actor: str, **fields: Any) -> Event:
    return Event(id=uuid.uuid4().hex, at=now(), kind=kind, model=model, actor=actor, **fields)


def append(paths: ModelPaths, event: Event) -> None:
    fsio.append_line(paths.journal, event.model_dump_json())


def contains(paths: ModelPaths, event_id: str) -> bool:
    try:
        with open(paths.journal, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, size - TAIL))
            return f'"id":"{event_id}"'.encode() in fh.read()
    except FileNotFoundError:
        return False


def append_once(paths: ModelPaths, event: Event) -> bool:
    """Append ``event`` unless an event with its id is already journaled; returns whether it appended."""
    if contains(paths, event.id):
        return False
    append(paths, event)
    return True


@dataclass
class DamagedLine:
    number: int
    offset: int
    reason: str
    raw: bytes
    torn: bool = False
    """The last line without its newline: a writer killed mid-append (not damage; the next append cuts it)."""


@dataclass
class JournalRead:
    events: list[Event] = field(default_factory=list)
    damaged: list[DamagedLine] = field(default_factory=list)
    quarantined: int = 0

    def warnings(self, paths: ModelPaths) -> list[str]:
        out = [f"journal {paths.journal} line {d.number} (byte {d.offset}) is not a valid event ({d.reason}): "
               "skipped; 'mlserve verify --repair' quarantines it" for d in self.damaged if not d.torn]
        if self.quarantined:
            out.append(f"{self.quarantined} damaged journal line(s) of {paths.name} were quarantined in "
                       f"{paths.quarantine}: this history may be incomplete")
        return out


def read(paths: ModelPaths) -> JournalRead:
    result = JournalRead()
    try:
        raw = paths.journal.read_bytes()
    except FileNotFoundError:
        raw = b""
    lines = raw.split(b"\n")
    docs = _parse_all(lines)
    offset = 0
    validate = Event.model_validate
    for number, line in enumerate(lines, 1):
        start = offset
        offset += len(line) + 1
        if not line.strip():
            continue
        try:
            result.events.append(validate(next(docs) if docs is not None else json.loads(line)))
        except (ValueError, DocError) as exc:
            torn = offset > len(raw)  # no newline after it: the last line, cut by a killed writer
            reason = exc.msg if isinstance(exc, DocError) and exc.loc == "(document)" else (
                f"{exc.loc}: {exc.msg}" if isinstance(exc, DocError) else "not JSON")
            result.damaged.append(DamagedLine(number, start, reason, line, torn=torn))
    result.quarantined = count_quarantined(paths) if paths.quarantine.exists() else 0
    return result


def _parse_all(lines: list[bytes]):
    """Every non-blank line parsed by one JSON call (a journal of 10,000 events is read by each verify and
    history); None when any line is not JSON on its own, and then each line is parsed alone."""
    nonblank = [line for line in lines if line.strip()]
    try:
        parsed = json.loads(b"[" + b",".join(nonblank) + b"]")
    except ValueError:
        return None
    if len(parsed) != len(nonblank):  # a damaged line held two values, or a bracket
        return None
    return iter(parsed)


def count_quarantined(paths: ModelPaths) -> int:
    try:
        with open(paths.quarantine, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    except FileNotFoundError:
        return 0


def quarantine(paths: ModelPaths, damaged: list[DamagedLine]) -> None:
    """Move damaged lines (not a torn last line) to the quarantine file, then rewrite the journal without them.

    The quarantine file is appended (durably) first, so a crash in between leaves the line in both
    places, never in neither. Caller holds the model lock.
    """
    bad = [d for d in damaged if not d.torn]
    if not bad:
        return
    for d in bad:
        fsio.append_line(paths.quarantine, json.dumps({
            "journal": paths.journal.name, "line": d.number, "offset": d.offset, "reason": d.reason,
            "quarantined_at": now().isoformat(), "raw": d.raw.decode("utf-8", "backslashreplace")}))
    raw = paths.journal.read_bytes()
    drop = {d.offset for d in bad}
    kept = []
    offset = 0
    for line in raw.split(b"\n"):
        if offset not in drop:
            kept.append(line)
        offset += len(line) + 1
    fsio.atomic_write_bytes(paths.journal, b"\n".join(kept))


def cut_torn_line(paths: ModelPaths) -> None:
    fd = os.open(paths.journal, os.O_RDWR)
    try:
        fsio.truncate_to_last_newline(fd, os.fstat(fd).st_size)
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- what the events say


def stage_events(events: Iterable[Event], stage: str | None = None) -> list[Event]:
    return [e for e in events if e.kind in STAGE_KINDS and (stage is None or e.stage == stage)]


def holders(events: Iterable[Event]) -> dict[str, str | None]:
    """stage -> the version the journal says holds it now."""
    out: dict[str, str | None] = {}
    for event in stage_events(events):
        out[event.stage] = event.to_version  # type: ignore[index]
    return out


def holder_at(events: Iterable[Event], stage: str, at: Any) -> str | None:
    holder = None
    for event in events:
        if event.at > at:
            break
        if event.stage == stage and event.kind in STAGE_KINDS:
            holder = event.to_version
    return holder


def rollback_stack(events: Iterable[Event], stage: str) -> list[str]:
    """The versions a plain rollback of ``stage`` would walk back through, the next one last."""
    stack: list[str] = []
    for event in stage_events(events, stage):
        if event.kind == "rollback" and event.details.get("mode") == "previous":
            if stack and stack[-1] == event.to_version:
                stack.pop()
        elif event.from_version is not None:
            stack.append(event.from_version)
    return stack


def rollback_target(events: Iterable[Event], stage: str, exists: Callable[[str], bool]) -> str | None:
    existing = [v for v in rollback_stack(events, stage) if exists(v)]
    return existing[-1] if existing else None


def previous_holder(events: Iterable[Event], stage: str) -> str | None:
    previous = None
    for event in stage_events(events, stage):
        if event.from_version:
            previous = event.from_version
    return previous


def removed_by_gc(events: Iterable[Event]) -> dict[str, Event]:
    out: dict[str, Event] = {}
    for event in events:
        if event.kind == "gc":
            for version in event.details.get("removed", []):
                out[str(version)] = event
    return out


def register_events(events: Iterable[Event]) -> dict[str, Event]:
    return {e.version: e for e in events if e.kind == "register" and e.version}


@dataclass
class ChainBreak:
    stage: str
    before: Event | None
    after: Event

    def message(self) -> str:
        held = self.before.to_version if self.before else None
        return (f"stage {self.stage}: event {self.after.id[:12]} ({self.after.kind} at {self.after.at.isoformat()}) "
                f"starts from {self.after.from_version or 'nothing'}, but the journal had it holding {held or 'nothing'}")


def chain_breaks(events: Iterable[Event]) -> list[ChainBreak]:
    """Stage events whose ``from_version`` is not the previous event's ``to_version`` (per stage)."""
    last: dict[str, Event] = {}
    out = []
    for event in stage_events(events):
        before = last.get(event.stage)  # type: ignore[arg-type]
        held = before.to_version if before else None
        if event.from_version != held:
            out.append(ChainBreak(event.stage, before, event))  # type: ignore[arg-type]
        last[event.stage] = event  # type: ignore[index]
    return out


def duplicate_ids(events: Iterable[Event]) -> dict[str, list[Event]]:
    seen: dict[str, list[Event]] = {}
    for event in events:
        seen.setdefault(event.id, []).append(event)
    return {i: evs for i, evs in seen.items() if len(evs) > 1}


def drop_duplicate_copies(paths: ModelPaths) -> int:
    """Remove the later copies of events journaled twice with identical content; returns how many."""
    raw = paths.journal.read_bytes()
    seen: set[bytes] = set()
    kept = []
    for line in raw.split(b"\n"):
        key = line.strip()
        if key and key in seen:
            continue
        seen.add(key)
        kept.append(line)
    dropped = len(raw.split(b"\n")) - len(kept)
    if dropped:
        fsio.atomic_write_bytes(paths.journal, b"\n".join(kept))
    return dropped

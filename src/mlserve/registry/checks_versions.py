"""verify's checks of a model's versions: records (rebuilt from their witnesses when lost), checksums,
register events, and each version's state against the journal's replay."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from mlserve.errors import CorruptIndexError, IntegrityError
from mlserve.registry import artifacts, fsio, indexes, journal, versions
from mlserve.registry.layout import dump_doc, parse_doc
from mlserve.registry.schema import Event, VersionRecord, VersionState

if TYPE_CHECKING:
    from mlserve.registry.verify import ModelCheck


def check_versions(mc: ModelCheck) -> None:
    paths = mc.paths
    registered = journal.register_events(mc.events)
    replayed = indexes.replay_states(mc.events)
    base = str(paths.versions)
    # one directory read per version finds its leftovers and whether it has a record and a state: this
    # loop runs 10,000 times on a big model, so it works on plain strings
    for name in sorted(fsio.list_names(base)):
        if name.startswith("."):
            continue
        folder = f"{base}/{name}"
        try:
            inside = os.listdir(folder)
        except NotADirectoryError:
            continue
        for entry in inside:
            if entry.startswith(fsio.TMP_PREFIX):
                mc.problem("leftover", f"temporary file of an interrupted write: {folder}/{entry}",
                           path=f"{folder}/{entry}", fix=lambda e=f"{folder}/{entry}": fsio.remove_tree(e))
        record = check_record(mc, name, registered.get(name), "version.json" in inside)
        if record is None:
            continue
        mc.has_state[record.version] = "state.json" in inside
        mc.records[record.version] = record
        if mc.content:
            try:
                artifacts.verify_checksum(paths, record, mc.progress)
            except IntegrityError as exc:
                mc.problem("checksum-mismatch", exc.message, version=record.version,
                           path=versions.artifact_path(paths, record))
        if record.version not in registered:
            mc.problem("missing-register-event", f"version {record.version} has no register event in the journal",
                       version=record.version, path=paths.journal,
                       fix=lambda r=record: mc._append(_recovered_register(mc.model, r, mc.actor)))
        else:
            check_state(mc, record.version, replayed.get(record.version))
    seen: dict[int, str] = {}
    for record in sorted(mc.records.values(), key=lambda r: r.version):
        if record.seq in seen:
            mc.problem("duplicate-sequence", f"versions {seen[record.seq]} and {record.version} share sequence "
                       f"number {record.seq}: their order (and what gc keeps) is ambiguous", version=record.version)
        seen.setdefault(record.seq, record.version)


def check_record(mc: ModelCheck, version: str, event: Event | None, present: bool) -> VersionRecord | None:
    path = f"{mc.paths.versions}/{version}/version.json"
    raw = versions.read_small(path) if present else None
    if raw is not None:
        try:
            return parse_doc(raw, path, VersionRecord, "version record")  # type: ignore[arg-type]
        except CorruptIndexError as exc:
            what = exc.message
    else:
        what = f"{mc.paths.versions / version} has no version.json"
    rebuilt = rebuild_record(mc, version, event)
    if rebuilt.record is None:
        mc.problem("incomplete-version", f"{what}; it cannot be rebuilt: {rebuilt.why_not}", version=version,
                   path=path)
        return None
    lost = f" (lost: {', '.join(rebuilt.lost)})" if rebuilt.lost else ""
    mc.problem("lost-version-record", f"{what}; repair rebuilds it from its register event, digest link and "
               f"artifact{lost}", version=version, path=path, fix=lambda: _write_record(Path(path), rebuilt.record))
    if rebuilt.lost and mc.check.repair:
        mc.problem("unrecoverable", f"{mc.model}:{version}: the journal does not hold its "
                   f"{', '.join(rebuilt.lost)}; those are lost", version=version, path=path)
    return rebuilt.record


def rebuild_record(mc: ModelCheck, version: str, event: Event | None) -> versions.Rebuilt:
    paths = mc.paths
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

    top = max([r.seq for r in mc.records.values()] + [0])
    return versions.rebuild_record(paths, version, event, target, measure, fallback_seq=top + 1000)


def check_state(mc: ModelCheck, version: str, replayed) -> None:
    paths = mc.paths
    path = f"{paths.versions}/{version}/state.json"
    expected = replayed or indexes.EMPTY_STATE
    raw = versions.read_small(path) if mc.has_state.get(version) else None
    try:
        current = indexes.EMPTY_STATE if raw is None else parse_doc(raw, path, VersionState,  # type: ignore
                                                                     "version state")
    except CorruptIndexError as exc:
        mc.problem("corrupt-state", f"{exc.message}; repair replays it from the journal", version=version,
                   path=path, fix=lambda: indexes.save_state(paths, version, expected))
        return
    if mc.journal_damaged:
        return  # the journal lost lines: state.json may know more than the replay; it is kept
    if not indexes.same_state(current, expected):
        differ = indexes.state_differences(current, expected)
        mc.problem("state-mismatch", f"state.json of {mc.model}:{version} disagrees with the journal "
                   f"({'; '.join(differ)}); repair replays it from the journal",
                   version=version, path=path, fix=lambda: indexes.save_state(paths, version, expected))

# ------------------------------------------------------------ the journal against the disk


def _recovered_register(model: str, record: VersionRecord, actor: str) -> Event:
    return journal.new_event(model, "register", actor, version=record.version, reason="recovered by verify --repair",
                             details={"sha256": record.sha256, "size": record.size, "source": record.source,
                                      "kind": record.artifact_kind, "artifact_name": record.artifact_name,
                                      "file_count": record.file_count, "seq": record.seq, "metrics": record.metrics,
                                      "meta": record.meta, "recovered": True})


def _write_record(path: Path, record: VersionRecord | None) -> None:
    assert record is not None
    fsio.atomic_write_bytes(path, dump_doc(record))
    os.chmod(path, 0o444)

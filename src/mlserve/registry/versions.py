"""Version records: reading them (one, or all of a model fast), numbering, and rebuilding a lost one.

``versions/<v>/version.json`` is written once, before the version's commit point, then made
read-only. When it is lost, :func:`rebuild_record` puts it back from the three other witnesses of
the registration: the journal's register event, the digest link and the artifact itself (where
they agree).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mlserve.errors import NotFoundError
from mlserve.registry.indexes import EMPTY_STATE
from mlserve.registry.layout import ModelPaths, load_doc, parse_doc
from mlserve.registry.schema import Event, VersionRecord, VersionRow, VersionState


def record_path(paths: ModelPaths, version: str) -> Path:
    return paths.version(version) / "version.json"


def exists(paths: ModelPaths, version: str) -> bool:
    return os.path.isfile(f"{paths.versions}/{version}/version.json")


def read_record(paths: ModelPaths, version: str) -> VersionRecord:
    try:
        return load_doc(record_path(paths, version), VersionRecord, "version record")
    except FileNotFoundError:
        if not paths.exists():
            raise NotFoundError(f"model {paths.name!r} not found in registry {paths.dir.parent.parent}") from None
        raise NotFoundError(f"version {version!r} of model {paths.name!r} not found",
                            hint=f"'mlserve list {paths.name}' shows its versions") from None


def artifact_path(paths: ModelPaths, record: VersionRecord) -> Path:
    base = paths.versions / record.version / "artifact"
    return base / record.artifact_name if record.artifact_kind == "file" else base


def status(stages: list[str], state: VersionState) -> str:
    if stages:
        return "production" if "production" in stages else "staged"
    return "archived" if state.archived else "registered"


def next_number(*folders: Path) -> int:
    """One more than the highest numeric name in any of ``folders`` (versions and tombstones)."""
    highest = 0
    for folder in folders:
        try:
            names = os.listdir(folder)  # plain names, no per-entry objects: 10,000 of them in a few ms
        except (FileNotFoundError, NotADirectoryError):
            continue
        numbers = [int(name) for name in names if name.isdigit()]
        if numbers:
            highest = max(highest, max(numbers))
    return highest + 1


def version_names(paths: ModelPaths) -> list[str]:
    try:
        return [e.name for e in os.scandir(paths.versions) if not e.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []


# ---------------------------------------------------------------- listing


_ROW_FIELDS = ("version", "seq", "registered_at", "sha256", "size")


def list_rows(paths: ModelPaths, stages_of: dict[str, list[str]]) -> list[VersionRow]:
    """Every complete version as a row, in registration order.

    It runs once per version (10,000 in one `list`), so it reads with plain system calls and JSON,
    checks just the fields a row needs, and builds rows without re-checking them; anything unexpected
    goes through the full, strict load, which raises with the file and the field.
    """
    import json
    from datetime import datetime

    rows = []
    base = str(paths.versions)
    try:
        names = os.listdir(base)
    except (FileNotFoundError, NotADirectoryError):
        return []
    parse_time = datetime.fromisoformat
    loads = json.loads
    make_row = VersionRow.trusted
    for name in names:
        if name[0] == ".":
            continue
        record_file = f"{base}/{name}/version.json"
        raw = read_small(record_file)
        if raw is None:
            continue  # not a complete version (verify reports it)
        try:
            doc = loads(raw)
            version, seq, sha, size = doc["version"], doc["seq"], doc["sha256"], doc["size"]
            if not (type(version) is str and type(seq) is int and type(sha) is str and type(size) is int
                    and doc.get("schema_version", 1) == 1):
                raise ValueError
            registered_at = parse_time(doc["registered_at"])
        except (ValueError, KeyError, TypeError):
            record = parse_doc(raw, Path(record_file), VersionRecord, "version record")  # raises with details
            version, seq, sha, size, registered_at = (record.version, record.seq, record.sha256, record.size,
                                                      record.registered_at)
        state_file = f"{base}/{name}/state.json"
        state_raw = read_small(state_file)
        state = EMPTY_STATE if state_raw is None else parse_doc(state_raw, Path(state_file), VersionState,
                                                                "version state")
        stages = sorted(stages_of[version]) if version in stages_of else []
        rows.append(make_row(version=version, seq=seq, registered_at=registered_at, sha256=sha, size=size,
                             stages=stages, status=status(stages, state), tags=list(state.tags)))
    rows.sort(key=lambda r: r.seq)
    return rows


def read_small(path: str) -> bytes | None:
    """A small file's bytes, or None when it is missing."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- rebuilding a lost record


@dataclass
class Rebuilt:
    record: VersionRecord | None
    lost: list[str] = field(default_factory=list)
    why_not: str | None = None


def rebuild_record(paths: ModelPaths, version: str, event: Event | None, digest_target: str | None,
                   artifact_digest, fallback_seq: int) -> Rebuilt:
    """``version.json`` from the register event, the digest link and the artifact, where they agree.

    ``artifact_digest(kind, name)`` returns (sha256, size, file count) of the artifact read as that
    kind, or None when it cannot be read so.
    """
    if event is None:
        return Rebuilt(None, why_not=f"{paths.name}:{version} has no register event in the journal")
    details = event.details
    sha = details.get("sha256")
    if not isinstance(sha, str):
        return Rebuilt(None, why_not=f"the register event of {paths.name}:{version} records no sha256")
    if digest_target is not None and digest_target != version:
        return Rebuilt(None, why_not=f"the digest link of {paths.name}:{version}'s sha256 points at version "
                                     f"{digest_target}: the witnesses disagree")
    kinds = [(details["kind"], details.get("artifact_name", ""))] if details.get("kind") in {"file", "directory"} \
        else _guess_kinds(paths, version)
    for kind, name in kinds:
        measured = artifact_digest(kind, name)
        if measured is not None and measured[0] == sha:
            _, size, count = measured
            break
    else:
        return Rebuilt(None, why_not=f"the artifact of {paths.name}:{version} does not match the sha256 of its "
                                     "register event (damaged or replaced)")
    lost = []
    seq = details.get("seq")
    if not isinstance(seq, int):
        lost.append(f"sequence number (given {fallback_seq}, after every other version)")
        seq = fallback_seq
    metrics, meta = details.get("metrics"), details.get("meta")
    if not isinstance(metrics, dict) or not isinstance(meta, dict):
        lost.append("registration metrics and metadata")
    record = VersionRecord(model=paths.name, version=version, seq=seq, sha256=sha, size=size,
                           artifact_kind=kind, artifact_name=name if kind == "file" else "", file_count=count,
                           registered_at=event.at, registered_by=event.actor,
                           source=str(details.get("source", "")),
                           metrics={k: float(v) for k, v in (metrics or {}).items()} if isinstance(metrics, dict)
                           else {}, meta=dict(meta) if isinstance(meta, dict) else {})
    return Rebuilt(record, lost)


def _guess_kinds(paths: ModelPaths, version: str) -> list[tuple[str, str]]:
    art = paths.versions / version / "artifact"
    try:
        entries = list(os.scandir(art))
    except OSError:
        return []
    out = []
    if len(entries) == 1 and entries[0].is_file(follow_symlinks=False):
        out.append(("file", entries[0].name))
    out.append(("directory", ""))
    return out


def load_strict(path: Path) -> VersionRecord:
    """The record at ``path`` (verify): FileNotFoundError, or CorruptIndexError naming the field."""
    return load_doc(path, VersionRecord, "version record")


"""The registry's on-disk documents and the typed results of its operations.

On-disk documents forbid unknown fields and carry a schema version, so a hand-edited or damaged
file is caught on load with a message naming the file and the field. They and the results are
:class:`~mlserve.registry.docs.Doc` classes: the same fields, ``model_dump(mode="json")`` and
``model_validate_json`` as the pydantic models they replace, without pydantic's import and schema
building on the read path (``mlserve resolve`` runs in CI loops).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Optional

from mlserve.registry.docs import Doc, Factory, format_time

SCHEMA_VERSION = 1
JsonValue = Any


class _Doc(Doc):
    pass


# ---------------------------------------------------------------- on disk


class RootIndex(_Doc):
    format: Literal["mlserve-registry"] = "mlserve-registry"
    schema_version: int = SCHEMA_VERSION
    created_at: datetime


class ModelIndex(_Doc):
    schema_version: int = SCHEMA_VERSION
    name: str
    created_at: datetime
    stages: dict[str, str] = Factory(dict)
    """stage -> version; the symlinks under ``stages/`` are the truth, this is checked against them."""
    next_seq: int = 1
    latest: Optional[str] = None


class FileEntry(_Doc):
    path: str
    sha256: str
    size: int


class VersionRecord(_Doc):
    """Written once when a version is registered, then read-only."""

    schema_version: int = SCHEMA_VERSION
    model: str
    version: str
    seq: int
    sha256: str
    size: int
    artifact_kind: Literal["file", "directory"]
    artifact_name: str
    file_count: int = 1
    registered_at: datetime
    registered_by: str
    source: str
    metrics: dict[str, float] = Factory(dict)
    meta: dict[str, JsonValue] = Factory(dict)


class ArchiveMark(_Doc):
    at: datetime
    stage: str
    replaced_by: Optional[str] = None


class VersionState(_Doc):
    """The mutable side of a version: tags, later metadata and metrics, archive mark."""

    schema_version: int = SCHEMA_VERSION
    tags: list[str] = Factory(list)
    meta: dict[str, JsonValue] = Factory(dict)
    unset_meta: list[str] = Factory(list)
    """Registration-time metadata keys hidden by ``set-meta --unset`` (version.json itself never changes)."""
    metrics: dict[str, float] = Factory(dict)
    archived: Optional[ArchiveMark] = None


class Event(_Doc):
    id: str
    at: datetime
    kind: str
    model: str
    version: Optional[str] = None
    stage: Optional[str] = None
    from_version: Optional[str] = None
    to_version: Optional[str] = None
    actor: str
    reason: Optional[str] = None
    details: dict[str, JsonValue] = Factory(dict)


class TxnRecord(_Doc):
    """Write-ahead record of a change (``.txn.json``), written before its commit point, removed when done.

    ``op`` says what the commit point is: ``stage`` the stage symlink swap, ``state`` the rename of a
    version's ``state.json`` (``state_sha256`` identifies the new content), ``register`` the rename of
    the staging directory to ``versions/<version>``, ``gc`` the journal append of the gc event. The
    next writer (or ``verify --repair``) finishes a change whose commit point passed and discards
    one whose did not; readers already report a committed one.
    """

    op: Literal["stage", "state", "register", "gc"] = "stage"
    stage: Optional[str] = None
    from_version: Optional[str] = None
    to_version: Optional[str] = None
    version: Optional[str] = None
    state_sha256: Optional[str] = None
    staging: Optional[str] = None
    removed: list[str] = Factory(list)
    event: Event


StageTxn = TxnRecord
"""The record's name before it covered every kind of change."""


# ---------------------------------------------------------------- results


class Result(Doc):
    warnings: list[str] = Factory(list)


class RegisterResult(Result):
    model: str
    version: str
    sha256: str
    size: int
    artifact_path: Path
    created: bool
    duplicate_of: Optional[str] = None
    stage: Optional[str] = None


class PromoteResult(Result):
    model: str
    stage: str
    version: str
    previous: Optional[str] = None
    changed: bool = True
    event_id: Optional[str] = None


class VersionInfo(Result):
    model: str
    version: str
    seq: int
    sha256: str
    size: int
    artifact_kind: str
    artifact_path: Path
    file_count: int
    registered_at: datetime
    registered_by: str
    source: str
    stages: list[str]
    status: str
    tags: list[str]
    metrics: dict[str, float]
    meta: dict[str, JsonValue]


class ResolvedVersion(Result):
    model: str
    version: str
    stage: Optional[str] = None
    artifact_path: Path
    sha256: str
    metrics: dict[str, float] = Factory(dict)
    meta: dict[str, JsonValue] = Factory(dict)


class ModelSummary(Result):
    name: str
    versions: int
    latest: Optional[str]
    stages: dict[str, str]
    created_at: datetime


class VersionRow(Doc):
    version: str
    seq: int
    registered_at: datetime
    sha256: str
    size: int
    stages: list[str]
    status: str
    tags: list[str]

    def model_dump(self, *, mode: str = "python") -> dict[str, Any]:
        """The generic dump, spelled out: ``list`` dumps 10,000 of these."""
        d = self.__dict__
        at = d["registered_at"]
        return {"version": d["version"], "seq": d["seq"], "registered_at": format_time(at) if mode == "json" else at,
                "sha256": d["sha256"], "size": d["size"], "stages": list(d["stages"]), "status": d["status"],
                "tags": list(d["tags"])}


class ModelList(Result):
    registry: Path
    models: list[ModelSummary]


class VersionList(Result):
    model: str
    versions: list[VersionRow]


class HistoryResult(Result):
    model: str
    events: list[Event]
    at: Optional[datetime] = None
    stage: Optional[str] = None
    holder_at: Optional[str] = None
    """With ``at``: the version that held ``stage`` at that instant (None: the stage was empty)."""


class Problem(Doc):
    model: Optional[str]
    version: Optional[str] = None
    kind: str
    path: Optional[str] = None
    message: str
    repairable: bool
    repaired: bool = False


class VerifyReport(Result):
    registry: Path
    models_checked: int
    versions_checked: int
    problems: list[Problem]
    repaired: bool

    @property
    def ok(self) -> bool:
        return all(p.repaired for p in self.problems)


class GcResult(Result):
    model: str
    keep: int
    dry_run: bool
    removed: list[str]
    kept: list[str]
    protected: dict[str, str]
    """version -> why it cannot be removed (holds a stage, last production, rollback target)."""
    freed_bytes: int

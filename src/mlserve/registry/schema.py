"""The registry's on-disk documents and the typed results of its operations (pydantic models).

On-disk documents forbid unknown fields and carry a schema version, so a hand-edited or damaged
file is caught on load with a message naming the file and the field.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
JsonValue = Any


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- on disk


class RootIndex(_Doc):
    format: Literal["mlserve-registry"] = "mlserve-registry"
    schema_version: int = SCHEMA_VERSION
    created_at: datetime


class ModelIndex(_Doc):
    schema_version: int = SCHEMA_VERSION
    name: str
    created_at: datetime
    stages: dict[str, str] = Field(default_factory=dict)
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
    metrics: dict[str, float] = Field(default_factory=dict)
    meta: dict[str, JsonValue] = Field(default_factory=dict)


class ArchiveMark(_Doc):
    at: datetime
    stage: str
    replaced_by: Optional[str] = None


class VersionState(_Doc):
    """The mutable side of a version: tags, later metadata and metrics, archive mark."""

    schema_version: int = SCHEMA_VERSION
    tags: list[str] = Field(default_factory=list)
    meta: dict[str, JsonValue] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
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
    details: dict[str, JsonValue] = Field(default_factory=dict)


class StageTxn(_Doc):
    """Write-ahead record of a stage change, removed when the change is complete."""

    stage: str
    from_version: Optional[str] = None
    to_version: Optional[str] = None
    event: Event


# ---------------------------------------------------------------- results


class Result(BaseModel):
    warnings: list[str] = Field(default_factory=list)


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
    metrics: dict[str, float] = Field(default_factory=dict)
    meta: dict[str, JsonValue] = Field(default_factory=dict)


class ModelSummary(Result):
    name: str
    versions: int
    latest: Optional[str]
    stages: dict[str, str]
    created_at: datetime


class VersionRow(BaseModel):
    version: str
    seq: int
    registered_at: datetime
    sha256: str
    size: int
    stages: list[str]
    status: str
    tags: list[str]


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


class Problem(BaseModel):
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

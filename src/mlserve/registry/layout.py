"""Where everything lives on disk, the checks of the registry root, and typed document I/O.

Layout under the registry root::

    registry.json                        root marker and schema version (derived: rebuilt by repair)
    rollouts/<name>.json, <name>.lock    state of local rollouts (``mlserve rollout --target local``), written
                                         by :mod:`mlserve.registry.records`; the registry never reads it
    .staging/<id>/, .staging/<id>.lock   artifacts being copied in (outside the model lock); the
                                         flock on <id>.lock says the writer is alive
    models/<name>/
        journal.jsonl                    append-only events (who, when, why, from, to): the truth
        journal.quarantine.jsonl         damaged journal lines moved aside by repair, with offsets
        stages/<stage> -> ../versions/<v>   the truth of which version holds a stage
        current -> stages/production     what serving reads
        digests/<sha256> -> ../versions/<v>
        versions/<v>/version.json        immutable record (read-only)
        versions/<v>/artifact/<file>     the artifact, or the artifact directory's content (read-only)
        versions/<v>/state.json          tags, later metadata and metrics, archive mark (derived)
        model.json                       stages, sequence counter, latest (derived)
        tombstones/<v>                   names removed by gc, never reused (derived from gc events)
        .trash/<id>/                     versions being deleted by gc, under the model lock
        .lock                            inter-process lock for every write to this model
        .txn.json                        write-ahead record of the change in progress

Rules for the root (the same for every command):
- a path that does not exist is created by ``register``; every other command answers "registry
  ... does not exist" (exit 3), so a mistyped ``--registry`` never reads as an empty registry;
- a path that exists but is not a directory (a file, something below a file, a dangling symlink)
  is refused with exit 8, saying what it is.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from mlserve.errors import CorruptIndexError, NotFoundError, StorageError, UsageError
from mlserve.registry import fsio
from mlserve.registry.docs import Doc, DocError
from mlserve.registry.names import check_model_name, check_stage, check_version
from mlserve.registry.schema import SCHEMA_VERSION, RootIndex

D = TypeVar("D", bound=Doc)
PRODUCTION = "production"
REPAIR_HINT = "run 'mlserve verify --repair' or restore the file from a backup"
ROOT_ENTRIES = {"models", ".staging", ".trash", "registry.json", "rollouts"}


def now() -> datetime:
    return datetime.now(timezone.utc)


class ModelPaths:
    """The files of one model (the name is checked before any path is built)."""

    def __init__(self, models_dir: Path, name: str) -> None:
        self.name = check_model_name(name)
        self.dir = models_dir / name
        self.staging = models_dir.parent / ".staging"
        self.index = self.dir / "model.json"
        self.journal = self.dir / "journal.jsonl"
        self.quarantine = self.dir / "journal.quarantine.jsonl"
        self.lock = self.dir / ".lock"
        self.txn = self.dir / ".txn.json"
        self.current = self.dir / "current"
        self.stages = self.dir / "stages"
        self.digests = self.dir / "digests"
        self.versions = self.dir / "versions"
        self.tombstones = self.dir / "tombstones"
        self.trash = self.dir / ".trash"

    def version(self, version: str) -> Path:
        return self.versions / check_version(version)

    def stage(self, stage: str) -> Path:
        return self.stages / check_stage(stage)

    def digest(self, sha: str) -> Path:
        return self.digests / sha

    def exists(self) -> bool:
        return self.index.exists() or self.journal.exists()


class Layout:
    """The paths of a registry rooted at ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.marker = root / "registry.json"
        self.models_dir = root / "models"
        self.staging = root / ".staging"
        self.legacy_trash = root / ".trash"

    def model(self, name: str) -> ModelPaths:
        return ModelPaths(self.models_dir, name)

    # ------------------------------------------------------------ the root

    def refuse_non_directory(self) -> None:
        """Exit 8 for a root that exists but is no directory (see the module's rules)."""
        root = self.root
        if root.is_symlink() and not root.exists():
            raise StorageError(f"registry path {root} is a symlink to {os.readlink(root)}, which does not exist",
                               hint="create the directory it points at, or point --registry / MLSERVE_REGISTRY elsewhere")
        if root.exists() and not root.is_dir():
            raise StorageError(f"registry path {root} is a file, not a directory",
                               hint="point --registry / MLSERVE_REGISTRY at a directory")
        parent = root.parent
        while parent != parent.parent and not parent.exists():
            parent = parent.parent
        if parent.exists() and not parent.is_dir():
            raise StorageError(f"registry path {root} is below {parent}, which is a file, not a directory",
                               hint="point --registry / MLSERVE_REGISTRY at a directory")

    def check_readable(self) -> None:
        """For every command but ``register``: the root exists, is a directory and is a registry."""
        self.refuse_non_directory()
        if not self.root.exists():
            raise NotFoundError(f"registry {self.root} does not exist",
                                hint="check --registry / MLSERVE_REGISTRY; 'mlserve register' creates a registry")
        if self.marker.exists():
            load_doc(self.marker, RootIndex, "registry index")
        elif not self.models_dir.exists() and any(True for _ in os.scandir(self.root)):
            raise UsageError(f"{self.root} is not an mlserve registry (no registry.json)")
        if self.models_dir.exists() and not self.models_dir.is_dir():
            raise CorruptIndexError(f"{self.models_dir} is a file, not the registry's models directory",
                                    hint="move it aside; 'mlserve verify' reports what else is wrong")

    def ensure(self) -> None:
        """For ``register``: create the registry when the root is missing or empty."""
        self.refuse_non_directory()
        if self.marker.exists():
            load_doc(self.marker, RootIndex, "registry index")
        elif self.root.exists() and any(p.name not in ROOT_ENTRIES and not p.name.startswith(fsio.TMP_PREFIX)
                                        for p in self.root.iterdir()):
            raise UsageError(f"{self.root} exists and is not an mlserve registry (no registry.json)",
                             hint="point --registry at an empty or new directory")
        if self.models_dir.exists() and not self.models_dir.is_dir():
            raise CorruptIndexError(f"{self.models_dir} is a file, not the registry's models directory",
                                    hint="move it aside; 'mlserve verify' reports what else is wrong")
        for sub in (self.models_dir, self.staging):
            sub.mkdir(parents=True, exist_ok=True)
        if not self.marker.exists():
            save_doc(self.marker, RootIndex(created_at=now()))


# ---------------------------------------------------------------- typed documents


def load_doc(path: Path, cls: type[D], what: str) -> D:
    """Read and check one document; FileNotFoundError passes through, damage is CorruptIndexError."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise CorruptIndexError(f"cannot read {what} {path}: {exc.strerror}") from exc
    return parse_doc(raw, path, cls, what)


def parse_doc(raw: bytes, path: Path, cls: type[D], what: str) -> D:
    try:
        doc = cls.model_validate_json(raw)
    except DocError as exc:
        raise CorruptIndexError(f"{what} {path} is invalid at {exc.loc}: {exc.msg}", hint=REPAIR_HINT) from None
    version = getattr(doc, "schema_version", SCHEMA_VERSION)
    if version > SCHEMA_VERSION:
        raise CorruptIndexError(f"{what} {path} has schema version {version}; this mlserve reads up to {SCHEMA_VERSION}",
                                hint="upgrade mlserve")
    return doc


def dump_doc(doc: Doc) -> bytes:
    return (doc.model_dump_json(indent=2) + "\n").encode()


def save_doc(path: Path, doc: Doc, *, durable: bool = True) -> None:
    fsio.atomic_write_bytes(path, dump_doc(doc), durable=durable)


def read_json_file(path: str) -> Any:
    """The parsed JSON of a file (no schema check): the fast path of listings."""
    with open(path, "rb") as fh:
        raw = fh.read()
    import json

    return json.loads(raw)

"""The model registry: immutable checksummed versions on disk and an atomic pointer per stage.

Layout under the registry root::

    registry.json                        root marker and schema version
    .staging/<pid>-<id>/                 artifacts being copied in (outside the lock)
    .trash/<id>/                         versions being deleted by gc
    models/<name>/
        model.json                       the model's index: stages, sequence counter, latest
        journal.jsonl                    append-only events (who, when, why, from, to)
        .lock                            inter-process lock for every write to this model
        .txn.json                        write-ahead record of a stage change in progress
        current -> stages/production     what serving reads
        stages/<stage> -> ../versions/<v>
        digests/<sha256> -> ../versions/<v>
        versions/<v>/version.json        immutable record (read-only)
        versions/<v>/state.json          tags, later metadata and metrics, archive mark
        versions/<v>/artifact/<file>     the artifact, or the artifact directory's content (read-only)

A stage changes by renaming a fresh symlink over the old one, so the stage never points nowhere and
never at two versions. The symlink is the commit point of a stage change; ``model.json`` and the
journal are brought in line from ``.txn.json`` if a process dies in between.
"""

from __future__ import annotations

import getpass
import operator
import os
import re
import socket
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from pydantic import BaseModel, ValidationError

from mlserve import config
from mlserve.errors import (
    ChecksumMismatchError,
    ConflictError,
    CorruptIndexError,
    EmptyStageError,
    ExpectationFailedError,
    GateFailedError,
    LockTimeoutError,
    NotFoundError,
    UsageError,
    VersionExistsError,
)
from mlserve.progress import NULL_PROGRESS, Progress
from mlserve.registry import fsio
from mlserve.registry.names import (
    check_model_name,
    check_stage,
    check_version,
    parse_ref_strict,
)
from mlserve.registry.schema import (
    SCHEMA_VERSION,
    ArchiveMark,
    Event,
    GcResult,
    HistoryResult,
    ModelIndex,
    ModelList,
    ModelSummary,
    Problem,
    PromoteResult,
    RegisterResult,
    ResolvedVersion,
    RootIndex,
    StageTxn,
    VersionInfo,
    VersionList,
    VersionRecord,
    VersionRow,
    VersionState,
    VerifyReport,
)

PRODUCTION = "production"
_REQUIRE = re.compile(r"^\s*([A-Za-z0-9_.:/-]+)\s*(>=|<=|==|!=|>|<)\s*([-+0-9.eE]+|nan|inf)\s*$")
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq, "!=": operator.ne}


def now() -> datetime:
    return datetime.now(timezone.utc)


def default_actor() -> str:
    """Who is acting: ``MLSERVE_ACTOR``, else the CI user, else ``user@host``."""
    for var in ("MLSERVE_ACTOR", "GITHUB_ACTOR", "GITLAB_USER_LOGIN", "BUILD_REQUESTEDFOR"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def parse_requirement(text: str) -> tuple[str, str, float]:
    """``accuracy>=0.9`` -> ("accuracy", ">=", 0.9)."""
    match = _REQUIRE.match(text)
    if not match:
        raise UsageError(f"bad requirement {text!r}: use METRIC>=VALUE (operators >= <= > < == !=)")
    return match.group(1), match.group(2), float(match.group(3))


_METRIC_NAME = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}$")


def check_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Metric values must be finite numbers and names usable in ``--require``."""
    import math

    out: dict[str, float] = {}
    for key, value in metrics.items():
        key = str(key)
        if not _METRIC_NAME.match(key):
            raise UsageError(f"bad metric name {key!r}: use letters, digits and _ . : / - (it must work in --require)")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UsageError(f"metric {key}={value!r} is not a number") from None
        if not math.isfinite(number):
            raise UsageError(f"metric {key}={value!r} is not a finite number; record only real measurements")
        out[key] = number
    return out


def _load_doc(path: Path, model: type[BaseModel], what: str) -> Any:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise CorruptIndexError(f"cannot read {what} {path}: {exc.strerror}") from exc
    try:
        doc = model.model_validate_json(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(document)"
        raise CorruptIndexError(
            f"{what} {path} is invalid at {loc}: {err.get('msg')}",
            hint="run 'mlserve verify --repair' or restore the file from a backup",
        ) from exc
    version = getattr(doc, "schema_version", SCHEMA_VERSION)
    if version > SCHEMA_VERSION:
        raise CorruptIndexError(f"{what} {path} has schema version {version}; this mlserve reads up to {SCHEMA_VERSION}",
                                hint="upgrade mlserve")
    return doc


def _dump(doc: BaseModel) -> bytes:
    return (doc.model_dump_json(indent=2) + "\n").encode()


class Registry:
    """A registry rooted at a directory. Every method is safe to call from several processes at once."""

    def __init__(self, root: Path | str | None = None, *, lock_timeout: float | None = None,
                 actor: str | None = None) -> None:
        self.root = Path(config.resolve("registry", root)).expanduser().absolute()
        self.lock_timeout = float(config.resolve("lock_timeout", lock_timeout))
        self.actor = actor or default_actor()

    # ------------------------------------------------------------ paths

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def model_dir(self, name: str) -> Path:
        return self.models_dir / check_model_name(name)

    def version_dir(self, name: str, version: str) -> Path:
        return self.model_dir(name) / "versions" / check_version(version)

    # ------------------------------------------------------------ root and locking

    def _ensure_root(self) -> None:
        self._not_a_file()
        marker = self.root / "registry.json"
        if marker.exists():
            _load_doc(marker, RootIndex, "registry index")
            return
        if self.root.exists() and any(
                p.name not in {"models", ".staging", ".trash"} and not p.name.startswith(fsio.TMP_PREFIX)
                for p in self.root.iterdir()):
            raise UsageError(f"{self.root} exists and is not an mlserve registry (no registry.json)",
                             hint="point --registry at an empty or new directory")
        for sub in ("models", ".staging", ".trash"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        fsio.atomic_write_bytes(marker, _dump(RootIndex(created_at=now())))

    def _not_a_file(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise UsageError(f"registry path {self.root} is a file, not a directory",
                             hint="point --registry / MLSERVE_REGISTRY at a directory")

    def _check_root(self) -> None:
        self._not_a_file()
        marker = self.root / "registry.json"
        if marker.exists():
            _load_doc(marker, RootIndex, "registry index")
        elif self.root.exists() and any(self.root.iterdir()) and not self.models_dir.is_dir():
            raise UsageError(f"{self.root} is not an mlserve registry (no registry.json)")

    @contextmanager
    def _locked(self, name: str, *, create: bool = False) -> Iterator[Path]:
        from filelock import FileLock, Timeout

        model_dir = self.model_dir(name)
        if not create and not (model_dir / "model.json").exists():
            raise NotFoundError(f"model {name!r} not found in registry {self.root}")
        model_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(model_dir / ".lock"), timeout=self.lock_timeout)
        try:
            lock.acquire()
        except Timeout as exc:
            raise LockTimeoutError(
                f"could not lock model {name!r} within {self.lock_timeout:g}s: another mlserve process is writing it",
                hint="retry, or raise --lock-timeout / MLSERVE_LOCK_TIMEOUT",
            ) from exc
        try:
            self._recover(name)
            yield model_dir
        finally:
            lock.release()

    # ------------------------------------------------------------ documents

    def _model_index(self, name: str) -> ModelIndex:
        path = self.model_dir(name) / "model.json"
        try:
            return _load_doc(path, ModelIndex, "model index")
        except FileNotFoundError:
            raise NotFoundError(f"model {name!r} not found in registry {self.root}") from None

    def _save_model_index(self, index: ModelIndex) -> None:
        fsio.atomic_write_bytes(self.model_dir(index.name) / "model.json", _dump(index))

    def _record(self, name: str, version: str) -> VersionRecord:
        path = self.version_dir(name, version) / "version.json"
        try:
            return _load_doc(path, VersionRecord, "version record")
        except FileNotFoundError:
            if not self.model_dir(name).joinpath("model.json").exists():
                raise NotFoundError(f"model {name!r} not found in registry {self.root}") from None
            raise NotFoundError(f"version {version!r} of model {name!r} not found",
                                hint=f"'mlserve list {name}' shows its versions") from None

    def _state(self, name: str, version: str) -> VersionState:
        path = self.version_dir(name, version) / "state.json"
        try:
            return _load_doc(path, VersionState, "version state")
        except FileNotFoundError:
            return VersionState()

    def _save_state(self, name: str, version: str, state: VersionState) -> None:
        fsio.atomic_write_bytes(self.version_dir(name, version) / "state.json", _dump(state))

    def _artifact_path(self, record: VersionRecord) -> Path:
        base = self.version_dir(record.model, record.version) / "artifact"
        return base / record.artifact_name if record.artifact_kind == "file" else base

    def _stage_holder(self, name: str, stage: str, *, strict: bool = True) -> str | None:
        """The version a stage's symlink names. ``strict``: refuse a link that is foreign or dangling
        (readers); writers pass False so that a promotion can replace a broken link."""
        link = self.model_dir(name) / "stages" / stage
        try:
            target = os.readlink(link)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CorruptIndexError(f"{link} is not a symlink: {exc.strerror}") from exc
        version = Path(target).name
        if not strict:
            return version
        if target != f"../versions/{version}":
            raise CorruptIndexError(f"stage link {link} points outside the model: {target}",
                                    hint="run 'mlserve verify' and restore the link with 'mlserve promote'")
        if not (link.parent.parent / "versions" / version / "version.json").is_file():
            raise CorruptIndexError(f"stage link {link} points at version {version!r}, which is missing or incomplete",
                                    hint="run 'mlserve verify', then 'mlserve promote' or 'mlserve rollback --to'")
        return version

    def _stage_links(self, name: str) -> dict[str, str]:
        stages_dir = self.model_dir(name) / "stages"
        if not stages_dir.is_dir():
            return {}
        out = {}
        for entry in os.scandir(stages_dir):
            if entry.name.startswith(fsio.TMP_PREFIX) or not entry.is_symlink():
                continue
            out[entry.name] = Path(os.readlink(entry.path)).name
        return out

    # ------------------------------------------------------------ journal

    def _event(self, name: str, kind: str, **fields: Any) -> Event:
        return Event(id=uuid.uuid4().hex, at=now(), kind=kind, model=name, actor=self.actor, **fields)

    def _append(self, event: Event) -> None:
        fsio.append_line(self.model_dir(event.model) / "journal.jsonl", event.model_dump_json())

    def events(self, name: str) -> list[Event]:
        """The model's journal, oldest first. A torn last line (a killed writer) is ignored."""
        path = self.model_dir(name) / "journal.jsonl"
        if not path.exists():
            self._model_index(name)  # raises NotFoundError for unknown models
            return []
        events = []
        lines = path.read_bytes().split(b"\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                events.append(Event.model_validate_json(line))
            except ValidationError as exc:
                if number == len(lines):  # torn final line without newline
                    continue
                raise CorruptIndexError(f"journal {path} line {number} is not a valid event: {exc.errors()[0]['msg']}",
                                        hint="run 'mlserve verify' to see every problem") from exc
        return events

    def journal_event(self, name: str, kind: str, details: dict | None = None, *, version: str | None = None,
                      stage: str | None = None, reason: str | None = None) -> Event:
        """Append a custom event (for example a rollout abort) to a model's journal."""
        if version is not None:
            self._record(name, version)
        with self._locked(name):
            self._model_index(name)
            event = self._event(name, kind, version=version, stage=stage, reason=reason, details=details or {})
            self._append(event)
        return event

    # ------------------------------------------------------------ register

    def register(self, name: str, artifact: Path | str, *, version: str | None = None,
                 metrics: dict[str, float] | None = None, meta: dict[str, Any] | None = None,
                 stage: str | None = None, reason: str | None = None,
                 progress: Progress = NULL_PROGRESS) -> RegisterResult:
        """Copy ``artifact`` (a file or a directory) into a new immutable version, hashing it in the same pass.

        The copy happens outside the lock, in a staging directory on the same file system; the
        version is then chosen and published under the lock by one rename.
        """
        check_model_name(name)
        if version is not None:
            check_version(version)
        if stage is not None:
            check_stage(stage)
        source = Path(artifact).expanduser()
        if not source.exists():
            raise NotFoundError(f"artifact {source} does not exist")
        if not (source.is_file() or source.is_dir()):
            raise UsageError(f"artifact {source} is neither a regular file nor a directory")
        metrics = check_metrics(metrics or {})
        self._ensure_root()
        staging = self.root / ".staging" / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        staging.mkdir(parents=True)
        try:
            sha, size, kind, count = self._stage_artifact(source, staging / "artifact", progress)
            with self._locked(name, create=True) as model_dir:
                result = self._publish(name, model_dir, staging, source, sha, size, kind, count,
                                       version, metrics, meta or {}, reason)
                if not result.created and (metrics or meta):
                    self._apply_state(name, result.version, "record-metrics", reason or "registered again",
                                      metrics=metrics, meta=meta or {})
                    result.warnings.append(f"the given metrics and metadata were recorded on version {result.version}")
                if stage is not None and self._stage_holder(name, stage, strict=False) != result.version:
                    self._set_stage(name, stage, result.version, kind="promote", reason=reason or "registered with --stage")
                if stage is not None:
                    result.stage = stage
            return result
        finally:
            if staging.exists():
                fsio.remove_tree(staging)

    def _stage_artifact(self, source: Path, dest: Path, progress: Progress) -> tuple[str, int, str, int]:
        if source.is_file():
            total = source.stat().st_size
            dest.mkdir()
            with progress.task(f"copying {source.name}", total=total) as task:
                sha, size = fsio.copy_and_hash(source, dest / source.name, task.advance)
            fsio.make_read_only(dest)
            return sha, size, "file", 1
        files = _scan_tree(source)
        total = sum(f[2] for f in files if f[0] == "F")
        manifest = []
        size = 0
        dest.mkdir()
        with progress.task(f"copying {source.name}/", total=total) as task:
            for kind, rel, nbytes, target in files:
                out = dest / rel
                if kind == "D":
                    out.mkdir(parents=True, exist_ok=True)
                    manifest.append(f"D {rel}")
                elif kind == "L":
                    out.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(target, out)
                    manifest.append(f"L {rel} {target}")
                else:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    file_sha, file_size = fsio.copy_and_hash(source / rel, out, task.advance)
                    size += file_size
                    manifest.append(f"F {rel} {file_sha} {file_size}")
        fsio.make_read_only(dest)
        return _tree_digest(manifest), size, "directory", len(manifest)

    def _publish(self, name: str, model_dir: Path, staging: Path, source: Path, sha: str, size: int, kind: str,
                 count: int, version: str | None, metrics: dict[str, float], meta: dict[str, Any],
                 reason: str | None) -> RegisterResult:
        index_path = model_dir / "model.json"
        index = _load_doc(index_path, ModelIndex, "model index") if index_path.exists() else ModelIndex(
            name=name, created_at=now())
        existing = self._by_digest(name, sha)
        if existing is not None:
            if version is not None and version != existing:
                raise VersionExistsError(
                    f"content is identical to {name}:{existing}; version {version!r} was not created",
                    hint=f"use {name}:{existing}, or register different content", details={"duplicate_of": existing})
            warning = f"content is identical to version {existing}; nothing new was registered"
            record = self._record(name, existing)
            return RegisterResult(model=name, version=existing, sha256=sha, size=size,
                                  artifact_path=self._artifact_path(record), created=False,
                                  duplicate_of=existing, warnings=[warning])
        versions_dir = model_dir / "versions"
        versions_dir.mkdir(exist_ok=True)
        tombstones = model_dir / "tombstones"
        if version is None:
            version = str(max(_next_number(versions_dir), _next_number(tombstones)))
        elif (versions_dir / version).exists():
            raise VersionExistsError(f"version {version!r} of model {name!r} already exists; versions are immutable",
                                     hint="register under a new version, or omit --version to get the next number")
        elif (tombstones / version).exists():
            raise VersionExistsError(f"version {version!r} of model {name!r} was removed by gc; a version name is never "
                                     "reused, so references to it cannot change meaning", hint="choose a new version")
        seq = index.next_seq
        # the counter moves before the commit point: a crash in between leaves a gap, never a reused number
        index.next_seq += 1
        self._save_model_index(index)
        record = VersionRecord(model=name, version=version, seq=seq, sha256=sha, size=size,
                               artifact_kind=kind, artifact_name=source.name if kind == "file" else "",
                               file_count=count, registered_at=now(), registered_by=self.actor,
                               source=str(source.absolute()), metrics=metrics, meta=meta)
        record_path = staging / "version.json"
        fsio.atomic_write_bytes(record_path, _dump(record))
        os.chmod(record_path, 0o444)
        fsio.fsync_dir(staging)
        os.rename(staging, versions_dir / version)  # the commit point of a registration
        fsio.fsync_dir(versions_dir)
        self._link_digest(name, sha, version)
        index.latest = version
        self._save_model_index(index)
        self._append(self._event(name, "register", version=version, reason=reason,
                                 details={"sha256": sha, "size": size, "source": str(source.absolute())}))
        return RegisterResult(model=name, version=version, sha256=sha, size=size,
                              artifact_path=self._artifact_path(record), created=True)

    def _by_digest(self, name: str, sha: str) -> str | None:
        link = self.model_dir(name) / "digests" / sha
        try:
            version = Path(os.readlink(link)).name
        except OSError:
            return None
        return version if (self.model_dir(name) / "versions" / version / "version.json").exists() else None

    def _link_digest(self, name: str, sha: str, version: str) -> None:
        digests = self.model_dir(name) / "digests"
        digests.mkdir(exist_ok=True)
        fsio.atomic_symlink(f"../versions/{version}", digests / sha)

    # ------------------------------------------------------------ stage changes

    def promote(self, name: str, version: str, *, stage: str = PRODUCTION, reason: str | None = None,
                expect_current: str | None = None, require: Iterable[str] = (),
                progress: Progress = NULL_PROGRESS) -> PromoteResult:
        """Point ``stage`` at ``version`` after checking its checksum, the CAS precondition and the gates.

        ``expect_current`` is a compare-and-swap: the stage must hold exactly that version ("none"
        for an empty stage), else :class:`ExpectationFailedError`.
        """
        check_stage(stage)
        check_version(version)
        require = list(require)
        requirements = [parse_requirement(r) for r in require]
        record = self._record(name, version)
        self._verify_checksum(record, progress)
        with self._locked(name):
            record = self._record(name, version)  # still there (gc may have run meanwhile)?
            current = self._stage_holder(name, stage, strict=False)
            if expect_current is not None:
                expected = None if expect_current.lower() in {"none", ""} else expect_current
                if current != expected:
                    raise ExpectationFailedError(
                        f"{name}@{stage} holds {current or 'nothing'}, not {expected or 'nothing'} as expected",
                        details={"current": current, "expected": expected})
            self._check_gates(record, requirements)
            if current == version:
                return PromoteResult(model=name, stage=stage, version=version, previous=current, changed=False,
                                     warnings=[f"{name}@{stage} already holds version {version}"])
            event = self._set_stage(name, stage, version, kind="promote", reason=reason,
                                    details={"require": list(require)} if requirements else None)
        return PromoteResult(model=name, stage=stage, version=version, previous=current, event_id=event.id)

    def rollback(self, name: str, *, to: str | None = None, stage: str = PRODUCTION, reason: str | None = None,
                 progress: Progress = NULL_PROGRESS) -> PromoteResult:
        """Put back the version that held ``stage`` before (from the journal), or ``to``."""
        check_stage(stage)
        if to is not None:
            check_version(to)
        self._model_index(name)
        target = to or self._rollback_target(name, stage)
        record = self._record(name, target)
        self._verify_checksum(record, progress)
        with self._locked(name):
            if to is None and self._rollback_target(name, stage) != target:
                raise ConflictError(f"{name}@{stage} changed while preparing the rollback; run it again")
            self._record(name, target)
            current = self._stage_holder(name, stage, strict=False)
            if current == target:
                return PromoteResult(model=name, stage=stage, version=target, previous=current, changed=False,
                                     warnings=[f"{name}@{stage} already holds version {target}"])
            event = self._set_stage(name, stage, target, kind="rollback", reason=reason,
                                    details={"mode": "explicit" if to else "previous"})
        return PromoteResult(model=name, stage=stage, version=target, previous=current, event_id=event.id)

    def _rollback_target(self, name: str, stage: str) -> str:
        stack: list[str] = []
        for event in self.events(name):
            if event.stage != stage or event.kind not in {"promote", "rollback"}:
                continue
            if event.kind == "rollback" and event.details.get("mode") == "previous":
                if stack and stack[-1] == event.to_version:
                    stack.pop()
            elif event.from_version is not None:
                stack.append(event.from_version)
        existing = [v for v in stack if (self.model_dir(name) / "versions" / v / "version.json").exists()]
        if not existing:
            raise NotFoundError(f"{name}@{stage} has no earlier version to roll back to",
                                hint=f"use --to VERSION; 'mlserve history {name}' shows what held it")
        return existing[-1]

    def _set_stage(self, name: str, stage: str, version: str, *, kind: str, reason: str | None,
                   details: dict | None = None) -> Event:
        """Swap the stage symlink (the commit point), then bring index, archive marks and journal in line."""
        model_dir = self.model_dir(name)
        current = self._stage_holder(name, stage, strict=False)
        event = self._event(name, kind, version=version, stage=stage, from_version=current, to_version=version,
                            reason=reason, details=details or {})
        txn = StageTxn(stage=stage, from_version=current, to_version=version, event=event)
        fsio.atomic_write_bytes(model_dir / ".txn.json", _dump(txn))
        stages_dir = model_dir / "stages"
        stages_dir.mkdir(exist_ok=True)
        fsio.atomic_symlink(f"../versions/{version}", stages_dir / stage)
        self._complete_txn(name, txn)
        return event

    def _complete_txn(self, name: str, txn: StageTxn) -> None:
        model_dir = self.model_dir(name)
        if txn.stage == PRODUCTION and not (model_dir / "current").is_symlink():
            fsio.atomic_symlink(f"stages/{PRODUCTION}", model_dir / "current")
        index = self._model_index(name)
        index.stages[txn.stage] = txn.to_version  # type: ignore[assignment]
        self._save_model_index(index)
        old = txn.from_version
        if old and old != txn.to_version and old not in index.stages.values() \
                and (model_dir / "versions" / old / "version.json").exists():
            state = self._state(name, old)
            state.archived = ArchiveMark(at=txn.event.at, stage=txn.stage, replaced_by=txn.to_version)
            self._save_state(name, old, state)
        if txn.to_version:
            state = self._state(name, txn.to_version)
            if state.archived is not None:
                state.archived = None
                self._save_state(name, txn.to_version, state)
        if not self._journal_has(name, txn.event.id):
            self._append(txn.event)
        (model_dir / ".txn.json").unlink(missing_ok=True)
        fsio.fsync_dir(model_dir)

    def _journal_has(self, name: str, event_id: str) -> bool:
        path = self.model_dir(name) / "journal.jsonl"
        if not path.exists():
            return False
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - 262144))
            return event_id.encode() in fh.read()

    def _recover(self, name: str) -> None:
        """Finish or discard a stage change that a killed process left half-done (called under the lock)."""
        path = self.model_dir(name) / ".txn.json"
        if not path.exists():
            return
        try:
            txn = StageTxn.model_validate_json(path.read_bytes())
        except (ValidationError, OSError):
            path.unlink(missing_ok=True)
            return
        if self._stage_holder(name, txn.stage, strict=False) == txn.to_version:
            self._complete_txn(name, txn)
        else:
            path.unlink(missing_ok=True)

    def _verify_checksum(self, record: VersionRecord, progress: Progress = NULL_PROGRESS) -> None:
        actual = self._compute_digest(record, progress)
        if actual != record.sha256:
            raise ChecksumMismatchError(
                f"{record.model}:{record.version} is damaged: sha256 {actual[:16]}... does not match the recorded "
                f"{record.sha256[:16]}...", hint="the artifact was modified on disk; refusing to use it",
                details={"expected": record.sha256, "actual": actual})

    def _compute_digest(self, record: VersionRecord, progress: Progress = NULL_PROGRESS) -> str:
        path = self._artifact_path(record)
        if not path.exists() and not path.is_symlink():
            raise ChecksumMismatchError(f"{record.model}:{record.version} is damaged: artifact {path} is missing")
        if record.artifact_kind == "file":
            if path.is_symlink() or not path.is_file():
                raise ChecksumMismatchError(f"{record.model}:{record.version} is damaged: {path} is not a regular file")
            with progress.task(f"verifying {record.model}:{record.version}", total=record.size) as task:
                return fsio.hash_file(path, task.advance)[0]
        try:
            files = _scan_tree(path)
        except UsageError as exc:
            raise ChecksumMismatchError(f"{record.model}:{record.version} is damaged: {exc.message}") from exc
        manifest = []
        with progress.task(f"verifying {record.model}:{record.version}", total=record.size) as task:
            for kind, rel, _n, target in files:
                if kind == "D":
                    manifest.append(f"D {rel}")
                elif kind == "L":
                    manifest.append(f"L {rel} {target}")
                else:
                    file_sha, file_size = fsio.hash_file(path / rel, task.advance)
                    manifest.append(f"F {rel} {file_sha} {file_size}")
        return _tree_digest(manifest)

    def _check_gates(self, record: VersionRecord, requirements: list[tuple[str, str, float]]) -> None:
        if not requirements:
            return
        metrics = {**record.metrics, **self._state(record.model, record.version).metrics}
        failures = []
        for metric, op, bound in requirements:
            value = metrics.get(metric)
            if value is None:
                failures.append(f"{metric} is not recorded")
            elif not _OPS[op](value, bound):
                failures.append(f"{metric}={value:g} is not {op} {bound:g}")
        if failures:
            raise GateFailedError(f"{record.model}:{record.version} fails the promotion gate: " + "; ".join(failures),
                                  details={"failures": failures, "metrics": metrics})

    # ------------------------------------------------------------ metadata

    def record_metrics(self, name: str, version: str, metrics: dict[str, float], *, meta: dict | None = None,
                       reason: str | None = None) -> VersionInfo:
        """Add or overwrite recorded metrics (and metadata) of a version; journaled."""
        return self._update_state(name, version, "record-metrics", reason, metrics=check_metrics(metrics),
                                  meta=meta or {})

    def set_meta(self, name: str, version: str, meta: dict[str, Any], *, unset: Iterable[str] = (),
                 metrics: dict[str, float] | None = None, reason: str | None = None) -> VersionInfo:
        """Set (and ``unset``) metadata and record ``metrics`` on a version, in one journaled change."""
        return self._update_state(name, version, "set-meta", reason, meta=meta, unset=list(unset),
                                  metrics=check_metrics(metrics or {}))

    def tag(self, name: str, version: str, tags: Iterable[str], *, remove: bool = False) -> VersionInfo:
        tags = [check_version(t) for t in tags]
        return self._update_state(name, version, "untag" if remove else "tag", None,
                                  **({"remove_tags": tags} if remove else {"add_tags": tags}))

    def _update_state(self, name: str, version: str, kind: str, reason: str | None, **changes: Any) -> VersionInfo:
        check_version(version)
        self._record(name, version)
        with self._locked(name):
            self._record(name, version)
            self._apply_state(name, version, kind, reason, **changes)
        return self.version_info(name, version)

    def _apply_state(self, name: str, version: str, kind: str, reason: str | None, *, metrics: dict | None = None,
                     meta: dict | None = None, unset: list[str] | None = None, add_tags: list[str] | None = None,
                     remove_tags: list[str] | None = None) -> None:
        """Change a version's mutable state and journal it (the caller holds the lock)."""
        state = self._state(name, version)
        state.metrics.update(metrics or {})
        state.meta.update(meta or {})
        for key in unset or []:
            state.meta.pop(key, None)
        for tag in add_tags or []:
            if tag not in state.tags:
                state.tags.append(tag)
        if remove_tags:
            missing = [t for t in remove_tags if t not in state.tags]
            if missing:
                raise NotFoundError(f"{name}:{version} has no tag {', '.join(missing)}")
            state.tags = [t for t in state.tags if t not in remove_tags]
        self._save_state(name, version, state)
        details = {k: v for k, v in {"metrics": metrics, "meta": meta, "unset": unset, "tags": add_tags or remove_tags}
                   .items() if v}
        self._append(self._event(name, kind, version=version, reason=reason, details=details))

    # ------------------------------------------------------------ reading

    def resolve(self, ref: str) -> ResolvedVersion:
        """``NAME:VERSION``, ``NAME@STAGE`` or ``NAME`` (production) -> the version and its artifact path."""
        parsed = parse_ref_strict(ref)
        self._check_root()
        version = parsed.version
        if version is None:
            assert parsed.stage is not None
            self._model_index(parsed.model)
            version = self._stage_holder(parsed.model, parsed.stage)
            if version is None:
                raise EmptyStageError(f"{parsed.model}@{parsed.stage} is empty: no version holds that stage",
                                      hint=f"promote one with 'mlserve promote {parsed.model} VERSION --stage {parsed.stage}'")
        record = self._record(parsed.model, version)
        state = self._state(parsed.model, version)
        return ResolvedVersion(model=record.model, version=record.version, stage=parsed.stage,
                               artifact_path=self._artifact_path(record), sha256=record.sha256,
                               metrics={**record.metrics, **state.metrics}, meta={**record.meta, **state.meta})

    def version_info(self, name: str, version: str) -> VersionInfo:
        record = self._record(name, version)
        state = self._state(name, version)
        stages = sorted(s for s, v in self._stage_links(name).items() if v == version)
        return VersionInfo(model=name, version=version, seq=record.seq, sha256=record.sha256, size=record.size,
                           artifact_kind=record.artifact_kind, artifact_path=self._artifact_path(record),
                           file_count=record.file_count, registered_at=record.registered_at,
                           registered_by=record.registered_by, source=record.source, stages=stages,
                           status=_status(stages, state), tags=state.tags,
                           metrics={**record.metrics, **state.metrics}, meta={**record.meta, **state.meta})

    def model_summary(self, name: str) -> ModelSummary:
        index = self._model_index(name)
        versions_dir = self.model_dir(name) / "versions"
        count = sum(1 for e in os.scandir(versions_dir) if not e.name.startswith(".")) if versions_dir.is_dir() else 0
        return ModelSummary(name=name, versions=count, latest=index.latest, stages=self._stage_links(name),
                            created_at=index.created_at)

    def list_models(self) -> ModelList:
        self._check_root()
        models = []
        if self.models_dir.is_dir():
            for entry in sorted(os.scandir(self.models_dir), key=lambda e: e.name):
                if entry.is_dir() and (Path(entry.path) / "model.json").exists():
                    models.append(self.model_summary(entry.name))
        return ModelList(registry=self.root, models=models)

    def list_versions(self, name: str) -> VersionList:
        self._model_index(name)
        links = self._stage_links(name)
        by_version: dict[str, list[str]] = {}
        for stage, version in links.items():
            by_version.setdefault(version, []).append(stage)
        rows = []
        versions_dir = str(self.model_dir(name) / "versions")
        # plain strings, not pathlib, in this loop: it runs once per version and dominates `list` at scale
        for entry in os.scandir(versions_dir) if os.path.isdir(versions_dir) else []:
            if entry.name.startswith("."):
                continue
            record_path = f"{entry.path}/version.json"
            try:
                with open(record_path, "rb") as fh:
                    raw = fh.read()
            except FileNotFoundError:
                continue  # not a complete version (verify reports it)
            try:
                record = VersionRecord.model_validate_json(raw)
            except ValidationError:
                record = _load_doc(Path(record_path), VersionRecord, "version record")  # raises with details
            state_path = f"{entry.path}/state.json"
            state = _load_doc(Path(state_path), VersionState, "version state") if os.path.exists(state_path) \
                else _EMPTY_STATE
            stages = sorted(by_version.get(record.version, []))
            rows.append(VersionRow(version=record.version, seq=record.seq, registered_at=record.registered_at,
                                   sha256=record.sha256, size=record.size, stages=stages,
                                   status=_status(stages, state), tags=state.tags))
        rows.sort(key=lambda r: r.seq)
        return VersionList(model=name, versions=rows)

    def history(self, name: str, *, stage: str | None = None, at: datetime | None = None,
                limit: int | None = None) -> HistoryResult:
        """The journal; with ``at``, also which version held ``stage`` (default production) at that instant."""
        if stage is not None:
            check_stage(stage)
        events = self.events(name)
        holder = None
        if at is not None:
            if at.tzinfo is None:
                at = at.replace(tzinfo=timezone.utc)
            wanted = stage or PRODUCTION
            for event in events:
                if event.at > at:
                    break
                if event.stage == wanted and event.kind in {"promote", "rollback"}:
                    holder = event.to_version
            events = [e for e in events if e.at <= at]
            stage = wanted
        if stage is not None:
            events = [e for e in events if e.stage == stage]
        if limit:
            events = events[-limit:]
        return HistoryResult(model=name, events=events, at=at, stage=stage, holder_at=holder)

    # ------------------------------------------------------------ gc

    def gc(self, name: str, *, keep: int, dry_run: bool = False) -> GcResult:
        """Remove all but the ``keep`` newest versions, never one that holds a stage, held production
        last before the current holder, or is production's rollback target.

        Removed names are kept as tombstones, so a version name never comes back with other content.
        """
        if keep < 0:
            raise UsageError("--keep must be 0 or more")
        self._model_index(name)
        moved: list[Path] = []
        with self._locked(name) as model_dir:
            rows = self.list_versions(name).versions
            protected: dict[str, str] = {}
            for row in rows:
                if row.stages:
                    protected[row.version] = "holds " + ", ".join(row.stages)
            previous_prod = None
            for event in self.events(name):
                if event.stage == PRODUCTION and event.kind in {"promote", "rollback"} and event.from_version:
                    previous_prod = event.from_version
            if previous_prod:
                protected.setdefault(previous_prod, "held production before the current version")
            try:
                if self._stage_holder(name, PRODUCTION, strict=False):
                    protected.setdefault(self._rollback_target(name, PRODUCTION), "production's rollback target")
            except NotFoundError:
                pass
            newest = {r.version for r in rows[-keep:]} if keep else set()
            doomed = [r for r in rows if r.version not in newest and r.version not in protected]
            doomed_names = {r.version for r in doomed}
            freed = sum(r.size for r in doomed)
            if not dry_run and doomed:
                trash = self.root / ".trash"
                trash.mkdir(exist_ok=True)
                tombstones = model_dir / "tombstones"
                tombstones.mkdir(exist_ok=True)
                for row in doomed:
                    fsio.atomic_write_bytes(tombstones / row.version, f"{row.sha256}\n".encode())
                    dest = trash / uuid.uuid4().hex
                    os.rename(model_dir / "versions" / row.version, dest)
                    (model_dir / "digests" / row.sha256).unlink(missing_ok=True)
                    moved.append(dest)
                fsio.fsync_dir(model_dir / "versions")
                index = self._model_index(name)
                remaining = [r for r in rows if r.version not in doomed_names]
                index.latest = remaining[-1].version if remaining else None
                self._save_model_index(index)
                self._append(self._event(name, "gc", details={"removed": sorted(doomed_names), "keep": keep,
                                                              "freed_bytes": freed}))
        for dest in moved:  # outside the lock: deleting big trees takes time
            fsio.remove_tree(dest)
        return GcResult(model=name, keep=keep, dry_run=dry_run, removed=[r.version for r in doomed],
                        kept=[r.version for r in rows if r.version not in doomed_names], protected=protected,
                        freed_bytes=freed)

    # ------------------------------------------------------------ verify

    def verify(self, name: str | None = None, *, repair: bool = False, content: bool = True,
               progress: Progress = NULL_PROGRESS) -> VerifyReport:
        from mlserve.registry.verify import verify_registry

        return verify_registry(self, name, repair=repair, content=content, progress=progress)


_EMPTY_STATE = VersionState()


def _status(stages: list[str], state: VersionState) -> str:
    if stages:
        return PRODUCTION if PRODUCTION in stages else "staged"
    return "archived" if state.archived else "registered"


def _next_number(versions_dir: Path) -> int:
    highest = 0
    if not versions_dir.is_dir():
        return 1
    for entry in os.scandir(versions_dir):
        if entry.name.isdigit():
            highest = max(highest, int(entry.name))
    return highest + 1


def _tree_digest(manifest: list[str]) -> str:
    import hashlib

    return hashlib.sha256(("\n".join(manifest) + "\n").encode()).hexdigest()


def _scan_tree(root: Path) -> list[tuple[str, str, int, str]]:
    """Every entry of a directory artifact, sorted: (kind D/F/L, relative path, size, link target).

    Symlinks are kept only when they stay inside the artifact; one that points outside is refused.
    """
    out: list[tuple[str, str, int, str]] = []
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in list(dirnames):
            full = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if os.path.islink(full):
                dirnames.remove(name)
                out.append(("L", rel, 0, _inside_link(real_root, full, rel)))
            else:
                out.append(("D", rel, 0, ""))
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if os.path.islink(full):
                out.append(("L", rel, 0, _inside_link(real_root, full, rel)))
            elif os.path.isfile(full):
                out.append(("F", rel, os.path.getsize(full), ""))
            else:
                raise UsageError(f"{full} is not a regular file, directory or symlink; refusing to register it")
    out.sort(key=lambda e: e[1])
    return out


def _inside_link(real_root: str, full: str, rel: str) -> str:
    target = os.readlink(full)
    resolved = os.path.realpath(full)
    if os.path.isabs(target) or os.path.commonpath([real_root, resolved]) != real_root:
        raise UsageError(f"symlink {rel} -> {target} points outside the artifact directory; refusing to register it",
                         hint="copy the file into the directory instead of linking to it")
    return target



"""The registry's facade: :class:`Registry`, whose methods check their input and delegate.

The work lives with its domain: ``registration`` (staging, publish), ``stages`` (links and stage
transactions), ``indexes`` (``model.json``, ``state.json`` and replaying them), ``journal``,
``artifacts`` (copy, hash, digest links), ``retention`` (gc), ``recovery`` (finishing an
interrupted change) and ``verify``. Every write takes the model's lock, first finishes or discards
what an earlier writer left half-done, and reports success once its commit point has passed (a
follow-up that fails afterwards is a warning on the result, never an error).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from mlserve import config
from mlserve.errors import ConflictError, CorruptIndexError, EmptyStageError, MlserveError, NotFoundError, UsageError
from mlserve.progress import NULL_PROGRESS, Progress
from mlserve.registry import (
    artifacts, indexes, journal, locks, recovery, registration, retention, stages, txn, versions,
)
from mlserve.registry.layout import PRODUCTION, Layout, ModelPaths, REPAIR_HINT
from mlserve.registry.names import check_model_name, check_stage, check_tag, check_version, parse_ref_strict
from mlserve.registry.schema import (
    Event,
    GcResult,
    HistoryResult,
    ModelList,
    ModelSummary,
    PromoteResult,
    RegisterResult,
    ResolvedVersion,
    TxnRecord,
    VerifyReport,
    VersionInfo,
    VersionList,
)
from mlserve.registry.values import check_gates, check_meta, check_metrics, parse_requirement

if TYPE_CHECKING:  # pragma: no cover
    from mlserve.registry.records import RecordFolder

__all__ = ["PRODUCTION", "Registry", "default_actor", "parse_requirement"]


def default_actor() -> str:
    """Who is acting: ``MLSERVE_ACTOR``, else the CI user, else ``user@host``."""
    for var in ("MLSERVE_ACTOR", "GITHUB_ACTOR", "GITLAB_USER_LOGIN", "BUILD_REQUESTEDFOR"):
        if os.environ.get(var):
            return os.environ[var]
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


class Registry:
    """A registry rooted at a directory. Every method is safe to call from several processes at once."""

    def __init__(self, root: Path | str | None = None, *, lock_timeout: float | None = None,
                 actor: str | None = None) -> None:
        self.root = Path(config.resolve("registry", root)).expanduser().absolute()
        self.lock_timeout = float(config.resolve("lock_timeout", lock_timeout))
        self._actor = actor
        self.layout = Layout(self.root)

    @property
    def actor(self) -> str:
        if self._actor is None:
            self._actor = default_actor()
        return self._actor

    # ------------------------------------------------------------ paths

    @property
    def models_dir(self) -> Path:
        return self.layout.models_dir

    def model_dir(self, name: str) -> Path:
        return self.layout.model(name).dir

    def version_dir(self, name: str, version: str) -> Path:
        return self.layout.model(name).version(version)

    def _existing(self, name: str) -> ModelPaths:
        self.layout.check_readable()
        paths = self.layout.model(name)
        if not paths.exists():
            raise NotFoundError(f"model {name!r} not found in registry {self.root}")
        return paths

    @contextmanager
    def _writing(self, name: str, *, create: bool = False) -> Iterator[ModelPaths]:
        paths = self.layout.model(name) if create else self._existing(name)
        paths.dir.mkdir(parents=True, exist_ok=True)
        with locks.model_lock(paths.lock, name, self.lock_timeout):
            recovery.recover(paths)
            yield paths

    @contextmanager
    def _reading(self, paths: ModelPaths) -> Iterator[None]:
        """A consistent view for read-only work: the lock when it can be had, never created."""
        with locks.model_lock(paths.lock, paths.name, self.lock_timeout, read_only=True):
            yield

    def _events(self, paths: ModelPaths) -> tuple[list[Event], list[str]]:
        """The journal plus a committed change not journaled yet, and warnings about damaged lines."""
        read = journal.read(paths)
        events = read.events
        extra = txn.pending_event(paths, {e.id for e in events}) if paths.txn.exists() else None
        if extra is not None:
            events.append(extra)
        return events, read.warnings(paths)

    @staticmethod
    def _pending_stage(paths: ModelPaths) -> TxnRecord | None:
        if not paths.txn.exists():
            return None
        record, done = recovery.pending(paths)
        return record if done and record is not None and record.op in {"stage", "register"} else None

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
        meta = check_meta(meta)
        self.layout.ensure()
        with registration.staging_area(self.layout) as staging:
            sha, size, kind, count = artifacts.copy_in(source, staging / "artifact", progress)
            copied = registration.Copied(source, sha, size, kind, count)
            with self._writing(name, create=True) as paths:
                done = registration.publish(paths, staging, copied, version=version, metrics=metrics, meta=meta,
                                            reason=reason, actor=self.actor)
                warnings = list(done.warnings)
                committed = done.created
                if not done.created and (metrics or meta):
                    details = {k: v for k, v in {"metrics": metrics, "meta": meta}.items() if v}
                    _event, more = indexes.change_state(paths, done.version, "record-metrics", self.actor,
                                                        reason or "registered again", details)
                    committed = True
                    warnings += more + [f"the given metrics and metadata were recorded on version {done.version}"]
                placed = None
                if stage is not None:
                    try:
                        warnings += self._place(paths, stage, done.version, reason)
                        placed = stage
                    except (OSError, MlserveError) as exc:
                        if not committed:
                            raise
                        text = exc.message if isinstance(exc, MlserveError) else str(exc)
                        warnings.append(f"{name}:{done.version} is registered, but putting it in stage {stage} failed "
                                        f"({text}); run 'mlserve promote {name} {done.version} --stage {stage}'")
                record = done.record or versions.read_record(paths, done.version)
        return RegisterResult(model=name, version=done.version, sha256=sha, size=size,
                              artifact_path=versions.artifact_path(paths, record), created=done.created,
                              duplicate_of=done.duplicate_of, stage=placed, warnings=warnings)

    def _place(self, paths: ModelPaths, stage: str, version: str, reason: str | None) -> list[str]:
        link = stages.read_link(paths, stage)
        if link.ok and link.version == version:
            return []
        _event, warnings = stages.set_stage(paths, stage, version, previous=stages.from_version(paths, link),
                                            kind="promote", actor=self.actor, reason=reason or "registered with --stage")
        return warnings

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
        paths = self._existing(name)
        record = versions.read_record(paths, version)
        artifacts.verify_checksum(paths, record, progress)
        with self._writing(name) as paths:
            record = versions.read_record(paths, version)  # still there (gc may have run meanwhile)?
            link = stages.read_link(paths, stage)
            if expect_current is not None:
                stages.check_expected(paths, link, expect_current)
            if requirements:
                state = indexes.read_state(paths, version)
                check_gates(f"{name}:{version}", {**record.metrics, **state.metrics}, requirements)
            if link.ok and link.version == version:
                return PromoteResult(model=name, stage=stage, version=version, previous=version, changed=False,
                                     warnings=[f"{name}@{stage} already holds version {version}"])
            previous = stages.from_version(paths, link)
            warnings = [f"replaced a damaged link: {link.problem(paths)}"] if link.broken else []
            event, more = stages.set_stage(paths, stage, version, previous=previous, kind="promote", actor=self.actor,
                                           reason=reason, details={"require": require} if requirements else None)
        return PromoteResult(model=name, stage=stage, version=version, previous=previous, event_id=event.id,
                             warnings=warnings + more)

    def rollback(self, name: str, *, to: str | None = None, stage: str = PRODUCTION, reason: str | None = None,
                 progress: Progress = NULL_PROGRESS) -> PromoteResult:
        """Put back the version that held ``stage`` before (from the journal), or ``to``."""
        check_stage(stage)
        if to is not None:
            check_version(to)
        paths = self._existing(name)
        events, notes = self._events(paths)
        target = to or self._rollback_target(paths, events, stage)
        record = versions.read_record(paths, target)
        artifacts.verify_checksum(paths, record, progress)
        with self._writing(name) as paths:
            events, notes = self._events(paths)
            if to is None and self._rollback_target(paths, events, stage) != target:
                raise ConflictError(f"{name}@{stage} changed while preparing the rollback; run it again")
            versions.read_record(paths, target)
            link = stages.read_link(paths, stage)
            if link.ok and link.version == target:
                return PromoteResult(model=name, stage=stage, version=target, previous=target, changed=False,
                                     warnings=notes + [f"{name}@{stage} already holds version {target}"])
            previous = stages.from_version(paths, link)
            if link.broken:
                notes.append(f"replaced a damaged link: {link.problem(paths)}")
            event, more = stages.set_stage(paths, stage, target, previous=previous, kind="rollback", actor=self.actor,
                                           reason=reason, details={"mode": "explicit" if to else "previous"})
        return PromoteResult(model=name, stage=stage, version=target, previous=previous, event_id=event.id,
                             warnings=notes + more)

    @staticmethod
    def _rollback_target(paths: ModelPaths, events: list[Event], stage: str) -> str:
        target = journal.rollback_target(events, stage, lambda v: versions.exists(paths, v))
        if target is None:
            raise NotFoundError(f"{paths.name}@{stage} has no earlier version to roll back to",
                                hint=f"use --to VERSION; 'mlserve history {paths.name}' shows what held it")
        return target

    # ------------------------------------------------------------ metadata

    def record_metrics(self, name: str, version: str, metrics: dict[str, float], *, meta: dict | None = None,
                       reason: str | None = None) -> VersionInfo:
        """Add or overwrite recorded metrics (and metadata) of a version; journaled."""
        details = {"metrics": check_metrics(metrics), "meta": check_meta(meta)}
        return self._change_state(name, version, "record-metrics", reason, details)

    def set_meta(self, name: str, version: str, meta: dict[str, Any], *, unset: Iterable[str] = (),
                 metrics: dict[str, float] | None = None, reason: str | None = None) -> VersionInfo:
        """Set (and ``unset``) metadata and record ``metrics`` on a version: one journaled change."""
        details = {"meta": check_meta(meta), "unset": [str(k) for k in unset], "metrics": check_metrics(metrics or {})}
        both = sorted(set(details["meta"]) & set(details["unset"]))
        if both:
            raise UsageError(f"metadata key {both[0]!r} is both set and unset in one change")
        present = self.version_info(name, version).meta
        absent = [k for k in details["unset"] if k not in present]
        details["unset"] = [k for k in details["unset"] if k in present]
        warnings = [f"{name}:{version} has no metadata key {k!r}; nothing to unset" for k in absent]
        if not any(details.values()):  # nothing left to change: nothing is journaled
            info = self.version_info(name, version)
        else:
            info = self._change_state(name, version, "set-meta", reason, details)
        info.warnings = warnings + info.warnings
        return info

    def tag(self, name: str, version: str, tags: Iterable[str], *, remove: bool = False) -> VersionInfo:
        tags = [check_tag(t) for t in tags]
        return self._change_state(name, version, "untag" if remove else "tag", None, {"tags": tags})

    def _change_state(self, name: str, version: str, kind: str, reason: str | None,
                      details: dict[str, Any]) -> VersionInfo:
        check_version(version)
        details = {k: v for k, v in details.items() if v}
        versions.read_record(self._existing(name), version)
        with self._writing(name) as paths:
            versions.read_record(paths, version)
            _event, warnings = indexes.change_state(paths, version, kind, self.actor, reason, details)
        info = self.version_info(name, version)
        info.warnings = warnings + info.warnings
        return info

    def records(self, area: str) -> RecordFolder:
        """The folder of JSON records that ``area`` keeps in this registry (``rollouts``: local rollout state).

        Records are changed under a file lock and written atomically (see :mod:`mlserve.registry.records`);
        the folder is created on the first write. The registry must exist.
        """
        from mlserve.registry.records import RecordFolder

        self.layout.check_readable()
        return RecordFolder(self.root, area, lock_timeout=self.lock_timeout)

    def journal_event(self, name: str, kind: str, details: dict | None = None, *, version: str | None = None,
                      stage: str | None = None, reason: str | None = None) -> Event:
        """Append a custom event (for example a rollout abort) to a model's journal."""
        details = check_meta(details)
        if version is not None:
            versions.read_record(self._existing(name), version)
        with self._writing(name) as paths:
            event = journal.new_event(name, kind, self.actor, version=version, stage=stage, reason=reason,
                                      details=details)
            journal.append(paths, event)
        return event

    # ------------------------------------------------------------ reading

    def resolve(self, ref: str) -> ResolvedVersion:
        """``NAME:VERSION``, ``NAME@STAGE`` or ``NAME`` (production) -> the version and its artifact path."""
        parsed = parse_ref_strict(ref)
        self.layout.check_readable()
        paths = self.layout.model(parsed.model)
        version = parsed.version
        if version is None:
            if not paths.exists():
                raise NotFoundError(f"model {parsed.model!r} not found in registry {self.root}")
            version = stages.strict_holder(paths, parsed.stage or PRODUCTION)
            if version is None:
                raise EmptyStageError(f"{parsed.model}@{parsed.stage} is empty: no version holds that stage",
                                      hint=f"promote one with 'mlserve promote {parsed.model} VERSION --stage {parsed.stage}'")
        record = versions.read_record(paths, version)
        state = indexes.read_state(paths, version)
        return ResolvedVersion(model=record.model, version=record.version, stage=parsed.stage,
                               artifact_path=versions.artifact_path(paths, record), sha256=record.sha256,
                               metrics={**record.metrics, **state.metrics}, meta=indexes.effective_meta(record, state))

    def version_info(self, name: str, version: str) -> VersionInfo:
        self.layout.check_readable()
        paths = self.layout.model(name)
        record = versions.read_record(paths, version)
        state = indexes.read_state(paths, version)
        links, warnings = stages.valid_links(paths)
        held = sorted(s for s, v in links.items() if v == version)
        status = versions.status(held, state)
        pending = self._pending_stage(paths)
        if status == "registered" and pending is not None and pending.from_version == version:
            status = "archived"  # the committed change's follow-ups have not written the archive mark yet
        return VersionInfo(model=name, version=version, seq=record.seq, sha256=record.sha256, size=record.size,
                           artifact_kind=record.artifact_kind, artifact_path=versions.artifact_path(paths, record),
                           file_count=record.file_count, registered_at=record.registered_at,
                           registered_by=record.registered_by, source=record.source, stages=held, status=status,
                           tags=state.tags, metrics={**record.metrics, **state.metrics},
                           meta=indexes.effective_meta(record, state), warnings=warnings)

    def model_summary(self, name: str) -> ModelSummary:
        paths = self._existing(name)
        try:
            index = indexes.read_index(paths)
        except NotFoundError:
            raise CorruptIndexError(f"model index {paths.index} is missing", hint=REPAIR_HINT) from None
        links, warnings = stages.valid_links(paths)
        latest = index.latest
        pending = self._pending_stage(paths)
        if pending is not None and pending.op == "register":
            latest = pending.version
        return ModelSummary(name=name, versions=len(versions.version_names(paths)), latest=latest, stages=links,
                            created_at=index.created_at, warnings=warnings)

    def list_models(self) -> ModelList:
        self.layout.check_readable()
        models = []
        try:
            entries = sorted(os.scandir(self.models_dir), key=lambda e: e.name)
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if entry.is_dir() and not entry.name.startswith(".") and self.layout.model(entry.name).exists():
                models.append(self.model_summary(entry.name))
        return ModelList(registry=self.root, models=models, warnings=[w for m in models for w in m.warnings])

    def list_versions(self, name: str) -> VersionList:
        paths = self._existing(name)
        links, warnings = stages.valid_links(paths)
        stages_of: dict[str, list[str]] = {}
        for stage, version in links.items():
            stages_of.setdefault(version, []).append(stage)
        rows = versions.list_rows(paths, stages_of)
        pending = self._pending_stage(paths)
        if pending is not None and pending.from_version:
            for row in rows:
                if row.version == pending.from_version and row.status == "registered":
                    row.status = "archived"
        return VersionList(model=name, versions=rows, warnings=warnings)

    def events(self, name: str) -> list[Event]:
        """The model's journal, oldest first (damaged lines skipped; a committed change not yet journaled included)."""
        return self._events(self._existing(name))[0]

    def history(self, name: str, *, stage: str | None = None, at: datetime | None = None,
                limit: int | None = None) -> HistoryResult:
        """The journal; with ``at``, also which version held ``stage`` (default production) at that instant."""
        if stage is not None:
            check_stage(stage)
        events, warnings = self._events(self._existing(name))
        holder = None
        if at is not None:
            if at.tzinfo is None:
                at = at.replace(tzinfo=timezone.utc)
            stage = stage or PRODUCTION
            holder = journal.holder_at(events, stage, at)
            events = [e for e in events if e.at <= at]
        if stage is not None:
            events = [e for e in events if e.stage == stage]
        if limit:
            events = events[-limit:]
        return HistoryResult(model=name, events=events, at=at, stage=stage, holder_at=holder, warnings=warnings)

    # ------------------------------------------------------------ gc and verify

    def gc(self, name: str, *, keep: int, dry_run: bool = False) -> GcResult:
        """Remove all but the ``keep`` newest versions, never one that holds a stage, held production
        last before the current holder, or is production's rollback target.

        Removed names are kept as tombstones, so a version name never comes back with other content.
        ``dry_run`` writes nothing (it works on a read-only registry).
        """
        if keep < 0:
            raise UsageError("--keep must be 0 or more")
        paths = self._existing(name)
        warnings: list[str] = []
        if dry_run:
            with self._reading(paths):
                events, warnings = self._events(paths)
                plan = retention.plan(paths, keep, events, stages.valid_links(paths)[0])
        else:
            with self._writing(name) as paths:
                events, warnings = self._events(paths)
                plan = retention.plan(paths, keep, events, stages.valid_links(paths)[0])
                if plan.doomed:
                    _event, more = retention.execute(paths, plan, keep, self.actor)
                    warnings += more
        return GcResult(model=name, keep=keep, dry_run=dry_run, removed=[r.version for r in plan.doomed],
                        kept=plan.kept, protected=plan.protected, freed_bytes=plan.freed, warnings=warnings)

    def verify(self, name: str | None = None, *, repair: bool = False, content: bool = True,
               progress: Progress = NULL_PROGRESS) -> VerifyReport:
        """Check the registry against itself; with ``repair``, rebuild what can be rebuilt (see ``verify``)."""
        from mlserve.registry.verify import verify_registry

        return verify_registry(self.layout, name, repair=repair, content=content, progress=progress,
                               lock_timeout=self.lock_timeout, actor=self.actor)

"""Registry commands: register, promote, rollback, list, show, history, resolve, verify, gc, tag, untag, set-meta.

Every command that takes a model version accepts ``NAME:VERSION`` and ``NAME@STAGE`` the same way
(see :mod:`mlserve.cli._refs`); tables are plain tab-separated lines when stdout is not a terminal.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from mlserve import exitcodes
from mlserve.cli import _refs
from mlserve.cli._options import JsonOpt, LockTimeoutOpt, RegistryOpt
from mlserve.cli._output import emit, progress_for
from mlserve.cli._registry_render import (
    _field,
    _render_gc,
    _render_history,
    _render_info,
    _render_models,
    _render_promote,
    _render_register,
    _render_verify,
    _render_versions,
)
from mlserve.errors import UsageError
from mlserve.registry import Registry

StageOpt = Annotated[Optional[str], typer.Option(
    "--stage", metavar="STAGE", autocompletion=_refs.complete_stage,
    help="Stage to act on (default production; a NAME@STAGE reference sets it too).")]
ReasonOpt = Annotated[Optional[str], typer.Option("--reason", metavar="TEXT", help="Why: recorded in the journal.")]
RefArg = Annotated[str, typer.Argument(metavar="REF", autocompletion=_refs.complete_ref,
                                       help="NAME:VERSION or NAME@STAGE (the version the stage holds).")]
NameArg = Annotated[str, typer.Argument(metavar="NAME", autocompletion=_refs.complete_model, help="Model name.")]


def _reg(registry: Optional[Path], lock_timeout: Optional[float] = None) -> Registry:
    return Registry(registry, lock_timeout=lock_timeout)


def _pairs(items: list[str], what: str, *, numeric: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"bad {what} {item!r}: use KEY=VALUE")
        if numeric:
            try:
                out[key] = float(value)
            except ValueError:
                raise UsageError(f"bad {what} {item!r}: {value!r} is not a number") from None
        else:
            try:
                out[key] = json.loads(value)
            except ValueError:
                out[key] = value
    return out


# ---------------------------------------------------------------- commands


def register(
    ref: Annotated[str, typer.Argument(metavar="NAME", autocompletion=_refs.complete_model,
                                       help="Model name; NAME:VERSION also sets the version, NAME@STAGE the stage.")],
    path: Annotated[Path, typer.Argument(metavar="PATH", help="Artifact: a file or a directory (copied, never moved).")],
    version: Annotated[Optional[str], typer.Option("--version", metavar="VERSION", help="Version (default: the next number).")] = None,
    metric: Annotated[list[str], typer.Option("--metric", "-m", metavar="KEY=NUMBER", help="Metric (repeatable).")] = [],  # noqa: B006
    meta: Annotated[list[str], typer.Option("--meta", metavar="KEY=VALUE", help="Metadata; VALUE may be JSON (repeatable).")] = [],  # noqa: B006
    stage: Annotated[Optional[str], typer.Option("--stage", metavar="STAGE", autocompletion=_refs.complete_stage,
                                                 help="Also put the new version in this stage.")] = None,
    reason: ReasonOpt = None, registry: RegistryOpt = None, lock_timeout: LockTimeoutOpt = None, as_json: JsonOpt = False,
) -> None:
    """Register a new immutable version of a model (copied and sha256-checksummed in one pass).

    \b
    Examples:
      mlserve register churn model.onnx --metric auc=0.91 --meta git_sha=abc123
      mlserve register churn:2026.12.1 model.onnx
    """
    parsed = _refs.parse(ref)
    version = _refs.merge(version, parsed.version, flag="--version", ref=ref)
    stage = _refs.merge(stage, parsed.stage, flag="--stage", ref=ref)
    metrics, metadata = _pairs(metric, "metric", numeric=True), _pairs(meta, "meta")
    result = _reg(registry, lock_timeout).register(parsed.model, path, version=version, metrics=metrics, meta=metadata,
                                                   stage=stage, reason=reason, progress=progress_for(as_json))
    emit("register", result, as_json, _render_register)


def promote(
    ref: Annotated[str, typer.Argument(metavar="REF", autocompletion=_refs.complete_ref,
                                       help="NAME:VERSION, NAME@STAGE (promote what that stage holds) or NAME.")],
    version: Annotated[Optional[str], typer.Argument(metavar="VERSION", help="Version, when REF is a bare NAME.")] = None,
    stage: StageOpt = None, reason: ReasonOpt = None,
    expect_current: Annotated[Optional[str], typer.Option(
        "--expect-current", metavar="VERSION",
        help="Compare-and-swap: fail (exit 4) unless the stage holds this version ('none': empty).")] = None,
    require: Annotated[list[str], typer.Option(
        "--require", metavar="'METRIC>=VALUE'",
        help="Gate on a recorded metric; quote it in a shell (repeatable; exit 6 when not met).")] = [],  # noqa: B006
    registry: RegistryOpt = None, lock_timeout: LockTimeoutOpt = None, as_json: JsonOpt = False,
) -> None:
    """Point a stage at a version after verifying its checksum (an atomic symlink swap, journaled).

    \b
    Examples:
      mlserve promote churn:3 --expect-current 2 --require 'auc>=0.9' --reason "better AUC"
      mlserve promote churn@staging                  # staging's version goes to production
      mlserve promote churn 3 --stage staging
    """
    from mlserve.registry import parse_requirement

    for text in require:
        parse_requirement(text)  # a typo is a usage error before the registry is touched
    reg = _reg(registry, lock_timeout)
    name, version = _refs.version_of(reg, ref, version, command="promote")
    result = reg.promote(name, version, stage=stage or "production", reason=reason, expect_current=expect_current,
                         require=require, progress=progress_for(as_json))
    emit("promote", result, as_json, _render_promote)


def rollback(
    ref: Annotated[str, typer.Argument(metavar="REF", autocompletion=_refs.complete_ref,
                                       help="NAME, NAME@STAGE (that stage) or NAME:VERSION (back to that version).")],
    to: Annotated[Optional[str], typer.Option("--to", metavar="VERSION",
                                              help="Version to go back to (default: the previous holder).")] = None,
    stage: StageOpt = None, reason: ReasonOpt = None,
    registry: RegistryOpt = None, lock_timeout: LockTimeoutOpt = None, as_json: JsonOpt = False,
) -> None:
    """Put back the version that held the stage before (from the journal), after verifying its checksum.

    \b
    Examples:
      mlserve rollback churn --reason "p99 regression"
      mlserve rollback churn@staging
      mlserve rollback churn:2                       # production goes back to version 2
    """
    parsed = _refs.parse(ref)
    stage = _refs.merge(stage, parsed.stage, flag="--stage", ref=ref) or "production"
    to = _refs.merge(to, parsed.version, flag="--to", ref=ref)
    result = _reg(registry, lock_timeout).rollback(parsed.model, to=to, stage=stage, reason=reason,
                                                   progress=progress_for(as_json))
    emit("rollback", result, as_json, _render_promote)


def list_(
    name: Annotated[Optional[str], typer.Argument(metavar="NAME", autocompletion=_refs.complete_model,
                                                  help="Model name: list its versions (default: list models).")] = None,
    registry: RegistryOpt = None, as_json: JsonOpt = False,
) -> None:
    """List models, or the versions of one model (tab-separated when stdout is not a terminal).

    \b
    Examples:
      mlserve list
      mlserve list churn --json
    """
    reg = _reg(registry)
    if name is None:
        emit("model-list", reg.list_models(), as_json, _render_models)
    else:
        emit("version-list", reg.list_versions(_refs.model_only(name, "list")), as_json, _render_versions)


def show(
    ref: Annotated[str, typer.Argument(metavar="REF", autocompletion=_refs.complete_ref,
                                       help="NAME, NAME:VERSION or NAME@STAGE.")],
    field: Annotated[Optional[str], typer.Option(
        "--field", metavar="FIELD",
        help="Print only this field (sha256, artifact_path, version, stages, metrics.NAME, meta.KEY ...).")] = None,
    registry: RegistryOpt = None, as_json: JsonOpt = False,
) -> None:
    """Show a model, or one version with its checksum, stages, metrics and metadata.

    \b
    Examples:
      mlserve show churn@production
      mlserve show churn:3 --field sha256
    """
    reg = _reg(registry)
    parsed = _refs.parse(ref)
    if parsed.version is None and parsed.stage is None:
        kind, result = "model", reg.model_summary(parsed.model)
    else:
        kind, result = "version", reg.version_info(*_refs.version_of(reg, ref, command="show"))
    if field is not None and not as_json:
        print(_field(result.model_dump(mode="json"), field))
        return
    emit(kind, result, as_json, _render_info)


def history(
    ref: Annotated[str, typer.Argument(metavar="REF", autocompletion=_refs.complete_ref,
                                       help="NAME, NAME@STAGE (that stage's events) or NAME:VERSION (that version's).")],
    stage: Annotated[Optional[str], typer.Option("--stage", metavar="STAGE", autocompletion=_refs.complete_stage,
                                                 help="Only events of this stage.")] = None,
    at: Annotated[Optional[datetime], typer.Option(
        "--at", metavar="TIME",
        help="Answer 'which version held the stage (default production) at this time?' (ISO 8601).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, metavar="N", help="Only the last N events.")] = None,
    registry: RegistryOpt = None, as_json: JsonOpt = False,
) -> None:
    """Show the model's journal: who changed what, when, why, from and to.

    \b
    Examples:
      mlserve history churn@production --limit 10
      mlserve history churn --at 2026-01-31T12:00:00Z
    """
    parsed = _refs.parse(ref)
    stage = _refs.merge(stage, parsed.stage, flag="--stage", ref=ref)
    result = _reg(registry).history(parsed.model, stage=stage, at=at, limit=None if parsed.version else limit)
    if parsed.version is not None:
        wanted = parsed.version
        result.events = [e for e in result.events if wanted in (e.version, e.from_version, e.to_version)]
        result.events = result.events[-limit:] if limit else result.events
    emit("history", result, as_json, _render_history)


def resolve(
    ref: Annotated[str, typer.Argument(metavar="REF", autocompletion=_refs.complete_ref,
                                       help="NAME@STAGE, NAME:VERSION or NAME (= NAME@production).")],
    registry: RegistryOpt = None, as_json: JsonOpt = False,
) -> None:
    """Print the artifact path of a reference; exit 3 when the stage is empty.

    \b
    Example:
      MODEL=$(mlserve resolve churn@production)
    """
    emit("resolve", _reg(registry).resolve(ref), as_json, lambda out, r: print(r.artifact_path))


def verify(
    name: Annotated[Optional[str], typer.Argument(metavar="NAME", autocompletion=_refs.complete_model,
                                                  help="Model name (default: the whole registry).")] = None,
    repair: Annotated[bool, typer.Option("--repair", help="Rebuild derived files, restore links, remove leftovers.")] = False,
    content: Annotated[bool, typer.Option("--content/--no-content", help="Re-hash every artifact (slow on big ones).")] = True,
    registry: RegistryOpt = None, lock_timeout: LockTimeoutOpt = None, as_json: JsonOpt = False,
) -> None:
    """Check checksums, indexes against symlinks and journal, and leftovers; exit 5 when problems remain.

    \b
    Examples:
      mlserve verify --no-content
      mlserve verify churn --repair
    """
    model = _refs.model_only(name, "verify") if name is not None else None
    result = _reg(registry, lock_timeout).verify(model, repair=repair, content=content, progress=progress_for(as_json))
    emit("verify", result, as_json, _render_verify)
    if not result.ok:
        raise typer.Exit(exitcodes.INTEGRITY)


def gc(
    name: NameArg,
    keep: Annotated[int, typer.Option("--keep", min=0, metavar="N", help="How many of the newest versions to keep.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be removed.")] = False,
    registry: RegistryOpt = None, lock_timeout: LockTimeoutOpt = None, as_json: JsonOpt = False,
) -> None:
    """Remove old versions; never one that holds a stage, last held production, or is the rollback target.

    \b
    Example:
      mlserve gc churn --keep 5 --dry-run
    """
    emit("gc", _reg(registry, lock_timeout).gc(_refs.model_only(name, "gc"), keep=keep, dry_run=dry_run), as_json,
         _render_gc)


def tag(
    ref: RefArg,
    tags: Annotated[list[str], typer.Argument(metavar="TAG", help="Tags to add.")],
    registry: RegistryOpt = None, lock_timeout: LockTimeoutOpt = None, as_json: JsonOpt = False,
) -> None:
    """Add tags to a version (journaled).

    \b
    Examples:
      mlserve tag churn:3 reviewed gdpr-ok
      mlserve tag churn@production audited
    """
    reg = _reg(registry, lock_timeout)
    emit("version", reg.tag(*_refs.version_of(reg, ref, command="tag"), tags), as_json, _render_info)


def untag(
    ref: RefArg,
    tags: Annotated[list[str], typer.Argument(metavar="TAG", help="Tags to remove.")],
    registry: RegistryOpt = None, lock_timeout: LockTimeoutOpt = None, as_json: JsonOpt = False,
) -> None:
    """Remove tags from a version (journaled).

    \b
    Example:
      mlserve untag churn:3 reviewed
    """
    reg = _reg(registry, lock_timeout)
    emit("version", reg.tag(*_refs.version_of(reg, ref, command="untag"), tags, remove=True), as_json, _render_info)


def set_meta(
    ref: RefArg,
    pairs: Annotated[Optional[list[str]], typer.Argument(metavar="KEY=VALUE", help="Metadata (VALUE may be JSON).")] = None,
    metric: Annotated[list[str], typer.Option("--metric", "-m", metavar="KEY=NUMBER", help="Record a metric (repeatable).")] = [],  # noqa: B006
    unset: Annotated[list[str], typer.Option("--unset", metavar="KEY", help="Remove a metadata key (repeatable).")] = [],  # noqa: B006
    reason: ReasonOpt = None, registry: RegistryOpt = None, lock_timeout: LockTimeoutOpt = None, as_json: JsonOpt = False,
) -> None:
    """Set metadata and record metrics on a version in one journaled change; the artifact stays immutable.

    \b
    Examples:
      mlserve set-meta churn:3 owner=ml-team --metric latency_p50_ms=1.8
      mlserve set-meta churn@production --unset owner
    """
    meta, metrics = _pairs(pairs or [], "metadata"), _pairs(metric, "metric", numeric=True)
    reg = _reg(registry, lock_timeout)
    name, version = _refs.version_of(reg, ref, command="set-meta")
    emit("version", reg.set_meta(name, version, meta, unset=unset, metrics=metrics, reason=reason), as_json, _render_info)

"""Registry commands: register, promote, rollback, list, show, history, resolve, verify, gc, tag, untag, set-meta."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from mlserve.cli._options import JsonOpt, LockTimeoutOpt, RegistryOpt
from mlserve.cli._output import emit, progress_for
from mlserve import exitcodes
from mlserve.errors import UsageError
from mlserve.registry import Registry, parse_ref_strict

StageOpt = Annotated[str, typer.Option("--stage", help="Stage to act on (a version may hold several stages).")]
ReasonOpt = Annotated[Optional[str], typer.Option("--reason", help="Why: recorded in the journal.")]


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


def _name_version(ref: str) -> tuple[str, str]:
    parsed = parse_ref_strict(ref, default_stage=None)
    if parsed.version is None:
        raise UsageError(f"{ref!r} names no version: use NAME:VERSION")
    return parsed.model, parsed.version


def _short(sha: str) -> str:
    return sha[:12]


def _when(at: datetime) -> str:
    # UTC with its zone, so a time read off a table can be typed back into --at unchanged
    from datetime import timezone

    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- renderers


def _render_register(out: Console, r: Any) -> None:
    verb = "registered" if r.created else "already registered as"
    stage = f" (stage {r.stage})" if r.stage else ""
    out.print(f"{verb} {r.model}:{r.version} sha256:{_short(r.sha256)} {r.size} bytes{stage}")


def _render_promote(out: Console, r: Any) -> None:
    if not r.changed:
        out.print(f"{r.model}@{r.stage} already at {r.version}")
    else:
        out.print(f"{r.model}@{r.stage}: {r.previous or '(empty)'} -> {r.version}")


def _render_models(out: Console, r: Any) -> None:
    out.print(f"registry {r.registry}", markup=False)
    table = Table("model", "versions", "latest", "stages")
    for m in r.models:
        table.add_row(m.name, str(m.versions), m.latest or "-",
                      ", ".join(f"{s}={v}" for s, v in sorted(m.stages.items())) or "-")
    out.print(table)


PLAIN_ROWS = 200
"""Above this many rows a table is printed as plain aligned text: rich needs seconds for 10,000 rows."""


def _plain_table(out: Console, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    out.file.write("\n".join(lines) + "\n")


def _render_versions(out: Console, r: Any) -> None:
    header = ["version", "registered", "sha256", "size", "status", "stages", "tags"]
    rows = [[v.version, _when(v.registered_at), _short(v.sha256), str(v.size), v.status, ", ".join(v.stages) or "-",
             ", ".join(v.tags) or "-"] for v in r.versions]
    if len(rows) > PLAIN_ROWS:
        _plain_table(out, header, rows)
        return
    table = Table(*header)
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _render_info(out: Console, r: Any) -> None:
    if hasattr(r, "seq"):
        rows = [("model", r.model), ("version", r.version), ("status", r.status), ("stages", ", ".join(r.stages) or "-"),
                ("sha256", r.sha256), ("size", str(r.size)), ("artifact", str(r.artifact_path)),
                ("registered", f"{_when(r.registered_at)} by {r.registered_by}"), ("source", r.source),
                ("tags", ", ".join(r.tags) or "-")]
        rows += [(f"metric {k}", f"{v:g}") for k, v in sorted(r.metrics.items())]
        rows += [(f"meta {k}", json.dumps(v) if not isinstance(v, str) else v) for k, v in sorted(r.meta.items())]
    else:
        rows = [("model", r.name), ("versions", str(r.versions)), ("latest", r.latest or "-"),
                ("created", _when(r.created_at))] + [(f"stage {s}", v) for s, v in sorted(r.stages.items())]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        out.print(f"{key:<{width}}  {value}", markup=False)


def _render_history(out: Console, r: Any) -> None:
    if r.at is not None:
        out.print(f"{r.model}@{r.stage} at {r.at.isoformat()}: {r.holder_at or '(empty)'}")
        return
    table = Table("when", "event", "stage", "from", "to", "version", "who", "reason")
    for e in r.events:
        table.add_row(_when(e.at), e.kind, e.stage or "-", e.from_version or "-", e.to_version or "-",
                      e.version or "-", e.actor, e.reason or "")
    out.print(table)


def _render_verify(out: Console, r: Any) -> None:
    for p in r.problems:
        state = "repaired" if p.repaired else ("repairable" if p.repairable else "NOT repairable")
        where = f"{p.model}:{p.version}" if p.version else (p.model or "registry")
        out.print(f"{where}: {p.kind}: {p.message} [{state}]")
    verdict = "clean" if not r.problems else ("repaired" if r.ok else f"{sum(not p.repaired for p in r.problems)} problem(s)")
    out.print(f"verified {r.models_checked} model(s), {r.versions_checked} version(s): {verdict}")


def _render_gc(out: Console, r: Any) -> None:
    verb = "would remove" if r.dry_run else "removed"
    out.print(f"{verb} {len(r.removed)} version(s) of {r.model}: {', '.join(r.removed) or '-'} ({r.freed_bytes} bytes)")
    for version, why in sorted(r.protected.items()):
        out.print(f"kept {version}: {why}")


# ---------------------------------------------------------------- commands


def register(
    name: Annotated[str, typer.Argument(help="Model name.")],
    path: Annotated[Path, typer.Argument(help="Artifact: a file or a directory (copied, never moved).")],
    version: Annotated[Optional[str], typer.Option("--version", "-v", help="Version (default: next number).")] = None,
    metric: Annotated[list[str], typer.Option("--metric", "-m", help="Metric KEY=NUMBER (repeatable).")] = [],  # noqa: B006
    meta: Annotated[list[str], typer.Option("--meta", help="Metadata KEY=VALUE, VALUE may be JSON (repeatable).")] = [],  # noqa: B006
    stage: Annotated[Optional[str], typer.Option("--stage", help="Also put the new version in this stage.")] = None,
    reason: ReasonOpt = None, registry: RegistryOpt = None, lock_timeout: LockTimeoutOpt = None, as_json: JsonOpt = False,
) -> None:
    """Register a new immutable version of a model (copied and sha256-checksummed in one pass).

    Example: mlserve register churn model.onnx --metric auc=0.91 --meta git_sha=abc123
    """
    result = _reg(registry, lock_timeout).register(
        name, path, version=version, metrics=_pairs(metric, "metric", numeric=True), meta=_pairs(meta, "meta"),
        stage=stage, reason=reason, progress=progress_for(as_json))
    emit("register", result, as_json, _render_register)


def promote(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[str, typer.Argument(help="Version to promote.")],
    stage: StageOpt = "production", reason: ReasonOpt = None,
    expect_current: Annotated[Optional[str], typer.Option(
        "--expect-current", help="Compare-and-swap: fail (exit 4) unless the stage holds this version ('none': empty).")] = None,
    require: Annotated[list[str], typer.Option(
        "--require", help="Gate on a recorded metric, e.g. 'auc>=0.9' (repeatable; exit 6 when not met).")] = [],  # noqa: B006
    registry: RegistryOpt = None, lock_timeout: LockTimeoutOpt = None, as_json: JsonOpt = False,
) -> None:
    """Point a stage at a version after verifying its checksum (an atomic symlink swap, journaled).

    Example: mlserve promote churn 3 --expect-current 2 --require auc>=0.9 --reason "better AUC"
    """
    result = _reg(registry, lock_timeout).promote(name, version, stage=stage, reason=reason,
                                                  expect_current=expect_current, require=require,
                                                  progress=progress_for(as_json))
    emit("promote", result, as_json, _render_promote)


def rollback(
    name: Annotated[str, typer.Argument(help="Model name.")],
    to: Annotated[Optional[str], typer.Option("--to", help="Version to go back to (default: the previous holder).")] = None,
    stage: StageOpt = "production", reason: ReasonOpt = None,
    registry: RegistryOpt = None, lock_timeout: LockTimeoutOpt = None, as_json: JsonOpt = False,
) -> None:
    """Put back the version that held the stage before (from the journal), after verifying its checksum.

    Example: mlserve rollback churn --reason "p99 regression"
    """
    result = _reg(registry, lock_timeout).rollback(name, to=to, stage=stage, reason=reason,
                                                   progress=progress_for(as_json))
    emit("rollback", result, as_json, _render_promote)


def list_(
    name: Annotated[Optional[str], typer.Argument(help="Model name: list its versions (default: list models).")] = None,
    registry: RegistryOpt = None, as_json: JsonOpt = False,
) -> None:
    """List models, or the versions of one model.

    Example: mlserve list churn --json
    """
    reg = _reg(registry)
    if name is None:
        emit("model-list", reg.list_models(), as_json, _render_models)
    else:
        emit("version-list", reg.list_versions(name), as_json, _render_versions)


def show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@STAGE.")],
    registry: RegistryOpt = None, as_json: JsonOpt = False,
) -> None:
    """Show a model, or one version with its checksum, stages, metrics and metadata.

    Example: mlserve show churn@production
    """
    reg = _reg(registry)
    parsed = parse_ref_strict(ref, default_stage=None)
    if parsed.version is None and parsed.stage is None:
        emit("model", reg.model_summary(parsed.model), as_json, _render_info)
        return
    version = parsed.version or reg.resolve(ref).version
    emit("version", reg.version_info(parsed.model, version), as_json, _render_info)


def history(
    name: Annotated[str, typer.Argument(help="Model name.")],
    stage: Annotated[Optional[str], typer.Option("--stage", help="Only events of this stage.")] = None,
    at: Annotated[Optional[datetime], typer.Option(
        "--at", help="Answer 'which version held the stage (default production) at this time?' (ISO 8601).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Only the last N events.")] = None,
    registry: RegistryOpt = None, as_json: JsonOpt = False,
) -> None:
    """Show the model's journal: who changed what, when, why, from and to.

    Example: mlserve history churn --at 2026-01-31T12:00:00Z
    """
    result = _reg(registry).history(name, stage=stage, at=at, limit=limit)
    emit("history", result, as_json, _render_history)


def resolve(
    ref: Annotated[str, typer.Argument(help="NAME@STAGE, NAME:VERSION or NAME (= NAME@production).")],
    registry: RegistryOpt = None, as_json: JsonOpt = False,
) -> None:
    """Print the artifact path of a reference; exit 3 when the stage is empty.

    Example: MODEL=$(mlserve resolve churn@production)
    """
    emit("resolve", _reg(registry).resolve(ref), as_json, lambda out, r: print(r.artifact_path))


def verify(
    name: Annotated[Optional[str], typer.Argument(help="Model name (default: the whole registry).")] = None,
    repair: Annotated[bool, typer.Option("--repair", help="Remove leftovers of interrupted writes and fix the index.")] = False,
    content: Annotated[bool, typer.Option("--content/--no-content", help="Re-hash every artifact (slow on big ones).")] = True,
    registry: RegistryOpt = None, lock_timeout: LockTimeoutOpt = None, as_json: JsonOpt = False,
) -> None:
    """Check checksums, index against symlinks, and leftovers; exit 5 when problems remain.

    Example: mlserve verify --repair
    """
    result = _reg(registry, lock_timeout).verify(name, repair=repair, content=content, progress=progress_for(as_json))
    emit("verify", result, as_json, _render_verify)
    if not result.ok:
        raise typer.Exit(exitcodes.INTEGRITY)


def gc(
    name: Annotated[str, typer.Argument(help="Model name.")],
    keep: Annotated[int, typer.Option("--keep", help="How many of the newest versions to keep.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be removed.")] = False,
    registry: RegistryOpt = None, lock_timeout: LockTimeoutOpt = None, as_json: JsonOpt = False,
) -> None:
    """Remove old versions; never one that holds a stage, last held production, or is the rollback target.

    Example: mlserve gc churn --keep 5 --dry-run
    """
    emit("gc", _reg(registry, lock_timeout).gc(name, keep=keep, dry_run=dry_run), as_json, _render_gc)


def tag(
    ref: Annotated[str, typer.Argument(help="NAME:VERSION.")],
    tags: Annotated[list[str], typer.Argument(help="Tags to add.")],
    registry: RegistryOpt = None, lock_timeout: LockTimeoutOpt = None, as_json: JsonOpt = False,
) -> None:
    """Add tags to a version (journaled).

    Example: mlserve tag churn:3 reviewed gdpr-ok
    """
    emit("version", _reg(registry, lock_timeout).tag(*_name_version(ref), tags), as_json, _render_info)


def untag(
    ref: Annotated[str, typer.Argument(help="NAME:VERSION.")],
    tags: Annotated[list[str], typer.Argument(help="Tags to remove.")],
    registry: RegistryOpt = None, lock_timeout: LockTimeoutOpt = None, as_json: JsonOpt = False,
) -> None:
    """Remove tags from a version (journaled).

    Example: mlserve untag churn:3 reviewed
    """
    emit("version", _reg(registry, lock_timeout).tag(*_name_version(ref), tags, remove=True), as_json, _render_info)


def set_meta(
    ref: Annotated[str, typer.Argument(help="NAME:VERSION.")],
    pairs: Annotated[Optional[list[str]], typer.Argument(help="KEY=VALUE pairs (VALUE may be JSON).")] = None,
    metric: Annotated[list[str], typer.Option("--metric", "-m", help="Record a metric KEY=NUMBER (repeatable).")] = [],  # noqa: B006
    unset: Annotated[list[str], typer.Option("--unset", help="Remove a metadata key (repeatable).")] = [],  # noqa: B006
    reason: ReasonOpt = None, registry: RegistryOpt = None, lock_timeout: LockTimeoutOpt = None, as_json: JsonOpt = False,
) -> None:
    """Set metadata (and record metrics) on a version after registration; the artifact stays immutable.

    Example: mlserve set-meta churn:3 owner=ml-team --metric latency_p50_ms=1.8
    """
    reg = _reg(registry, lock_timeout)
    name, version = _name_version(ref)
    meta = _pairs(pairs or [], "metadata")
    if metric:
        reg.record_metrics(name, version, _pairs(metric, "metric", numeric=True), reason=reason)
    result = reg.set_meta(name, version, meta, unset=unset, reason=reason) if (meta or unset or not metric) \
        else reg.version_info(name, version)
    emit("version", result, as_json, _render_info)


def install(app: typer.Typer) -> None:
    """Add the registry commands to the root app."""
    panel = "Registry"
    for func, name in [(register, "register"), (promote, "promote"), (rollback, "rollback"), (list_, "list"),
                       (show, "show"), (history, "history"), (resolve, "resolve"), (verify, "verify"), (gc, "gc"),
                       (tag, "tag"), (untag, "untag"), (set_meta, "set-meta")]:
        app.command(name, rich_help_panel=panel)(func)

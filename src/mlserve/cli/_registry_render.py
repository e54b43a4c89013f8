"""How registry results look on stdout: shared by the registry commands and the fast path (no typer here)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from mlserve.cli._output import plain_output, print_table
from mlserve.errors import UsageError


def _short(sha: str) -> str:
    return sha if plain_output() else sha[:12]


def _when(at: datetime) -> str:
    # UTC with its zone, so a time read off a table can be typed back into --at unchanged
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- renderers


def _render_register(out: Any, r: Any) -> None:
    verb = "registered" if r.created else "already registered as"
    stage = f" (stage {r.stage})" if r.stage else ""
    out.print(f"{verb} {r.model}:{r.version} sha256:{_short(r.sha256)} {r.size} bytes{stage}", markup=False)


def _render_promote(out: Any, r: Any) -> None:
    if not r.changed:
        out.print(f"{r.model}@{r.stage} already at {r.version}", markup=False)
    else:
        out.print(f"{r.model}@{r.stage}: {r.previous or '(empty)'} -> {r.version}", markup=False)


def _render_models(out: Any, r: Any) -> None:
    if not plain_output():
        out.print(f"registry {r.registry}", markup=False)
    print_table(out, ["model", "versions", "latest", "stages"],
                [[m.name, m.versions, m.latest or "-", ", ".join(f"{s}={v}" for s, v in sorted(m.stages.items())) or "-"]
                 for m in r.models], right={"versions"})


def _render_versions(out: Any, r: Any) -> None:
    print_table(out, ["version", "registered", "sha256", "size", "status", "stages", "tags"],
                [[v.version, _when(v.registered_at), _short(v.sha256), v.size, v.status, ", ".join(v.stages) or "-",
                  ", ".join(v.tags) or "-"] for v in r.versions], right={"size"})


def _info_rows(r: Any) -> list[list[str]]:
    if hasattr(r, "seq"):
        rows = [["model", r.model], ["version", r.version], ["status", r.status], ["stages", ", ".join(r.stages) or "-"],
                ["sha256", r.sha256], ["size", str(r.size)], ["artifact", str(r.artifact_path)],
                ["registered", f"{_when(r.registered_at)} by {r.registered_by}"], ["source", r.source],
                ["tags", ", ".join(r.tags) or "-"]]
        rows += [[f"metric {k}", f"{v:g}"] for k, v in sorted(r.metrics.items())]
        rows += [[f"meta {k}", json.dumps(v) if not isinstance(v, str) else v] for k, v in sorted(r.meta.items())]
        return rows
    return [["model", r.name], ["versions", str(r.versions)], ["latest", r.latest or "-"],
            ["created", _when(r.created_at)]] + [[f"stage {s}", v] for s, v in sorted(r.stages.items())]


def _render_info(out: Any, r: Any) -> None:
    rows = _info_rows(r)
    if plain_output():
        print_table(out, ["field", "value"], rows)
        return
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        out.print(f"{key:<{width}}  {value}", markup=False)


def _render_history(out: Any, r: Any) -> None:
    if r.at is not None:
        out.print(f"{r.model}@{r.stage} at {_when(r.at)}: {r.holder_at or '(empty)'}", markup=False)
        return
    print_table(out, ["when", "event", "stage", "from", "to", "version", "who", "reason"],
                [[_when(e.at), e.kind, e.stage or "-", e.from_version or "-", e.to_version or "-", e.version or "-",
                  e.actor, e.reason or ""] for e in r.events])


def _render_verify(out: Any, r: Any) -> None:
    for p in r.problems:
        state = "repaired" if p.repaired else ("repairable" if p.repairable else "NOT repairable")
        where = f"{p.model}:{p.version}" if p.version else (p.model or "registry")
        out.print(f"{where}: {p.kind}: {p.message} [{state}]", markup=False)
    verdict = "clean" if not r.problems else ("repaired" if r.ok else f"{sum(not p.repaired for p in r.problems)} problem(s)")
    out.print(f"verified {r.models_checked} model(s), {r.versions_checked} version(s): {verdict}", markup=False)


def _render_gc(out: Any, r: Any) -> None:
    verb = "would remove" if r.dry_run else "removed"
    out.print(f"{verb} {len(r.removed)} version(s) of {r.model}: {', '.join(r.removed) or '-'} ({r.freed_bytes} bytes)",
              markup=False)
    for version, why in sorted(r.protected.items()):
        out.print(f"kept {version}: {why}", markup=False)


def _field(doc: dict[str, Any], field: str) -> str:
    """One field of a result document, by dotted path (``metrics.auc``): a scalar as is, lists one item per line."""
    node: Any = doc
    for part in field.split("."):
        if not isinstance(node, dict) or part not in node:
            known = sorted(k for k in doc if k != "warnings")
            raise UsageError(f"no field {field!r}", hint="fields: " + ", ".join(known) +
                             " (and metrics.NAME, meta.KEY)")
        node = node[part]
    if isinstance(node, list):
        return "\n".join(str(item) for item in node)
    if isinstance(node, dict):
        return json.dumps(node, sort_keys=True)
    return "" if node is None else str(node)

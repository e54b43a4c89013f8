"""One guarded change of one object: read it, compute the operations from it, send them behind its guard.

A conflict (409, or a resourceVersion guard that failed because the object changed since it was
read) reads again and recomputes. A refusal that is not a conflict (the object did not change, so
the server refused the patch itself; or a 422 naming a field) is reported with what the server
said, never as "another writer". When a writer really keeps winning, the object's
``managedFields`` say who: that name is in the message.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from mlserve.errors import ApiRejectedError, ConflictError, NotFoundError, PatchNotAppliedError
from mlserve.rollout.ops import Op, changes_only, guarded
from mlserve.rollout.results import PlannedChange

CONFLICT_RETRIES = 5
FIELD_MANAGER = "mlserve"


def other_writers(obj: dict[str, Any] | None, *, exclude: str = FIELD_MANAGER) -> list[tuple[str, str]]:
    """(field manager, time of its last write) of every other client that wrote ``obj``, newest first."""
    fields = ((obj or {}).get("metadata") or {}).get("managedFields") or []
    entries = [(str(e.get("manager", "?")), str(e.get("time", "")), i) for i, e in enumerate(fields)
               if e.get("manager") != exclude and not e.get("subresource")]
    # times have a resolution of one second: among equal ones, the entry updated last comes last in the list
    return [(m, t) for m, t, _ in sorted(entries, key=lambda e: (e[1], e[2]), reverse=True)]


def last_writer(obj: dict[str, Any] | None) -> str:
    writers = other_writers(obj)
    if not writers:
        return "another client"
    manager, at = writers[0]
    return f"{manager}" + (f" (last write {at})" if at else "")


def _rv(obj: dict[str, Any] | None) -> str | None:
    return ((obj or {}).get("metadata") or {}).get("resourceVersion")


def patch_object(store: Any, kind: str, name: str, namespace: str, compute: Callable[[dict[str, Any]], list[Op]], *,
                 why: str, dry_run: bool = False, sleep: Callable[[float], None] | None = None,
                 retries: int = CONFLICT_RETRIES) -> PlannedChange | None:
    """Apply ``compute(obj)`` to the object; None when there was nothing to change. See :func:`patch_and_read`."""
    return patch_and_read(store, kind, name, namespace, compute, why=why, dry_run=dry_run, sleep=sleep, retries=retries)[1]


def patch_and_read(store: Any, kind: str, name: str, namespace: str, compute: Callable[[dict[str, Any]], list[Op]], *,
                   why: str, dry_run: bool = False, sleep: Callable[[float], None] | None = None,
                   retries: int = CONFLICT_RETRIES) -> tuple[dict[str, Any] | None, PlannedChange | None]:
    """(the object after the change, the change) — the object is None in a dry run of something not yet created."""
    last = ""
    obj: dict[str, Any] | None = None
    for attempt in range(retries + 1):
        obj = store.get(kind, name, namespace)
        if obj is None and dry_run:
            return None, None  # created by an earlier (dry-run) step: nothing to validate against
        if obj is None:
            raise NotFoundError(f"{kind} {namespace}/{name} disappeared during the rollout")
        ops = changes_only(compute(obj))
        if not ops:
            return obj, None
        try:
            result = store.patch(kind, name, namespace, guarded(obj, ops), dry_run=dry_run)
        except PatchNotAppliedError as exc:
            now = store.get(kind, name, namespace)
            if now is None or _rv(now) == _rv(obj):
                raise ApiRejectedError(
                    f"the API server refused the patch of {kind} {namespace}/{name} ({why}) although the object had not "
                    f"changed: {exc.message}; the patch was {json.dumps(ops, ensure_ascii=False)[:600]}",
                    details=exc.details) from None
            last = f"it changed since it was read ({last_writer(now)})"
        except ConflictError as exc:
            last = exc.message
        else:
            return result, PlannedChange(stage=why, action="patch", kind=kind, name=name, ops=ops)
        if sleep is not None:
            sleep(0.05 * (attempt + 1))
    raise ConflictError(f"{kind} {namespace}/{name} kept changing under us ({retries + 1} attempts; last: {last})",
                        hint=f"{last_writer(obj)} is writing it at the same time; stop it during the rollout "
                             "(a GitOps controller: pause its sync, or use --manifests)")

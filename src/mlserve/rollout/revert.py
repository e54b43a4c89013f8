"""Putting everything back as the snapshot recorded it: traffic first (abort) or capacity first (undo).

:func:`revert` re-applies the snapshot once; :func:`revert_within` keeps trying, with backoff, for
as long as its budget allows (``--revert-timeout``, 5 minutes by default): an API server that is
down for a few seconds must not leave traffic on a canary until someone runs ``abort``. When the
budget is spent it says which objects are still not back.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

from mlserve.errors import ConflictError, InfrastructureError, MlserveError
from mlserve.rollout.jsonpatch import apply_patch
from mlserve.rollout.ops import Op, restore_ops
from mlserve.rollout.patching import patch_object
from mlserve.rollout.results import PlannedChange
from mlserve.rollout.state import ObjectSnapshot, RolloutState
from mlserve.rollout.strategies import router_of


class RevertIncomplete(InfrastructureError):
    """The snapshot could not be re-applied; ``left`` names the objects that are not back."""

    def __init__(self, message: str, left: list[str], done: list[PlannedChange]) -> None:
        super().__init__(message)
        self.left = left
        self.done = done


def _order(state: RolloutState, *, undo: bool) -> list[ObjectSnapshot]:
    traffic = [s for s in state.snapshot if s.role == "traffic" and not s.created]
    created_traffic = [s for s in state.snapshot if s.role == "traffic" and s.created]
    workloads = [s for s in state.snapshot if s.role == "workload" and not s.created]
    created = [s for s in state.snapshot if s.created and s.role != "traffic"]
    if undo:
        # capacity first: what was scaled down comes back (and is ready) before traffic moves
        first = [s for s in workloads if s.name == state.stable and any(f.path == "/spec/replicas" and f.present for f in s.fields)]
        return first + created_traffic + traffic + [s for s in workloads if s not in first] + created
    return created_traffic + traffic + workloads + created


def _restore_ops(snap: ObjectSnapshot, obj: dict[str, Any], state: RolloutState) -> list[Op]:
    """The operations that put ``snap``'s fields back, newest slot first (list indices stay right)."""
    sim = copy.deepcopy(obj)
    ops: list[Op] = []
    for f in reversed(snap.fields):
        more = restore_ops(sim, f.path, f.present, f.value)
        if more:
            sim = apply_patch(sim, more, in_place=False)
            ops += more
    # a split router (canary, or the local target's two variants) always ends with no traffic on the canary
    router = router_of(state) if snap.role == "traffic" and (state.strategy == "canary" or snap.kind == "Split") else None
    if router is not None:
        try:
            if router.weight(sim) != 0:
                ops += router.weight_ops(sim, 0)  # never leave traffic on a canary
        except MlserveError:
            pass  # the object no longer has the shape the router manages: the snapshot is all we can do
    return ops


def revert(store: Any, state: RolloutState, *, undo: bool = False, dry_run: bool = False,
           wait_ready: Callable[[str], None] | None = None, warnings: list[str] | None = None,
           sleep: Callable[[float], None] | None = None) -> list[PlannedChange]:
    """Re-apply the snapshot once; :class:`RevertIncomplete` on the first object that cannot be restored."""
    ns = state.namespace
    done: list[PlannedChange] = []
    order = _order(state, undo=undo)
    for position, snap in enumerate(order):
        try:
            if snap.created:
                if store.get(snap.kind, snap.name, ns) is not None:
                    if not dry_run:
                        store.delete(snap.kind, snap.name, ns)
                    done.append(PlannedChange(stage="revert", action="delete", kind=snap.kind, name=snap.name))
                continue
            if store.get(snap.kind, snap.name, ns) is None:
                if warnings is not None:
                    warnings.append(f"{snap.kind} {ns}/{snap.name} no longer exists; nothing to restore")
                continue
            change = patch_object(store, snap.kind, snap.name, ns, lambda obj, s=snap: _restore_ops(s, obj, state),
                                  why="revert", dry_run=dry_run, sleep=sleep)
            if change is not None:
                done.append(change)
            if undo and wait_ready is not None and position == 0 and snap.name == state.stable:
                wait_ready(snap.name)
        except (InfrastructureError, ConflictError) as exc:
            left = [f"{s.kind} {ns}/{s.name}" for s in order[position:]]
            raise RevertIncomplete(str(exc), left, done) from None
    return done


@dataclass
class RevertReport:
    changes: list[PlannedChange] = field(default_factory=list)
    complete: bool = False
    left: list[str] = field(default_factory=list)
    attempts: int = 0
    last_error: str = ""

    def describe(self) -> str:
        return (f"not back after {self.attempts} attempt(s): {', '.join(self.left)} (last error: {self.last_error})"
                if not self.complete else "reverted")


def revert_within(store: Any, state: RolloutState, *, budget: float, monotonic: Callable[[], float],
                  sleep: Callable[[float], None], undo: bool = False, dry_run: bool = False,
                  warnings: list[str] | None = None, wait_ready: Callable[[str], None] | None = None) -> RevertReport:
    """Retry :func:`revert` with backoff (0.5 s doubling to 15 s) until it completes or ``budget`` seconds pass."""
    report = RevertReport()
    give_up = monotonic() + budget
    delay = 0.5
    while True:
        report.attempts += 1
        try:
            report.changes += revert(store, state, undo=undo, dry_run=dry_run, warnings=warnings,
                                     wait_ready=wait_ready, sleep=sleep)
            report.complete, report.left = True, []
            return report
        except RevertIncomplete as exc:
            report.changes += exc.done
            report.left, report.last_error = exc.left, exc.message
        left = give_up - monotonic()
        if left <= 0:
            return report
        sleep(min(delay, left))
        delay = min(15.0, delay * 2)

"""The commands another job sends to a rollout: ``status``, ``abort``, ``promote``, ``undo``.

Each is a small function over the Lease (:func:`~mlserve.rollout.state.update_state`: read, decide,
write guarded by the resourceVersion) and, for abort and undo, the snapshot
(:mod:`mlserve.rollout.revert`). A running owner notices what they wrote at its next heartbeat.
"""

from __future__ import annotations

from typing import Any, Callable

from mlserve import exitcodes
from mlserve.errors import ConflictError, InfrastructureError, MlserveError, NotFoundError
from mlserve.rollout.results import EXIT_OF_PHASE, AbortResult, CommandResult, ObjectStatus, StatusResult
from mlserve.rollout.revert import revert_within
from mlserve.rollout.state import ACTIVE_PHASES, LeaseStateStore, RolloutState, StoredState, lease_name, target_flags, update_state
from mlserve.rollout.strategies import router_of
from mlserve.rollout.workload import readiness, workload_readiness
from mlserve.rollout.world import Clock, default_owner


def _objects(stored: StoredState, store: Any) -> tuple[int | None, list[ObjectStatus]]:
    """One read per managed object: the traffic split, and each Deployment's readiness."""
    state = stored.state
    found: list[ObjectStatus] = []
    live: int | None = None
    kind, _, name = state.traffic_object.partition("/")
    try:
        obj = store.get(kind, name, state.namespace)
        router = router_of(state)
        if obj is not None and router is not None:
            live = router.weight(obj)
            shares = getattr(router, "shares", None)
            detail = ", ".join(f"{k} {v}%" for k, v in shares(obj).items() if v or k != "baseline") if shares else f"canary {live}%"
        else:
            detail = "" if obj is not None else "missing"
        found.append(ObjectStatus(kind=kind, name=name, role="traffic", exists=obj is not None, detail=detail))
    except (MlserveError, KeyError, ValueError, TypeError, IndexError, StopIteration):
        live = None
    roles = [("canary" if state.strategy == "canary" else "idle", state.canary),
             ("stable" if state.strategy == "canary" else "live", state.stable)]
    if state.baseline:
        roles.append(("baseline", state.baseline))
    local = hasattr(store, "readiness")  # the local target: the split's variants, not Deployments
    for role, dep_name in roles:
        if local:
            try:
                state_of = workload_readiness(store, dep_name, state.namespace)
            except MlserveError as exc:
                found.append(ObjectStatus(kind="Variant", name=dep_name, role=role, exists=False, detail=exc.message))
                continue
            found.append(ObjectStatus(kind="Variant", name=dep_name, role=role,
                                      exists=state_of.detail != "not in the split", detail=state_of.detail))
            continue
        try:
            dep = store.get("Deployment", dep_name, state.namespace)
        except MlserveError as exc:
            found.append(ObjectStatus(kind="Deployment", name=dep_name, role=role, exists=False, detail=exc.message))
            continue
        found.append(ObjectStatus(kind="Deployment", name=dep_name, role=role, exists=dep is not None,
                                  detail=readiness(dep).detail if dep is not None else "missing"))
    return live, found


def _status_of(stored: StoredState, store: Any) -> StatusResult:
    state = stored.state
    live, objects = _objects(stored, store)
    return StatusResult(
        model=state.model, version=state.version, previous_version=state.previous_version, strategy=state.strategy,
        namespace=state.namespace, phase=state.phase, outcome=state.outcome, step=state.step_index + 1, steps=state.steps,
        weight=state.weight, live_weight=live, owner=stored.holder or None,
        stale=bool(stored.stale and state.phase in ACTIVE_PHASES), started_at=state.started_at, deadline=state.deadline,
        heartbeat=stored.renewed_at, command=state.command, reverted=state.reverted, message=state.message,
        exit_code=EXIT_OF_PHASE.get(state.phase, exitcodes.OK), record=state.record,
        events=[e.model_dump(mode="json") for e in state.events], objects=objects,
    )


def status(store: Any, states: LeaseStateStore, name: str, *, wait: bool = False, timeout: float = 600.0,
           poll: float = 1.0, clock: Clock | None = None) -> StatusResult:
    """The recorded state, read once (one GET of the Lease, one per managed object); ``wait``: until it ends."""
    clock = clock or Clock()
    limit = clock.monotonic() + timeout
    while True:
        stored = states.load(name)
        if stored is None:
            raise NotFoundError(f"no rollout of {name} recorded in namespace {states.namespace}",
                                hint=f"no Lease {lease_name(name)}; check --namespace")
        if wait and stored.state.phase in ACTIVE_PHASES and not stored.stale and stored.state.phase != "paused" \
                and clock.monotonic() <= limit:
            clock.sleep(poll)
            continue
        result = _status_of(stored, store)
        if wait and result.phase in ACTIVE_PHASES:
            if result.stale or result.phase == "paused":
                result.exit_code = exitcodes.INFRASTRUCTURE if result.stale else exitcodes.ABORTED
                result.message = ("its owner stopped reporting: run abort or --resume" if result.stale
                                  else "paused: resume it or abort it")
            else:
                result.exit_code = exitcodes.INCONCLUSIVE
                result.message = f"still {result.phase} after --timeout {timeout:g}s"
        return result


def promote(states: LeaseStateStore, name: str, *, full: bool = False, clock: Clock | None = None) -> CommandResult:
    """Ask the running rollout to skip the current pause (``full``: every remaining pause)."""
    clock = clock or Clock()
    who = default_owner()
    holder: list[str] = []

    def decide(stored: StoredState | None) -> RolloutState:
        if stored is None or stored.state.phase not in ACTIVE_PHASES:
            raise NotFoundError(f"no running rollout of {name} in namespace {states.namespace}")
        if stored.stale or stored.state.phase == "paused":
            raise ConflictError(f"the rollout of {name} has no live owner to act on promote",
                                hint="continue it with --resume, or abort it")
        state = stored.state
        state.command = "promote-full" if full else "promote"
        state.command_id = f"{who}@{clock.now().isoformat()}"
        state.event(f"promote{' --full' if full else ''} requested by {who}", clock.now())
        holder[:] = [stored.holder or ""]
        return state

    state, _ = update_state(states, name, decide, holder=lambda stored: stored.holder or "")
    return CommandResult(model=name, namespace=states.namespace, command=state.command or "", phase=state.phase,
                         message=f"{state.command} sent to the rollout owned by {holder[0] if holder else '?'}")


def _finish(states: LeaseStateStore, name: str, mutate: Callable[[RolloutState], None], *, dry_run: bool) -> None:
    if dry_run:
        return

    def decide(stored: StoredState | None) -> RolloutState | None:
        if stored is None:
            return None
        mutate(stored.state)
        stored.state.command = None
        return stored.state

    try:
        update_state(states, name, decide, holder="")
    except NotFoundError:
        pass


def abort(store: Any, states: LeaseStateStore, registry: Any, name: str, *, reason: str | None = None,
          dry_run: bool = False, clock: Clock | None = None, revert_timeout: float = 60.0) -> AbortResult:
    """Put everything back as the snapshot recorded it and release the lock. Safe to repeat; works
    whether the owner is alive (it sees the abort and stops), dead, or already finished failing."""
    clock = clock or Clock()
    who = default_owner()
    before: list[str] = []

    def decide(stored: StoredState | None) -> RolloutState:
        if stored is None:
            raise NotFoundError(f"no rollout of {name} recorded in namespace {states.namespace}")
        state = stored.state
        if state.phase in ("succeeded", "undone"):
            raise ConflictError(f"the rollout of {name} to {state.version} already {state.phase}; nothing to abort",
                                hint=f"use `mlserve rollout undo {name}` to go back to the previous version")
        before[:] = [state.phase]
        state.command = None
        if state.phase in ACTIVE_PHASES or state.phase == "failed":
            # "aborted" with reverted=false until the revert is done: a running owner sees the abort and
            # stops, and no new rollout takes this Lease (and a split state as its snapshot) before.
            state.phase, state.outcome, state.reverted = "aborted", "aborted", False
            state.message = reason or f"aborted by {who}"
            state.event(f"abort requested by {who}" + (f": {reason}" if reason else ""), clock.now())
        return state

    state, _ = update_state(states, name, decide, holder=who, dry_run=dry_run)
    was = before[0]
    warnings: list[str] = []
    report = revert_within(store, state, budget=revert_timeout if not dry_run else 0.0, monotonic=clock.monotonic,
                           sleep=clock.sleep, dry_run=dry_run, warnings=warnings)
    if not report.complete:
        state.event(f"abort by {who} failed half-way: {report.describe()}", clock.now())
        try:
            _finish(states, name, lambda s: (setattr(s, "reverted", False), setattr(s, "events", state.events)), dry_run=dry_run)
        except MlserveError:
            pass  # the API that refused the revert refuses this too; the Lease still says "aborted, not reverted"
        raise InfrastructureError(
            f"abort of {name} failed half-way, traffic may still be split between stable and the new version: "
            f"{report.describe()}", hint=f"run `mlserve rollout abort {name}{target_flags(state)}` again when the API answers")
    if not dry_run:
        try:
            _finish(states, name, lambda s: (setattr(s, "reverted", True), setattr(s, "weight", 0),
                                             setattr(s, "phase", state.phase), setattr(s, "message", state.message)),
                    dry_run=dry_run)
        except MlserveError as exc:
            raise InfrastructureError(f"the snapshot of {name} is re-applied, but the Lease could not record it: {exc.message}",
                                      hint=f"run `mlserve rollout abort {name}{target_flags(state)}` again") from None
        unfinished = was in ACTIVE_PHASES or was == "failed" or not state.reverted
        if unfinished and state.previous_version != state.version:
            # always a compare-and-swap (only if production still holds this rollout's version): the
            # process we interrupted may promote in the registry a moment after we read its state
            try:
                registry.restore(name, state.previous_version, state.version, f"mlserve rollout abort in {states.namespace}")
            except MlserveError as exc:
                warnings.append(f"registry rollback failed: {exc}")
        if was in ACTIVE_PHASES or was == "failed":
            try:
                registry.journal(name, "rollout-aborted", {"reason": state.message, "namespace": states.namespace,
                                                           "by": who, "phase_before": was}, version=state.version)
            except MlserveError as exc:
                warnings.append(f"could not journal the abort in the registry: {exc}")
    return AbortResult(model=name, version=state.version, namespace=states.namespace, phase_before=was, phase=state.phase,
                       changes=report.changes, already_reverted=not report.changes, warnings=warnings)


def undo(store: Any, states: LeaseStateStore, registry: Any, name: str, *, dry_run: bool = False,
         clock: Clock | None = None, wait_ready: Callable[[str], None] | None = None,
         revert_timeout: float = 60.0, settle: Callable[[RolloutState], None] | None = None) -> AbortResult:
    """Revert a finished rollout: back to the previous version (blue-green: an instant selector switch).

    ``settle(state)`` runs last, after the registry rollback (the local target: until the stable variant,
    which follows production, serves the previous version again)."""
    clock = clock or Clock()
    who = default_owner()
    before: list[str] = []

    def decide(stored: StoredState | None) -> RolloutState:
        if stored is None:
            raise NotFoundError(f"no rollout of {name} recorded in namespace {states.namespace}")
        state = stored.state
        switched = state.phase == "switched" and state.strategy == "blue-green"
        if state.phase != "succeeded" and not switched:
            if state.phase in ACTIVE_PHASES:
                raise ConflictError(f"the rollout of {name} is still {state.phase}", hint=f"use `mlserve rollout abort {name}{target_flags(state)}`")
            raise ConflictError(f"the last rollout of {name} ended {state.phase}: its changes are already reverted")
        before[:] = [state.phase]
        state.phase, state.command = "undone", None
        state.event(f"undo requested by {who}", clock.now())
        return state

    # Claimed first: a process still keeping the old colour sees it and stops.
    state, _ = update_state(states, name, decide, holder="", dry_run=dry_run)
    report = revert_within(store, state, budget=revert_timeout if not dry_run else 0.0, monotonic=clock.monotonic,
                           sleep=clock.sleep, undo=True, dry_run=dry_run, warnings=None, wait_ready=wait_ready)
    if not report.complete:
        raise InfrastructureError(f"undo of {name} stopped: {report.describe()}",
                                  hint="traffic was not moved; check the Deployment and run undo again")
    warnings: list[str] = []
    if not dry_run:
        _finish(states, name, lambda s: setattr(s, "reverted", True), dry_run=dry_run)
        # always a compare-and-swap, even when the state does not (yet) say the registry was promoted:
        # the process we interrupted may promote a moment after we read its state, and then undoes it too
        try:
            restored = registry.restore(name, state.previous_version, state.version,
                                        f"mlserve rollout undo in {states.namespace}")
        except MlserveError as exc:
            warnings.append(f"registry rollback failed: {exc}")
        else:
            if restored and settle is not None:
                settle(state)
    return AbortResult(model=name, version=state.version, namespace=states.namespace, phase_before=before[0],
                       phase="undone", changes=report.changes, already_reverted=False, warnings=warnings)

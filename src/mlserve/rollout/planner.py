"""``rollout plan``: the rollout's steps rendered against a simulation of the objects; nothing is sent.

The steps are the ones ``run`` executes (:func:`mlserve.rollout.strategies.prepare` builds them
once); every object change is computed by the step from the simulated object, so the operations
shown are the ones a run would send (after the resourceVersion guard) when every step passes.
"""

from __future__ import annotations

import copy
from typing import Any

from mlserve.rollout import steps as st
from mlserve.rollout.jsonpatch import apply_patch
from mlserve.rollout.ops import changes_only
from mlserve.rollout.results import PlannedChange, PlanResult
from mlserve.rollout.state import ACTIVE_PHASES, LeaseStateStore, lease_name
from mlserve.rollout.strategies import Prepared


def render(prepared: Prepared, states: LeaseStateStore, *, points_per_step: int | None = None,
           describe: Any = None) -> PlanResult:
    """``describe(kind, name, obj, ops)``: how the store sends a patch, shown as its note (the local target's
    admin requests); None for stores that send the patch itself."""
    state = prepared.state
    sim: dict[tuple[str, str], dict[str, Any]] = {k: copy.deepcopy(v) for k, v in prepared.objects.items()}
    changes: list[PlannedChange] = []
    warnings = list(prepared.warnings)
    existing = states.load(state.model)
    if existing is not None and (existing.state.phase in ACTIVE_PHASES
                                 or (existing.state.phase != "succeeded" and not existing.state.reverted)):
        warnings.append(f"a rollout of {state.model} is {existing.state.phase} (owner {existing.holder or '-'}); "
                        "running this plan would be refused")
    changes.append(PlannedChange(stage="lock", action="create" if existing is None else "patch", kind="Lease",
                                 name=lease_name(state.model), note="revert snapshot, owner, deadline, lock"))
    for step in prepared.steps:
        if isinstance(step, st.Create):
            sim[(step.kind, step.name)] = copy.deepcopy(step.obj)
            changes.append(PlannedChange(stage=step.why, action="create", kind=step.kind, name=step.name, object=step.obj))
        elif isinstance(step, st.Change):
            obj = sim.get((step.kind, step.name))
            if obj is None:
                continue
            ops = changes_only(step.ops(obj))
            if ops:
                note = describe(step.kind, step.name, obj, ops) if describe is not None else ""
                sim[(step.kind, step.name)] = apply_patch(obj, ops, in_place=False)
                changes.append(PlannedChange(stage=step.why, action="patch", kind=step.kind, name=step.name, ops=ops,
                                             note=note))
        elif isinstance(step, st.WaitReady):
            until = (f"until the {step.what} variant serves {step.version}, loaded and warmed up" if step.kind == "Variant"
                     else f"until {step.what} is ready (observed generation, ready and available replicas)")
            changes.append(PlannedChange(stage=step.stage if step.stage != "step" else f"step {step.index + 1}",
                                         action="wait", kind=step.kind, name=step.name, note=until))
        elif isinstance(step, st.Gate):
            changes.append(PlannedChange(stage=step.why, action="gate", note=f"POST {step.url} until it answers 2xx"))
        elif isinstance(step, st.Pause):
            points = f", then judge on {step.points} point(s) per metric and side" if step.points is not None else ", then judge"
            label = f"step {step.index + 1}" if step.stage == "step" else step.why
            changes.append(PlannedChange(stage=label, action="wait", note=f"pause {step.seconds:g}s{points}"
                                         if step.stage == "step" else f"pause {step.seconds:g}s ({step.why})"))
        elif isinstance(step, st.Smoke):
            changes.append(PlannedChange(stage="smoke", action="wait", note="smoke URL / command must pass"))
        elif isinstance(step, st.Keep):
            changes.append(PlannedChange(stage="keep", action="wait", note=step.why))
        elif isinstance(step, st.PromoteInRegistry):
            changes.append(PlannedChange(stage="registry", action="registry",
                                         note=f"promote {state.model} {state.version} to production "
                                              f"(if it still holds {state.previous_version or 'none'})"))
    return PlanResult(model=state.model, version=state.version, previous_version=state.previous_version,
                      strategy=state.strategy, namespace=state.namespace, router=state.router,
                      lease=lease_name(state.model), changes=changes, snapshot=state.snapshot,
                      points_per_step=points_per_step if state.strategy == "canary" else None, warnings=warnings)

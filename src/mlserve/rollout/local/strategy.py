"""The steps of a rollout on ``--target local``: the same step model as on Kubernetes, on a model's split.

:func:`prepare_local` reads the split of the model from the running server, checks that the router
can manage it, records the revert snapshot (the canary variant as it was, or its absence, and the
stable variant's weight and REF) and builds the steps the executor runs and ``plan`` renders.

Canary::

    prepare   load NAME:VERSION as the canary variant at weight 0 (the server loads, checks and
              warms it up before it answers); record; wait until the canary serves VERSION
    step i    record; gates; the canary still serves VERSION; weights stable 100-w / canary w;
              record; pause; check the split was not changed by someone else; judge
    promote   record "promoting"; then, when stable follows NAME@production, promote VERSION in the
              registry (compare-and-swap on the previous version) and wait until stable has swapped
              to it; when stable is pinned, point stable at NAME:VERSION and wait until it serves it;
              all traffic to stable; remove the canary variant; (pinned: promote in the registry);
              record "succeeded"

Blue-green: the same preparation, a smoke check (one inference pinned to VERSION, then
``--smoke-url``/``--smoke-cmd``), the pause and the judge (thresholds only, with ``--analysis``),
then **all traffic at once** to the new version (stable 0 / canary 100, recorded "switched"), then
the promotion as above, so that stable serves VERSION again and takes the traffic back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mlserve.errors import NotFoundError, UsageError
from mlserve.rollout import steps as st
from mlserve.rollout.local.router import SplitRouter, variants
from mlserve.rollout.settings import RolloutConfig
from mlserve.rollout.strategies import Prepared, _base_state, _Snapshot

STABLE = "stable"
CANARY = "canary"


def _rollout_on_record(store: Any, model: str, namespace: str) -> bool:
    from mlserve.rollout.state import ACTIVE_PHASES, LeaseStateStore

    prior = LeaseStateStore(store.state_store(), namespace).load(model)
    return prior is not None and (prior.state.phase in ACTIVE_PHASES or prior.state.phase == "failed")


def _check_takeover(split: dict[str, Any], status: dict[str, Any], *, model: str, previous: str | None,
                    follows: bool) -> None:
    """Refuse a split the rollout cannot own: a canary variant already taking traffic (someone's experiment, which a
    revert could not give back), or a pinned stable variant serving another version than production (the rollout
    compares with, reverts to and promotes over production's version)."""
    found = variants(split)
    canary = found.get(CANARY)
    if canary is not None and float(canary.get("weight") or 0) > 0:
        raise UsageError(f"the split of {model!r} already sends {float(canary['weight']):g}% to a {CANARY!r} variant "
                         f"({canary.get('ref')}); a rollout owns that variant",
                         hint="finish that canary first (its weight to 0, or remove the variant), then start the rollout")
    served = (status.get(STABLE) or {}).get("version")
    if not follows and served and previous is not None and served != previous:
        raise UsageError(f"the server's {STABLE!r} variant is pinned to {found[STABLE].get('ref')} and serves {served}, "
                         f"but {model}@production is {previous}: the rollout compares with, reverts to and promotes "
                         "over production's version",
                         hint=f"serve {model}@production (stable then follows the registry), or promote {served} first")


def prepare_local(store: Any, cfg: RolloutConfig, *, model: str, version: str, previous: str | None, owner: str,
                  now: datetime, points: int | None = None) -> Prepared:
    router = SplitRouter(model, stable=STABLE, canary=CANARY)
    split = store.get(router.kind, model, cfg.namespace)
    if split is None:
        raise NotFoundError(f"the server at {store.client.admin} does not serve model {model!r}",
                            hint=f"start it with `mlserve serve {model}@production` and an admin token")
    router.check(split)
    router.weight_ops(split, 0)  # validates the split's shape before anything changes
    status = (split.get("status") or {}).get("variants") or {}
    follows = (status.get(STABLE) or {}).get("follows") == f"{model}@production"
    if not cfg.resume and not _rollout_on_record(store, model, cfg.namespace):
        # a resumed rollout finds its own canary in the split, and one still running or failed half-way is reported
        # by the executor's lock ("already running", "revert it with abort first")
        _check_takeover(split, status, model=model, previous=previous, follows=follows)
    canary_ref = f"{model}:{version}"
    snap = _Snapshot()
    snap.record(router.kind, model, "traffic", split, router.snapshot_paths(split))
    state = _base_state(cfg, model=model, version=version, previous=previous, owner=owner, now=now,
                        router_label=router.label, stable=STABLE, canary=CANARY, traffic=f"{router.kind}/{model}",
                        snapshot=snap.objects)
    state.stable_service = state.canary_service = ""
    state.target = {"kind": "local", "server": store.client.server, "admin": store.client.admin,
                    "stable_follows": f"{model}@production" if follows else (variants(split)[STABLE]["ref"])}
    steps: list[st.Step] = []
    add = steps.append

    add(st.Change("prepare", why=f"load {canary_ref} as the {CANARY} variant, no traffic yet", kind=router.kind,
                  name=model, compute=lambda s: router.load_ops(s, canary_ref)))
    add(st.Record("prepare", mutate=(lambda s, at: setattr(s, "step_index", 0)) if cfg.strategy == "blue-green"
                  else (lambda s, at: None)))
    add(st.WaitReady("prepare", name=CANARY, what="canary", kind="Variant", version=version))
    if cfg.strategy == "canary":
        for index, weight in enumerate(cfg.steps):
            label = f"step {index + 1}"
            add(st.Record("step", index, mutate=lambda s, at, i=index: setattr(s, "step_index", i)))
            for url in cfg.gates:
                add(st.Gate("step", index, why=f"{label}: gate before {weight}%", url=url))
            add(st.WaitReady("step", index, name=CANARY, what="canary", kind="Variant", version=version))
            add(st.SetWeight("step", index, why=f"{label}: {weight}% to the canary", kind=router.kind, name=model,
                             weight=weight, compute=lambda s, w=weight: router.weight_ops(s, w)))
            add(st.Record("step", index, mutate=lambda s, at, w=weight: setattr(s, "weight", w),
                          note=f"step {index + 1}/{len(cfg.steps)}: {weight}% of {model}'s requests to {canary_ref}"))
            add(st.Pause("step", index, why=f"{label}: pause", seconds=cfg.pause or 0.0, points=points))
            add(st.CheckDrift("step", index, why=f"{label}: check the split", weight=weight))
            add(st.Analysis("step", index, why=f"{label}: judge", weight=weight, compare_with=STABLE,
                            reason="" if weight < 100 else "no comparison at 100%"))
        add(st.Record("promote", mutate=lambda s, at: setattr(s, "phase", "promoting")))
        tail = "promote"
    else:
        add(st.Smoke("prepare", why="smoke check"))
        add(st.Pause("prepare", why="pause", seconds=cfg.pause or 0.0))
        add(st.Analysis("prepare", 0, why="judge", weight=0, compare_with=STABLE))
        add(st.SetWeight("switch", why=f"all of {model}'s requests to {canary_ref} at once", kind=router.kind,
                         name=model, weight=100, compute=lambda s: router.weight_ops(s, 100),
                         note=f"all of {model}'s requests go to {canary_ref}"))

        def switched(s: Any, at: datetime) -> None:
            s.phase, s.weight = "switched", 100

        add(st.Record("switch", mutate=switched))
        tail = "keep"
    reason = f"{cfg.strategy} rollout on {store.client.server} succeeded"
    if follows:
        add(st.PromoteInRegistry(tail, why="registry (stable follows production)", final=False, required=True,
                                 reason=reason))
        add(st.WaitReady(tail, name=STABLE, what="stable", kind="Variant", version=version))
    else:
        add(st.SetVersion(tail, why=f"point stable at {canary_ref}", kind=router.kind, name=model,
                          compute=lambda s: router.ref_ops(s, canary_ref)))
        add(st.WaitReady(tail, name=STABLE, what="stable", kind="Variant", version=version))
    add(st.SetWeight(tail, why="all traffic to stable", kind=router.kind, name=model, weight=0,
                     compute=lambda s: router.weight_ops(s, 0), note=f"stable serves {version} and takes all traffic"))
    add(st.Change(tail, why=f"remove the {CANARY} variant", kind=router.kind, name=model, compute=router.remove_ops,
                  note=f"the {CANARY} variant is removed"))
    if not follows:
        add(st.PromoteInRegistry(tail, why="registry", final=False, reason=reason))

    def succeeded(s: Any, at: datetime) -> None:
        s.phase, s.outcome, s.weight = "succeeded", "promoted", 0

    add(st.Record(tail, mutate=succeeded))
    return Prepared(state=state, router=router, steps=steps, warnings=[], objects={(router.kind, model): split})


__all__ = ["prepare_local", "STABLE", "CANARY"]

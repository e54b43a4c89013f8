"""The strategies: read what a rollout needs, record the revert snapshot, and build its list of steps once.

:func:`prepare` reads the stable objects (every missing one is named in one error), checks that
the router and the version spec can handle them before anything changes, records the snapshot of
every field the rollout may touch, and returns the :class:`Prepared` rollout: its initial state and
the steps (:mod:`mlserve.rollout.steps`) that the executor runs and the planner renders.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mlserve.errors import NotFoundError, UsageError
from mlserve.rollout import steps as st
from mlserve.rollout.jsonpatch import apply_patch, make_pointer, parse_pointer
from mlserve.rollout.ops import get_at, is_absent, pointer, set_ops
from mlserve.rollout.routers import GatewayRouter, IstioRouter, NginxRouter, Router, SelectorRouter
from mlserve.rollout.settings import RolloutConfig
from mlserve.rollout.state import FieldSnapshot, ObjectSnapshot, RolloutState
from mlserve.rollout.workload import (
    TRACK_LABEL,
    colour_deployment,
    sibling_objects,
    version_labels,
    version_ops,
    version_paths,
)

BASELINE_NOTE = "the baseline gets the same share as the canary"


@dataclass
class Prepared:
    state: RolloutState
    router: Router
    steps: list[st.Step]
    warnings: list[str] = field(default_factory=list)
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # what existed, as read


def make_router(cfg: RolloutConfig) -> Router:
    baseline = cfg.baseline_service if cfg.baseline else None
    if cfg.router == "gateway":
        return GatewayRouter(cfg.route_name, cfg.stable_service, cfg.canary_service, baseline_service=baseline)
    if cfg.router == "nginx":
        return NginxRouter(stable_ingress=cfg.route_name, stable_service=cfg.stable_service,
                           canary_service=cfg.canary_service,
                           canary_ingress=cfg.route_name + cfg.canary_suffix if len(cfg.route_name + cfg.canary_suffix) <= 253 else "")
    if cfg.router == "istio":
        return IstioRouter(cfg.route_name, cfg.stable_service, cfg.canary_service, baseline_service=baseline)
    raise UsageError(f"unknown router {cfg.router!r} (use gateway, nginx or istio)")


def router_of(state: RolloutState) -> Router | None:
    """A recorded rollout's router, rebuilt from its state (blue-green: its Service switch)."""
    kind, _, name = state.traffic_object.partition("/")
    baseline = state.baseline_service or None
    if kind == "Split":  # the local target: a model's split in mlserve serve
        from mlserve.rollout.local.router import SplitRouter

        return SplitRouter(name, stable=state.stable, canary=state.canary)
    if state.strategy == "blue-green":
        snap = next((s for s in state.snapshot if s.role == "traffic"), None)
        if snap is None or not snap.fields:
            return None
        key = parse_pointer(snap.fields[0].path)[-1]
        return SelectorRouter(name, str(key), state.stable.rsplit("-", 1)[-1], state.canary.rsplit("-", 1)[-1])
    if kind == "HTTPRoute":
        return GatewayRouter(name, state.stable_service, state.canary_service, baseline_service=baseline)
    if kind == "VirtualService":
        return IstioRouter(name, state.stable_service, state.canary_service, baseline_service=baseline)
    if kind == "Ingress":
        return NginxRouter(stable_ingress=name, stable_service=state.stable_service,
                           canary_service=state.canary_service, canary_ingress=name)
    return None


def canary_capacity(cfg: RolloutConfig, stable_replicas: int, weight: int) -> int:
    """Replicas the canary needs for ``weight``% of the traffic: its share of stable's, at least --canary-replicas."""
    return max(1, cfg.canary_replicas, math.ceil(int(stable_replicas or 0) * weight / 100))


def baseline_share(cfg: RolloutConfig, weight: int) -> int:
    return weight if cfg.baseline and weight <= 50 else 0


class _Snapshot:
    def __init__(self) -> None:
        self.objects: list[ObjectSnapshot] = []

    def record(self, kind: str, name: str, role: str, obj: dict[str, Any] | None, paths: list[str]) -> None:
        if obj is None:
            self.objects.append(ObjectSnapshot(kind=kind, name=name, role=role, created=True))
            return
        fields: list[FieldSnapshot] = []
        for path in paths:
            value = get_at(obj, path)
            if is_absent(value):
                # Record the outermost missing map, so a revert removes what the rollout added
                # (e.g. a whole `annotations:`), not just the leaf, leaving no empty maps behind.
                tokens = parse_pointer(path)
                while len(tokens) > 1 and is_absent(get_at(obj, make_pointer(tokens[:-1]))):
                    tokens = tokens[:-1]
                path = make_pointer(tokens)
            if any(f.path == path for f in fields):
                continue
            fields.append(FieldSnapshot(path=path, present=not is_absent(value),
                                        value=None if is_absent(value) else copy.deepcopy(value)))
        self.objects.append(ObjectSnapshot(kind=kind, name=name, role=role, fields=fields))


def _read_all(store: Any, ns: str, wanted: list[tuple[str, str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Read every object in ``wanted`` ((kind, name, hint)); one NotFoundError names all that are missing."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    missing: list[tuple[str, str, str]] = []
    for kind, name, hint in wanted:
        obj = store.get(kind, name, ns)
        if obj is None:
            missing.append((kind, name, hint))
        else:
            found[(kind, name)] = obj
    if missing:
        names = ", ".join(f"{kind} {ns}/{name}" for kind, name, _ in missing)
        hints = "; ".join(dict.fromkeys(h for _, _, h in missing if h))
        raise NotFoundError(f"not found: {names}", hint=hints or None,
                            details={"missing": [{"kind": k, "name": n, "namespace": ns} for k, n, _ in missing]})
    return found


def _workload_hint(cfg: RolloutConfig, option: str) -> str:
    return (f"name the workload with --workload (sets Deployment, Service and route at once), "
            f"or set {option}")


def prepare(store: Any, cfg: RolloutConfig, *, model: str, version: str, previous: str | None, owner: str,
            now: datetime, points_per_step: int | None = None) -> Prepared:
    if cfg.target == "local":
        from mlserve.rollout.local.strategy import prepare_local

        return prepare_local(store, cfg, model=model, version=version, previous=previous, owner=owner, now=now,
                             points=points_per_step)
    if cfg.strategy == "canary":
        return _prepare_canary(store, cfg, model=model, version=version, previous=previous, owner=owner, now=now,
                               points=points_per_step)
    return _prepare_blue_green(store, cfg, model=model, version=version, previous=previous, owner=owner, now=now)


def _base_state(cfg: RolloutConfig, *, model: str, version: str, previous: str | None, owner: str, now: datetime,
                router_label: str, stable: str, canary: str, traffic: str, snapshot: list[ObjectSnapshot]) -> RolloutState:
    timeout = cfg.timeout if cfg.timeout is not None else 0.0
    return RolloutState(
        model=model, version=version, previous_version=previous, strategy=cfg.strategy, namespace=cfg.namespace,
        router=router_label, steps=list(cfg.steps) if cfg.strategy == "canary" else [100], pause_seconds=cfg.pause or 0.0,
        owner=owner, started_at=now, deadline=now + timedelta(seconds=timeout), lease_seconds=cfg.lease_seconds,
        stable=stable, canary=canary, traffic_object=traffic, snapshot=snapshot,
        stable_service=cfg.stable_service, canary_service=cfg.canary_service if cfg.strategy == "canary" else "",
        baseline=cfg.baseline_deployment if cfg.baseline else "", baseline_service=cfg.baseline_service if cfg.baseline else "",
        header_route=({k: v for k, v in vars(cfg.header_route).items() if v is not None} if cfg.header_route else None),
    )


def _prepare_canary(store: Any, cfg: RolloutConfig, *, model: str, version: str, previous: str | None, owner: str,
                    now: datetime, points: int | None) -> Prepared:
    ns = cfg.namespace
    router = make_router(cfg)
    route_kind = "Ingress" if cfg.router == "nginx" else router.kind
    wanted = [("Deployment", cfg.stable_deployment, _workload_hint(cfg, "--deployment")),
              ("Service", cfg.stable_service, _workload_hint(cfg, "--service")),
              (route_kind, cfg.route_name, _workload_hint(cfg, "--route to the object that splits traffic"))]
    found = _read_all(store, ns, wanted)
    stable_dep = found[("Deployment", cfg.stable_deployment)]
    stable_svc = found[("Service", cfg.stable_service)]
    created_router = router.creates(store, ns)
    router_obj = created_router if created_router is not None else (
        found.get((router.kind, router.name)) or store.get(router.kind, router.name, ns))
    if router_obj is None:
        raise NotFoundError(f"{router.kind} {ns}/{router.name} not found", hint="set --route to the object that splits traffic")
    router.weight_ops(router_obj, 0)  # validates the object's shape before anything changes
    if cfg.header_route is not None:
        router.header_ops(router_obj, cfg.header_route)
    warnings: list[str] = []
    labels, notes = version_labels(stable_dep, cfg.version, version, previous=previous,
                                   service_selector=(stable_svc.get("spec") or {}).get("selector"))
    warnings += notes
    version_ops(stable_dep, cfg.version, model, version, labels)  # --image and --container, before the lock
    canary_dep = store.get("Deployment", cfg.canary_deployment, ns)
    canary_svc = store.get("Service", cfg.canary_service, ns)
    baseline_dep = store.get("Deployment", cfg.baseline_deployment, ns) if cfg.baseline else None
    baseline_svc = store.get("Service", cfg.baseline_service, ns) if cfg.baseline else None
    objects = {k: v for k, v in found.items()}
    for key, obj in ((("Deployment", cfg.canary_deployment), canary_dep), (("Service", cfg.canary_service), canary_svc),
                     ((router.kind, router.name), None if created_router is not None else router_obj),
                     (("Deployment", cfg.baseline_deployment), baseline_dep), (("Service", cfg.baseline_service), baseline_svc)):
        if obj is not None:
            objects[key] = obj

    snap = _Snapshot()
    traffic_paths = router.snapshot_paths(router_obj)
    if cfg.header_route is not None and isinstance(router, GatewayRouter):
        traffic_paths.append(router.header_slot(router_obj))
    snap.record(router.kind, router.name, "traffic", None if created_router is not None else router_obj, traffic_paths)
    snap.record("Service", cfg.canary_service, "service", canary_svc, [])
    canary_labels = dict(labels)
    snap.record("Deployment", cfg.canary_deployment, "workload", canary_dep,
                [pointer("spec", "replicas")] + (version_paths(canary_dep, cfg.version, canary_labels) if canary_dep else []))
    snap.record("Deployment", cfg.stable_deployment, "workload", stable_dep, version_paths(stable_dep, cfg.version, labels))
    if cfg.baseline:
        snap.record("Service", cfg.baseline_service, "service", baseline_svc, [])
        snap.record("Deployment", cfg.baseline_deployment, "workload", baseline_dep,
                    [pointer("spec", "replicas"), pointer("spec", "template")])
    state = _base_state(cfg, model=model, version=version, previous=previous, owner=owner, now=now,
                        router_label=router.label, stable=cfg.stable_deployment, canary=cfg.canary_deployment,
                        traffic=f"{router.kind}/{router.name}", snapshot=snap.objects)

    def tell(obj: dict[str, Any]) -> list[Any]:
        return version_ops(obj, cfg.version, model, version, labels)

    stable_replicas = int((stable_dep.get("spec") or {}).get("replicas", 1))
    steps: list[st.Step] = []
    add = steps.append
    # -- prepare: the canary (and baseline) objects, told the version, then ready; no traffic yet
    if canary_svc is None or canary_dep is None:
        dep, svc = sibling_objects(stable_dep, stable_svc, deployment_name=cfg.canary_deployment,
                                   service_name=cfg.canary_service, replicas=cfg.canary_replicas, model=model,
                                   version_labels=labels)
        if canary_svc is None:
            add(st.Create("prepare", why="create canary Service", obj=svc))
        if canary_dep is None:
            add(st.Create("prepare", why="create canary Deployment", obj=apply_patch(dep, tell(dep), in_place=False)))
    if canary_dep is not None:
        add(st.SetVersion("prepare", why="tell the canary the new version", kind="Deployment", name=cfg.canary_deployment,
                          compute=lambda d: tell(d) + set_ops(d, pointer("spec", "replicas"), max(1, cfg.canary_replicas))))
    if cfg.baseline:
        bdep, bsvc = sibling_objects(stable_dep, stable_svc, deployment_name=cfg.baseline_deployment,
                                     service_name=cfg.baseline_service, replicas=cfg.canary_replicas, model=model,
                                     track="baseline")
        if baseline_svc is None:
            add(st.Create("prepare", why="create baseline Service", obj=bsvc))
        if baseline_dep is None:
            add(st.Create("prepare", why="create baseline Deployment (a copy of stable)", obj=bdep))
        else:
            add(st.Change("prepare", why="run stable's pod template in the baseline", kind="Deployment",
                          name=cfg.baseline_deployment,
                          compute=lambda d: set_ops(d, pointer("spec", "template"), bdep["spec"]["template"])
                          + set_ops(d, pointer("spec", "replicas"), max(1, cfg.canary_replicas))))
    if created_router is not None:
        add(st.Create("prepare", why=f"create the {router.label} canary object", obj=created_router))
    add(st.Record("prepare"))
    add(st.WaitReady("prepare", name=cfg.canary_deployment, what="canary", min_replicas=1))
    if cfg.baseline:
        add(st.WaitReady("prepare", name=cfg.baseline_deployment, what="baseline", min_replicas=1))
    if cfg.header_route is not None:
        route = cfg.header_route
        add(st.SetHeaderRoute("prepare", why=f"send {route.describe()} to the canary", kind=router.kind, name=router.name,
                              compute=lambda r: router.header_ops(r, route),
                              note=f"{route.describe()} reach {cfg.canary_deployment}"))
        add(st.Pause("prepare", why="header-routed requests only", seconds=cfg.pause or 0.0))
    # -- one group per step: capacity first, and ready, before the weight moves; pause; drift; judge
    compare_with = cfg.baseline_deployment if cfg.baseline else cfg.stable_deployment
    for index, weight in enumerate(cfg.steps):
        base = baseline_share(cfg, weight)
        want = canary_capacity(cfg, stable_replicas, weight)
        label = f"step {index + 1}"
        add(st.Record("step", index, mutate=lambda s, now, i=index: setattr(s, "step_index", i)))
        for url in cfg.gates:
            add(st.Gate("step", index, why=f"{label}: gate before {weight}%", url=url))
        add(st.Scale("step", index, why=f"scale the canary to {want} for {weight}%", kind="Deployment",
                     name=cfg.canary_deployment, replicas=want, compute=st.replicas_ops(want)))
        if base:
            add(st.Scale("step", index, why=f"scale the baseline to {want} for {base}%", kind="Deployment",
                         name=cfg.baseline_deployment, replicas=want, compute=st.replicas_ops(want)))
        add(st.WaitReady("step", index, name=cfg.canary_deployment, what="canary", min_replicas=1))
        if base:
            add(st.WaitReady("step", index, name=cfg.baseline_deployment, what="baseline", min_replicas=1))
        split = f"{weight}% to the canary" + (f", {base}% to the baseline" if base else "")
        add(st.SetWeight("step", index, why=f"{label}: {split}", kind=router.kind, name=router.name, weight=weight,
                         baseline=base, compute=lambda r, w=weight, b=base: router.weight_ops(r, w, b)))
        add(st.Record("step", index, mutate=lambda s, now, w=weight: setattr(s, "weight", w),  # once really applied
                      note=f"step {index + 1}/{len(cfg.steps)}: {weight}% of traffic to {cfg.canary_deployment}"
                           + (f" and {base}% to {cfg.baseline_deployment}" if base else "")))
        add(st.Pause("step", index, why=f"{label}: pause", seconds=cfg.pause or 0.0, points=points))
        add(st.CheckDrift("step", index, why=f"{label}: check the split", weight=weight, baseline=base))
        comparable = weight < 100 and (not cfg.baseline or base == weight)
        add(st.Analysis("step", index, why=f"{label}: judge", weight=weight,
                        compare_with=compare_with if comparable else cfg.stable_deployment, judged=True,
                        reason="" if comparable else "no comparison at 100%"))
    # -- promote: stable gets the version, then all traffic back to it; the canary scales to 0
    add(st.Record("promote", mutate=lambda s, now: setattr(s, "phase", "promoting")))
    add(st.SetVersion("promote", why="tell stable the new version", kind="Deployment", name=cfg.stable_deployment,
                      compute=tell))
    add(st.WaitReady("promote", name=cfg.stable_deployment, what="stable"))
    add(st.SetWeight("promote", why="all traffic back to stable", kind=router.kind, name=router.name, weight=0,
                     compute=lambda r: router.weight_ops(r, 0, 0),
                     note=f"stable {cfg.stable_deployment} serves {version} and takes all traffic"))
    if cfg.header_route is not None:
        add(st.SetHeaderRoute("promote", why="stop routing by header or cookie", kind=router.kind, name=router.name,
                              on=False, compute=lambda r: router.header_ops(r, None)))
    add(st.Scale("promote", why="scale the canary to 0", kind="Deployment", name=cfg.canary_deployment, replicas=0,
                 compute=st.replicas_ops(0), note=f"canary {cfg.canary_deployment} scaled to 0"))
    if cfg.baseline:
        add(st.Scale("promote", why="scale the baseline to 0", kind="Deployment", name=cfg.baseline_deployment,
                     replicas=0, compute=st.replicas_ops(0)))
    add(st.PromoteInRegistry("promote", why="registry"))
    return Prepared(state=state, router=router, steps=steps, warnings=warnings, objects=objects)


def _prepare_blue_green(store: Any, cfg: RolloutConfig, *, model: str, version: str, previous: str | None,
                        owner: str, now: datetime) -> Prepared:
    ns = cfg.namespace
    svc = _read_all(store, ns, [("Service", cfg.stable_service,
                                 "set --service (or --workload) to the Service whose selector switches")])[("Service", cfg.stable_service)]
    live_colour = (svc.get("spec", {}).get("selector") or {}).get(cfg.selector_key)
    if live_colour not in cfg.colours:
        raise UsageError(f"Service {ns}/{svc['metadata']['name']} selects {cfg.selector_key}={live_colour!r}, "
                         f"expected one of {', '.join(cfg.colours)}",
                         hint="set --selector-key to the label that names the colour")
    idle_colour = cfg.colours[1] if live_colour == cfg.colours[0] else cfg.colours[0]
    base = cfg.stable_deployment
    live_name, idle_name = f"{base}-{live_colour}", f"{base}-{idle_colour}"
    live_dep = _read_all(store, ns, [("Deployment", live_name, f"blue-green expects Deployments {base}-blue and {base}-green "
                                                                "(set --deployment or --workload to their base name)")])[("Deployment", live_name)]
    labels, notes = version_labels(live_dep, cfg.version, version, previous=previous,
                                   service_selector=(svc.get("spec") or {}).get("selector"))
    version_ops(live_dep, cfg.version, model, version, labels)  # --image and --container, before the lock
    idle_dep = store.get("Deployment", idle_name, ns)
    router = SelectorRouter(svc["metadata"]["name"], cfg.selector_key, live_colour, idle_colour)
    snap = _Snapshot()
    snap.record("Service", router.name, "traffic", svc, router.snapshot_paths(svc))
    snap.record("Deployment", idle_name, "workload", idle_dep,
                [pointer("spec", "replicas")] + (version_paths(idle_dep, cfg.version, labels) if idle_dep else []))
    snap.record("Deployment", live_name, "workload", live_dep, [pointer("spec", "replicas")])
    state = _base_state(cfg, model=model, version=version, previous=previous, owner=owner, now=now,
                        router_label="service-selector", stable=live_name, canary=idle_name,
                        traffic=f"Service/{router.name}", snapshot=snap.objects)
    live_replicas = int(live_dep.get("spec", {}).get("replicas", 1))
    objects = {("Service", cfg.stable_service): svc, ("Deployment", live_name): live_dep}
    if idle_dep is not None:
        objects[("Deployment", idle_name)] = idle_dep

    def tell(obj: dict[str, Any]) -> list[Any]:
        return version_ops(obj, cfg.version, model, version, labels)

    steps: list[st.Step] = []
    add = steps.append
    if idle_dep is None:
        dep = colour_deployment(live_dep, name=idle_name, key=cfg.selector_key, colour=idle_colour)
        add(st.Create("prepare", why=f"create the {idle_colour} Deployment", obj=apply_patch(dep, tell(dep), in_place=False)))
    else:
        add(st.SetVersion("prepare", why=f"tell {idle_colour} the new version", kind="Deployment", name=idle_name,
                          compute=lambda d: tell(d) + set_ops(d, pointer("spec", "replicas"), live_replicas)))
    add(st.Record("prepare", mutate=lambda s, now: setattr(s, "step_index", 0)))
    add(st.WaitReady("prepare", name=idle_name, what=f"idle colour ({idle_colour})"))
    add(st.Smoke("prepare", why="smoke check"))
    add(st.Pause("prepare", why="pause", seconds=cfg.pause or 0.0))
    add(st.Analysis("prepare", 0, why="judge", weight=0, compare_with=live_name))
    add(st.SetWeight("switch", why=f"switch Service {router.name} to {idle_colour}", kind="Service", name=router.name,
                     weight=100, compute=lambda s: router.weight_ops(s, 100),
                     note=f"Service {router.name} now selects {cfg.selector_key}={idle_colour}"))

    def switched(s: RolloutState, at: datetime) -> None:
        s.phase, s.weight, s.keep_until = "switched", 100, at + timedelta(seconds=cfg.keep)

    add(st.Record("switch", mutate=switched))
    add(st.PromoteInRegistry("switch", why="registry", final=False))
    add(st.Keep("keep", why=f"keep {live_name} up for {cfg.keep:g}s"))
    add(st.Scale("keep", why="scale the old colour to 0", kind="Deployment", name=live_name, replicas=0,
                 compute=st.replicas_ops(0)))
    add(st.Record("keep", mutate=lambda s, now: (setattr(s, "phase", "succeeded"), setattr(s, "outcome", "promoted"))))
    return Prepared(state=state, router=router, steps=steps, warnings=notes, objects=objects)


__all__ = ["Prepared", "prepare", "make_router", "router_of", "canary_capacity", "baseline_share", "TRACK_LABEL",
           "BASELINE_NOTE"]

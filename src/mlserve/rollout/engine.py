"""The rollout engine: canary and blue-green on any :class:`~mlserve.rollout.store.ResourceStore`.

There is no controller in the cluster: the process that runs ``mlserve rollout canary`` drives the
rollout, and everything another process needs to see, abort or resume it lives in the cluster (see
:mod:`mlserve.rollout.state`). The order of events of a canary:

1. resolve NAME and ``--to`` in the registry; read the stable Deployment, Service and router object;
2. write the revert snapshot and take the lock (one Lease per model), before any other change;
3. create the canary Deployment and Service from the stable ones where missing, tell the canary the
   new version (image and/or env var), wait until it is ready; it gets no traffic before that;
4. for each step: set the weight (guarded patch), check the router's status, pause (watching for
   ``promote``/``abort`` from other processes, the deadline and signals), then ask the judge;
5. success: tell the stable Deployment the new version, wait until ready, all traffic back to
   stable, scale the canary to 0, promote in the registry;
   failure: traffic back to stable at once, restore every snapshot field, delete what the rollout
   created, journal the outcome in the registry.

Outcomes map to exit codes (``RolloutResult.exit_code``): promoted 0, rolled back by the judge /
readiness / smoke check 10, inconclusive 11, infrastructure failure 12, aborted 13.
"""

from __future__ import annotations

import copy
import getpass
import math
import os
import shlex
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Literal

from pydantic import BaseModel, Field

from mlserve import exitcodes
from mlserve.errors import ConflictError, InfrastructureError, MlserveError, NotFoundError, UsageError
from mlserve.progress import NULL_PROGRESS, Progress
from mlserve.rollout.jsonpatch import apply_patch, make_pointer, parse_pointer
from mlserve.rollout.ops import Op, changes_only, get_at, is_absent, pointer, restore_ops, set_ops, version_guard
from mlserve.rollout.registry_link import NoRegistry
from mlserve.rollout.routers import GatewayRouter, IstioRouter, NginxRouter, Router, SelectorRouter
from mlserve.rollout.state import (
    ACTIVE_PHASES,
    FieldSnapshot,
    LeaseStateStore,
    ObjectSnapshot,
    RolloutState,
    StepRecord,
    StoredState,
    lease_name,
)
from mlserve.rollout.workload import (
    VersionSpec,
    canary_objects,
    colour_deployment,
    readiness,
    version_ops,
    version_paths,
)

Outcome = Literal["promoted", "rolled-back", "inconclusive", "aborted", "failed", "paused", "dry-run"]
EXIT_FOR = {
    "promoted": exitcodes.OK,
    "dry-run": exitcodes.OK,
    "rolled-back": exitcodes.ROLLED_BACK,
    "inconclusive": exitcodes.INCONCLUSIVE,
    "failed": exitcodes.INFRASTRUCTURE,
    "aborted": exitcodes.ABORTED,
    "paused": exitcodes.ABORTED,
}
PHASE_FOR = {"promoted": "succeeded", "rolled-back": "rolled-back", "inconclusive": "inconclusive",
             "aborted": "aborted", "failed": "failed", "paused": "paused"}
CONFLICT_RETRIES = 5
DEFAULT_SLACK = 1800.0  # default --timeout: the planned pauses (+ keep) plus this, for readiness and the judge


# -- injected outside world --------------------------------------------------------------------------


class Clock:
    """Wall clock and sleep; tests may pass a subclass."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


class Interrupt:
    """Set by a signal handler (see :mod:`mlserve.rollout.interrupts`); the engine checks it between waits."""

    def __init__(self) -> None:
        self.signal: str | None = None

    def set(self, name: str) -> None:
        self.signal = name


@dataclass(frozen=True)
class JudgeWindow:
    """What the judge compares: canary against stable over [start, end]."""

    model: str
    version: str
    namespace: str
    canary: str
    stable: str
    step: int
    weight: int
    start: datetime
    end: datetime
    strategy: str = "canary"  # blue-green: the idle colour, judged before it gets the Service's traffic


Judge = Callable[[JudgeWindow], Any]  # returns an object with .verdict (and optionally .score, .reason)


# -- configuration and results -----------------------------------------------------------------------


@dataclass
class RolloutConfig:
    name: str  # the model's registry name; also the default name of Deployment, Service and route
    to: str
    strategy: Literal["canary", "blue-green"] = "canary"
    namespace: str = "default"
    router: str = "gateway"
    steps: list[int] = field(default_factory=lambda: [5, 25, 50, 100])
    pause: float | None = 120.0  # None: decided by the caller (the CLI: the analysis's min_range())
    timeout: float | None = 1800.0  # None: decided by the caller (the CLI: planned waits + DEFAULT_SLACK)
    deployment: str | None = None
    service: str | None = None
    route: str | None = None
    canary_suffix: str = "-canary"
    canary_replicas: int = 1
    version: VersionSpec = field(default_factory=VersionSpec)
    ready_timeout: float = 300.0
    route_check_timeout: float = 30.0  # how long the router's controller may take to report on a change
    poll: float = 1.0
    lease_seconds: float = 60.0
    on_interrupt: Literal["abort", "pause"] = "abort"
    dry_run: bool = False
    resume: bool = False
    owner: str | None = None
    # blue-green
    selector_key: str = "slot"
    colours: tuple[str, str] = ("blue", "green")
    keep: float = 0.0
    smoke_url: str | None = None
    smoke_cmd: str | None = None
    smoke_timeout: float = 60.0
    analysis_note: str = ""  # why steps are not judged when there is no judge (recorded as their reason)

    @property
    def stable_deployment(self) -> str:
        return self.deployment or self.name

    @property
    def stable_service(self) -> str:
        return self.service or self.name

    @property
    def canary_deployment(self) -> str:
        return self.stable_deployment + self.canary_suffix

    @property
    def canary_service(self) -> str:
        return self.stable_service + self.canary_suffix

    @property
    def route_name(self) -> str:
        return self.route or self.name


class PlannedChange(BaseModel):
    stage: str
    action: Literal["create", "patch", "delete", "wait", "registry"]
    kind: str = ""
    name: str = ""
    ops: list[dict[str, Any]] | None = None
    object: dict[str, Any] | None = None
    note: str = ""


class PlanResult(BaseModel):
    model: str
    version: str
    previous_version: str | None
    strategy: str
    namespace: str
    router: str
    lease: str
    changes: list[PlannedChange]
    snapshot: list[ObjectSnapshot]
    diff: str | None = None  # manifest mode: the unified diff of the files a run would leave
    warnings: list[str] = Field(default_factory=list)


class RolloutResult(BaseModel):
    model: str
    version: str
    previous_version: str | None = None
    strategy: str
    namespace: str
    router: str
    outcome: Outcome
    exit_code: int
    phase: str
    message: str
    reverted: bool = False
    lease: str
    started_at: datetime
    ended_at: datetime
    steps: list[StepRecord] = Field(default_factory=list)
    events: list[dict[str, Any]] = Field(default_factory=list)
    changes: list[PlannedChange] = Field(default_factory=list)  # dry run: what the server accepted
    warnings: list[str] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exit_code == exitcodes.OK


class _Stop(Exception):
    """Ends the rollout early: ``outcome`` says how, the message says why."""

    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.message = message


def default_owner() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    job = os.environ.get("GITHUB_RUN_ID") or os.environ.get("CI_JOB_ID") or os.environ.get("BUILD_ID")
    suffix = f" job {job}" if job else ""
    return f"{user}@{socket.gethostname()}:{os.getpid()}{suffix}"


def planned_wait(cfg: RolloutConfig) -> float:
    """Seconds the rollout will spend in pauses (and, blue-green, keeping the old colour) at the least."""
    pause = cfg.pause or 0.0
    if cfg.strategy == "canary":
        return len(cfg.steps) * pause
    return pause + cfg.keep


def check_budget(cfg: RolloutConfig) -> None:
    """Refuse up front a rollout whose pauses (+ --keep) cannot fit in --timeout: it could only be aborted."""
    needed = planned_wait(cfg)
    if needed < cfg.timeout or cfg.dry_run:
        return
    pause = cfg.pause or 0.0
    if cfg.strategy == "canary":
        what = f"{len(cfg.steps)} steps x --pause {pause:g}s = {needed:g}s"
    else:
        what = f"--pause {pause:g}s + --keep {cfg.keep:g}s = {needed:g}s"
    raise UsageError(f"--timeout {cfg.timeout:g}s is too short for the planned waits: {what}, before any readiness wait",
                     hint="raise --timeout, or shorten --pause, --steps or --keep")


def make_router(cfg: RolloutConfig) -> Router:
    if cfg.router == "gateway":
        return GatewayRouter(cfg.route_name, cfg.stable_service, cfg.canary_service)
    if cfg.router == "nginx":
        return NginxRouter(stable_ingress=cfg.route_name, stable_service=cfg.stable_service,
                           canary_service=cfg.canary_service)
    if cfg.router == "istio":
        return IstioRouter(cfg.route_name, cfg.stable_service, cfg.canary_service)
    raise UsageError(f"unknown router {cfg.router!r} (use gateway, nginx or istio)")


# -- the engine --------------------------------------------------------------------------------------


class RolloutEngine:
    """Runs, plans, aborts, promotes and undoes rollouts against one store."""

    def __init__(self, store: Any, *, judge: Judge | None = None, registry: Any = None, clock: Clock | None = None,
                 interrupt: Interrupt | None = None, progress: Progress = NULL_PROGRESS, live: bool | None = None) -> None:
        self.store = store
        self.judge = judge
        self.registry = registry or NoRegistry()
        self.clock = clock or Clock()
        self.interrupt = interrupt or Interrupt()
        self.progress = progress
        # A live store has controllers: wait for readiness and check route status. Manifest files have none.
        self.live = bool(getattr(store, "is_live", True)) if live is None else live
        # rollout state lives beside the objects, except where a store keeps it apart (manifests: .mlserve/)
        self._state_backend = store.state_store() if hasattr(store, "state_store") else store

    # ---------------------------------------------------------------------------- small helpers

    def _require(self, kind: str, name: str, namespace: str, hint: str) -> dict[str, Any]:
        obj = self.store.get(kind, name, namespace)
        if obj is None:
            raise NotFoundError(f"{kind} {namespace}/{name} not found", hint=hint)
        return obj

    def _patch(self, ctx: "_Ctx", kind: str, name: str, compute: Callable[[dict[str, Any]], list[Op]], why: str) -> dict[str, Any] | None:
        """Read, compute guarded ops, patch; on a conflict read again and recompute.

        A 5xx answer is retried twice too: the patch is guarded by the resourceVersion it was computed
        from, so if the first attempt did land, the retry is refused and recomputed into a no-op.
        """
        server_errors = 0
        for _ in range(CONFLICT_RETRIES + 2):
            obj = self.store.get(kind, name, ctx.namespace)
            if obj is None and ctx.dry_run:
                return None  # created by an earlier (dry-run) step: nothing to validate against
            if obj is None:
                raise NotFoundError(f"{kind} {ctx.namespace}/{name} disappeared during the rollout")
            ops = compute(obj)
            if not changes_only(ops):
                return obj
            try:
                result = self.store.patch(kind, name, ctx.namespace, version_guard(obj) + ops, dry_run=ctx.dry_run)
            except ConflictError:
                continue
            except InfrastructureError:
                server_errors += 1
                if server_errors > 2:
                    raise
                self.clock.sleep(0.2 * server_errors)
                continue
            ctx.changed(PlannedChange(stage=why, action="patch", kind=kind, name=name, ops=ops))
            return result
        raise ConflictError(f"{kind} {ctx.namespace}/{name} kept changing under us ({CONFLICT_RETRIES} conflicts)",
                            hint="another writer (a GitOps controller?) is fighting over it")

    def _create(self, ctx: "_Ctx", obj: dict[str, Any], why: str) -> None:
        try:
            self.store.create(obj, dry_run=ctx.dry_run)
        except ConflictError:
            if self.store.get(obj["kind"], obj["metadata"]["name"], ctx.namespace) is None:
                raise
            return  # already there (a resumed rollout created it before)
        ctx.changed(PlannedChange(stage=why, action="create", kind=obj["kind"], name=obj["metadata"]["name"], object=obj))

    def _sleep(self, ctx: "_Ctx", seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            self._check_interrupt(ctx)
            left = end - time.monotonic()
            if left <= 0:
                return
            self.clock.sleep(min(left, 0.05))

    def _check_interrupt(self, ctx: "_Ctx") -> None:
        if not ctx.driving:
            return
        if self.interrupt.signal:
            if ctx.cfg.on_interrupt == "pause":
                raise _Stop("paused", f"{self.interrupt.signal} received: paused at {ctx.state.weight}% to the canary; "
                            f"resume with --resume or revert with `mlserve rollout abort {ctx.state.model}`")
            raise _Stop("aborted", f"{self.interrupt.signal} received: rollout aborted")
        if self.clock.now() > ctx.state.deadline:
            raise _Stop("aborted", f"deadline {ctx.state.deadline.isoformat()} passed (--timeout)")

    def _checkpoint(self, ctx: "_Ctx", mutate: Callable[[RolloutState], None] | None = None) -> None:
        """Save our state (heartbeat included); notice aborts, take-overs and commands from others."""
        if ctx.dry_run:
            if mutate:
                mutate(ctx.state)
            return
        if mutate:
            mutate(ctx.state)  # once: on a conflict only the other side's command is merged in
        for _ in range(CONFLICT_RETRIES):
            try:
                ctx.lease = ctx.states.write(ctx.state, ctx.lease, holder=ctx.owner)
                return
            except ConflictError:
                stored = ctx.states.load(ctx.state.model)
                if stored is None:
                    raise _Stop("aborted", "the rollout's Lease was deleted by someone else") from None
                remote = stored.state
                if remote.command == "abort" or remote.phase not in ACTIVE_PHASES:
                    ctx.remote_abort = True
                    ctx.remote_phase = remote.phase
                    # the aborting process may already have released the Lease (holder ""): its reason is in the state
                    who = f" ({stored.holder})" if stored.holder else ""
                    why = remote.message or (remote.events[-1].message if remote.events else "")
                    raise _Stop("aborted", f"aborted from another process{who}" + (f": {why}" if why else "")) from None
                if stored.holder and stored.holder != ctx.owner:
                    ctx.taken_over = True
                    raise _Stop("aborted", f"the rollout was taken over by {stored.holder}") from None
                if remote.command_id not in ctx.consumed:
                    ctx.state.command, ctx.state.command_id = remote.command, remote.command_id
                ctx.lease = stored.lease
        raise ConflictError(f"could not save the state of the rollout of {ctx.state.model}: too many conflicts")

    def _wait(self, ctx: "_Ctx", seconds: float, *, skippable: bool = True) -> str:
        """Pause ``seconds``, heartbeating; returns 'done' or 'skipped' (a promote command)."""
        end = time.monotonic() + seconds
        next_poll = 0.0
        while True:
            self._check_interrupt(ctx)
            now = time.monotonic()
            if now >= next_poll:
                self._checkpoint(ctx)
                command = ctx.state.command
                if command in ("promote", "promote-full"):
                    ctx.skip_all = ctx.skip_all or command == "promote-full"
                    ctx.consumed.add(ctx.state.command_id)
                    ctx.state.event(f"pause skipped by `promote{' --full' if command == 'promote-full' else ''}`", self.clock.now())
                    self._checkpoint(ctx, lambda s: (setattr(s, "command", None), setattr(s, "command_id", None)))
                if skippable and (command in ("promote", "promote-full") or ctx.skip_all):
                    return "skipped"
                next_poll = now + ctx.cfg.poll
            if now >= end:
                return "done"
            self.clock.sleep(min(end - now, next_poll - now, 0.05))

    @contextmanager
    def _beating(self, ctx: "_Ctx") -> Iterator[None]:
        """Keep the heartbeat going from a thread while the rollout blocks (smoke check, judge).

        The main thread does not touch the state meanwhile; what the heartbeat notices (an abort, a
        take-over) is raised here once the blocking call returns.
        """
        if ctx.dry_run or not ctx.driving:
            yield
            return
        stop = threading.Event()
        failure: list[BaseException] = []

        def beat() -> None:
            period = max(0.05, min(ctx.cfg.poll, ctx.cfg.lease_seconds / 3))
            while not stop.wait(period):
                try:
                    self._checkpoint(ctx)
                except (_Stop, MlserveError) as exc:
                    failure.append(exc)
                    return

        thread = threading.Thread(target=beat, name="mlserve-rollout-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
        if failure:
            raise failure[0]

    def _wait_ready(self, ctx: "_Ctx", name: str, what: str, *, min_replicas: int = 0) -> None:
        if not self.live or ctx.dry_run:
            return
        limit = time.monotonic() + ctx.cfg.ready_timeout
        next_beat = 0.0
        with self.progress.task(f"waiting for {what} {name} to be ready") as task:
            while True:
                ready, detail = readiness(self.store.get("Deployment", name, ctx.namespace), min_replicas=min_replicas)
                task.update(description=f"{what} {name}: {detail}")
                if ready:
                    ctx.note(f"{what} {name} is ready ({detail})", self.clock.now())
                    return
                if time.monotonic() > limit:
                    raise _Stop("rolled-back", f"{what} {name} not ready after {ctx.cfg.ready_timeout:g}s: {detail}")
                if ctx.driving and time.monotonic() >= next_beat:
                    self._checkpoint(ctx)
                    next_beat = time.monotonic() + ctx.cfg.poll
                self._sleep(ctx, min(ctx.cfg.poll, 0.25))

    # ---------------------------------------------------------------------------- preparing

    def _prepare(self, cfg: RolloutConfig, owner: str) -> "_Ctx":
        if cfg.pause is None:
            cfg.pause = 0.0
        if cfg.timeout is None:
            cfg.timeout = planned_wait(cfg) + DEFAULT_SLACK
        if cfg.strategy == "canary" and not cfg.steps:
            raise UsageError("--steps is empty")
        target = self.registry.target(cfg.name, cfg.to)
        previous = self.registry.current(target.model)
        ns = cfg.namespace
        now = self.clock.now()
        ctx = _Ctx(cfg=cfg, namespace=ns, owner=owner, dry_run=cfg.dry_run,
                   states=LeaseStateStore(self._state_backend, ns, now=self.clock.now), progress=self.progress)
        ctx.target = target
        snapshot: list[ObjectSnapshot] = []

        def record(kind: str, name: str, role: str, obj: dict[str, Any] | None, paths: list[str]) -> None:
            if obj is None:
                snapshot.append(ObjectSnapshot(kind=kind, name=name, role=role, created=True))
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
                fields.append(FieldSnapshot(path=path, present=not is_absent(value), value=None if is_absent(value) else copy.deepcopy(value)))
            snapshot.append(ObjectSnapshot(kind=kind, name=name, role=role, fields=fields))

        if cfg.strategy == "canary":
            stable_dep = self._require("Deployment", cfg.stable_deployment, ns, "set --deployment to the stable Deployment")
            stable_svc = self._require("Service", cfg.stable_service, ns, "set --service to the stable Service")
            router = make_router(cfg)
            created = router.creates(self.store, ns)
            router_obj = created if created is not None else self._require(
                router.kind, router.name, ns, "set --route to the object that splits traffic")
            router.weight_ops(router_obj, 0)  # validates the object's shape before anything changes
            version_ops(stable_dep, cfg.version, target.model, target.version)  # --image and --container, before the lock
            canary_dep = self.store.get("Deployment", cfg.canary_deployment, ns)
            canary_svc = self.store.get("Service", cfg.canary_service, ns)
            record(router.kind, router.name, "traffic", None if created is not None else router_obj,
                   router.snapshot_paths(router_obj))
            record("Service", cfg.canary_service, "service", canary_svc, [])
            record("Deployment", cfg.canary_deployment, "workload", canary_dep,
                   [pointer("spec", "replicas")] + (version_paths(canary_dep, cfg.version) if canary_dep else []))
            record("Deployment", cfg.stable_deployment, "workload", stable_dep, version_paths(stable_dep, cfg.version))
            ctx.objects = dict(stable_dep=stable_dep, stable_svc=stable_svc, router_obj=router_obj, router_created=created,
                               canary_dep=canary_dep, canary_svc=canary_svc)
            stable_name, canary_name = cfg.stable_deployment, cfg.canary_deployment
            router_label = router.label
        else:
            svc = self._require("Service", cfg.stable_service, ns, "set --service to the Service whose selector switches")
            live_colour = (svc.get("spec", {}).get("selector") or {}).get(cfg.selector_key)
            if live_colour not in cfg.colours:
                raise UsageError(f"Service {ns}/{svc['metadata']['name']} selects {cfg.selector_key}={live_colour!r}, "
                                 f"expected one of {', '.join(cfg.colours)}",
                                 hint="set --selector-key to the label that names the colour")
            idle_colour = cfg.colours[1] if live_colour == cfg.colours[0] else cfg.colours[0]
            base = cfg.stable_deployment
            stable_name, canary_name = f"{base}-{live_colour}", f"{base}-{idle_colour}"
            live_dep = self._require("Deployment", stable_name, ns, f"blue-green expects Deployments {base}-blue and {base}-green")
            version_ops(live_dep, cfg.version, target.model, target.version)  # --image and --container, before the lock
            idle_dep = self.store.get("Deployment", canary_name, ns)
            router = SelectorRouter(svc["metadata"]["name"], cfg.selector_key, live_colour, idle_colour)
            record("Service", router.name, "traffic", svc, router.snapshot_paths(svc))
            record("Deployment", canary_name, "workload", idle_dep,
                   [pointer("spec", "replicas")] + (version_paths(idle_dep, cfg.version) if idle_dep else []))
            record("Deployment", stable_name, "workload", live_dep, [pointer("spec", "replicas")])
            ctx.objects = dict(svc=svc, live_dep=live_dep, idle_dep=idle_dep, live_colour=live_colour, idle_colour=idle_colour)
            router_label = "service-selector"
        ctx.router = router
        ctx.state = RolloutState(
            model=target.model, version=target.version, previous_version=previous, strategy=cfg.strategy, namespace=ns,
            router=router_label, steps=list(cfg.steps) if cfg.strategy == "canary" else [100], pause_seconds=cfg.pause,
            owner=owner, started_at=now, deadline=now + timedelta(seconds=cfg.timeout), lease_seconds=cfg.lease_seconds,
            stable=stable_name, canary=canary_name, traffic_object=f"{router.kind}/{router.name}", snapshot=snapshot,
            stable_service=cfg.stable_service, canary_service=cfg.canary_service,
        )
        ctx.driving = True
        return ctx

    def _lock(self, ctx: "_Ctx") -> bool:
        """Take the lock (or resume); returns True when resuming a previous run's state."""
        cfg, state = ctx.cfg, ctx.state
        stored = ctx.states.load(state.model)
        if stored is None:
            state.event(f"rollout of {state.model} {state.version} started by {ctx.owner}", self.clock.now())
            ctx.lease = ctx.states.create(state, dry_run=ctx.dry_run)
            if ctx.dry_run:
                ctx.changed(PlannedChange(stage="lock", action="create", kind="Lease", name=lease_name(state.model)))
            return False
        prior = stored.state
        if prior.phase in ACTIVE_PHASES or (prior.phase == "failed" and not prior.reverted):
            alive = not stored.stale and prior.phase != "paused" and prior.phase != "failed"
            if cfg.resume and not alive:
                if (prior.version, prior.strategy) != (state.version, state.strategy):
                    raise ConflictError(f"cannot resume: the stored rollout of {prior.model} is {prior.strategy} to "
                                        f"{prior.version}, not {state.strategy} to {state.version}")
                if prior.phase == "failed" and prior.reverted:
                    raise ConflictError(f"cannot resume: the rollout of {prior.model} failed and was reverted; start a new one")
                prior.owner = ctx.owner
                prior.phase = "progressing" if prior.phase in ("paused", "failed") else prior.phase
                prior.command = None
                prior.deadline = self.clock.now() + timedelta(seconds=cfg.timeout)
                prior.lease_seconds = cfg.lease_seconds
                prior.pause_seconds = cfg.pause
                prior.event(f"resumed by {ctx.owner} at step {prior.step_index + 1}", self.clock.now())
                ctx.state = prior
                ctx.lease = ctx.states.write(prior, stored.lease, holder=ctx.owner, acquire=True, dry_run=ctx.dry_run)
                return True
            since = prior.started_at.isoformat(timespec="seconds")
            if alive:
                raise ConflictError(
                    f"a rollout of {prior.model} ({prior.strategy} to {prior.version}) is already running, "
                    f"owned by {stored.holder}, since {since}",
                    hint=f"wait for it (`mlserve rollout status {prior.model} --wait`) or `mlserve rollout abort {prior.model}`",
                )
            raise ConflictError(
                f"a rollout of {prior.model} to {prior.version} is {prior.phase if prior.phase != 'progressing' else 'stranded'}: "
                f"its owner {stored.holder or prior.owner} last reported at {stored.renewed_at}",
                hint=f"revert it with `mlserve rollout abort {prior.model}` or continue it with --resume",
            )
        if not prior.reverted and prior.phase != "succeeded":
            raise ConflictError(
                f"the last rollout of {prior.model} to {prior.version} ended {prior.phase} without being reverted: "
                f"traffic may still be split",
                hint=f"revert it with `mlserve rollout abort {prior.model}` first",
            )
        state.event(f"rollout of {state.model} {state.version} started by {ctx.owner} "
                    f"(previous rollout: {prior.phase})", self.clock.now())
        ctx.lease = ctx.states.write(state, stored.lease, holder=ctx.owner, acquire=True, dry_run=ctx.dry_run)
        if ctx.dry_run:
            ctx.changed(PlannedChange(stage="lock", action="patch", kind="Lease", name=lease_name(state.model)))
        return False

    # ---------------------------------------------------------------------------- canary

    def run(self, cfg: RolloutConfig) -> RolloutResult:
        """Run a canary or blue-green rollout to its end; see the module docstring for outcomes."""
        owner = cfg.owner or default_owner()
        ctx = self._prepare(cfg, owner)
        resumed = self._lock(ctx)
        try:
            if cfg.strategy == "canary":
                self._canary(ctx, resumed)
            else:
                self._blue_green(ctx, resumed)
            outcome: Outcome = "dry-run" if ctx.dry_run else "promoted"
            message = ("dry run: every change was accepted by the server and none was applied" if ctx.dry_run
                       else f"{ctx.state.model} {ctx.state.version} promoted")
        except _Stop as stop:
            outcome, message = stop.outcome, stop.message
            self._finish_failed(ctx, outcome, message)
        except InfrastructureError as exc:
            outcome, message = "failed", exc.message
            self._finish_failed(ctx, outcome, message)
        except MlserveError as exc:
            outcome, message = "failed", str(exc)
            self._finish_failed(ctx, outcome, message)
        except (Exception, KeyboardInterrupt) as exc:  # a bug (or Ctrl-C without catch_signals): still revert
            self._finish_failed(ctx, "failed", f"unexpected {type(exc).__name__}: {exc}")
            raise
        return self._result(ctx, outcome, message)

    def _canary(self, ctx: "_Ctx", resumed: bool) -> None:
        cfg, state, o = ctx.cfg, ctx.state, ctx.objects
        router: Router = ctx.router
        version_of = lambda obj: version_ops(obj, cfg.version, state.model, state.version)  # noqa: E731
        if resumed and state.phase == "promoting":
            # Every step had passed when the previous owner died: finish the promotion (each of its
            # changes is idempotent) instead of sending traffic to a canary it may have scaled to 0.
            ctx.note(f"resuming the promotion of {state.version}", self.clock.now())
            self._promote_canary(ctx)
            return
        if not resumed or state.step_index < 0:
            # The canary: created from stable where missing, told the version, then ready.
            ns = ctx.namespace
            if self.store.get("Service", cfg.canary_service, ns) is None or self.store.get("Deployment", cfg.canary_deployment, ns) is None:
                dep, svc = canary_objects(o["stable_dep"], o["stable_svc"], deployment_name=cfg.canary_deployment,
                                          service_name=cfg.canary_service, replicas=cfg.canary_replicas, model=state.model)
                if self.store.get("Service", cfg.canary_service, ns) is None:
                    self._create(ctx, svc, "create canary Service")
                if self.store.get("Deployment", cfg.canary_deployment, ns) is None:
                    self._create(ctx, apply_patch(dep, version_of(dep), in_place=False), "create canary Deployment")
            if o.get("canary_dep") is not None or resumed:
                self._patch(ctx, "Deployment", cfg.canary_deployment,
                            lambda d: version_of(d) + set_ops(d, pointer("spec", "replicas"), max(1, cfg.canary_replicas)),
                            "tell the canary the new version")
            created = o.get("router_created")
            if created is not None and self.store.get(router.kind, router.name, ns) is None:
                self._create(ctx, created, f"create the {router.label} canary object")
        self._checkpoint(ctx)
        self._wait_ready(ctx, cfg.canary_deployment, "canary", min_replicas=1)
        first = max(state.step_index, 0)
        for index in range(first, len(state.steps)):
            weight = state.steps[index]
            started = self.clock.now()
            self._checkpoint(ctx, lambda s: setattr(s, "step_index", index))
            self._scale_canary(ctx, weight)  # capacity first, and ready, before the weight moves
            self._set_weight(ctx, weight, f"step {index + 1}: {weight}% to the canary")
            self._checkpoint(ctx, lambda s: setattr(s, "weight", weight))  # recorded once really applied
            ctx.note(f"step {index + 1}/{len(state.steps)}: {weight}% of traffic to {state.canary}", started)
            if ctx.dry_run:
                break  # the server validated the first step; the next ones differ only in numbers
            self._wait(ctx, cfg.pause)
            self._judge(ctx, index, weight, started)
        self._promote_canary(ctx)

    def _canary_capacity(self, ctx: "_Ctx", weight: int) -> int:
        """Replicas the canary needs for ``weight``% of the traffic: its share of stable's, at least --canary-replicas."""
        stable = (ctx.objects.get("stable_dep") or {}).get("spec", {}).get("replicas", 1)
        return max(1, ctx.cfg.canary_replicas, math.ceil(int(stable or 0) * weight / 100))

    def _scale_canary(self, ctx: "_Ctx", weight: int) -> None:
        want = self._canary_capacity(ctx, weight)
        self._patch(ctx, "Deployment", ctx.cfg.canary_deployment,
                    lambda d: set_ops(d, pointer("spec", "replicas"), want), f"scale the canary to {want} for {weight}%")
        self._wait_ready(ctx, ctx.cfg.canary_deployment, "canary", min_replicas=1)

    def _set_weight(self, ctx: "_Ctx", weight: int, why: str) -> None:
        router: Router = ctx.router
        obj = self._patch(ctx, router.kind, router.name, lambda r: router.weight_ops(r, weight), why)
        if not self.live or ctx.dry_run or obj is None:
            return
        # Give the router's controller time to report on this generation before reading its verdict.
        generation = (obj.get("metadata") or {}).get("generation")
        limit = time.monotonic() + ctx.cfg.route_check_timeout
        while generation is not None and _lagging(obj, generation):
            if time.monotonic() > limit:
                ctx.warnings.append(f"{router.kind} {router.name}: the controller has not reported on generation "
                                    f"{generation} after {ctx.cfg.route_check_timeout:g}s; its conditions may be stale")
                break
            if ctx.driving:
                self._checkpoint(ctx)  # heartbeat while the controller catches up
            self._sleep(ctx, min(ctx.cfg.poll, 0.25))
            obj = self.store.get(router.kind, router.name, ctx.namespace) or obj
        errors, warnings = router.problems(obj)
        for w in warnings:
            if w not in ctx.warnings:
                ctx.warnings.append(w)
        if errors:
            raise InfrastructureError(f"the traffic router refused the change: {'; '.join(errors)}")

    def _judge(self, ctx: "_Ctx", index: int, weight: int, started: datetime) -> None:
        state = ctx.state
        record = StepRecord(index=index, weight=weight, started_at=started)
        if self.judge is None:
            record.verdict, record.reason = "skipped", ctx.cfg.analysis_note or "no analysis configured"
        else:
            window = JudgeWindow(model=state.model, version=state.version, namespace=ctx.namespace, canary=state.canary,
                                 stable=state.stable, step=index, weight=weight, start=started, end=self.clock.now(),
                                 strategy=state.strategy)
            with self.progress.task(f"judging step {index + 1}"), self._beating(ctx):
                verdict = self.judge(window)
            record.verdict = str(getattr(verdict, "verdict", verdict))
            record.score = getattr(verdict, "score", None)
            record.reason = str(getattr(verdict, "reason", "") or "")
            if hasattr(verdict, "model_dump"):
                record.analysis = verdict.model_dump(mode="json")
            for w in getattr(verdict, "warnings", None) or []:
                ctx.warnings.append(f"step {index + 1}: {w}")
        record.ended_at = self.clock.now()
        self._checkpoint(ctx, lambda s: s.record.append(record))
        score = f" (score {record.score:g})" if record.score is not None else ""
        ctx.note(f"step {index + 1} at {weight}%: {record.verdict}{score} {record.reason}".rstrip(), record.ended_at)
        if record.verdict == "fail":
            raise _Stop("rolled-back", f"the judge failed step {index + 1} at {weight}%{score}: {record.reason}".rstrip(": "))
        if record.verdict == "inconclusive":
            raise _Stop("inconclusive", f"not enough data to judge step {index + 1} at {weight}%: {record.reason}".rstrip(": "))
        if record.verdict == "marginal":
            ctx.warnings.append(f"step {index + 1}: marginal verdict{score}; continuing")
        elif record.verdict not in ("pass", "skipped"):
            raise _Stop("inconclusive", f"unknown verdict {record.verdict!r} at step {index + 1}")

    def _promote_canary(self, ctx: "_Ctx") -> None:
        cfg, state = ctx.cfg, ctx.state
        self._checkpoint(ctx, lambda s: setattr(s, "phase", "promoting"))
        self._patch(ctx, "Deployment", cfg.stable_deployment,
                    lambda d: version_ops(d, cfg.version, state.model, state.version), "tell stable the new version")
        self._wait_ready(ctx, cfg.stable_deployment, "stable")
        self._set_weight(ctx, 0, "all traffic back to stable")
        ctx.note(f"stable {cfg.stable_deployment} serves {state.version} and takes all traffic", self.clock.now())
        self._patch(ctx, "Deployment", cfg.canary_deployment,
                    lambda d: set_ops(d, pointer("spec", "replicas"), 0), "scale the canary to 0")
        ctx.note(f"canary {cfg.canary_deployment} scaled to 0", self.clock.now())
        self._registry_success(ctx)

    def _registry_success(self, ctx: "_Ctx") -> None:
        state = ctx.state
        if ctx.dry_run:
            ctx.changed(PlannedChange(stage="registry", action="registry", note=f"promote {state.model} {state.version} to production"))
            return
        try:
            self.registry.promote(state.model, state.version, f"{state.strategy} rollout in {ctx.namespace} succeeded")
            state.promoted_in_registry = True
            ctx.note(f"registry: {state.model}@production is now {state.version}", self.clock.now())
        except MlserveError as exc:
            ctx.warnings.append(f"the cluster serves {state.version} but the registry promotion failed: {exc} "
                                f"(run `mlserve promote {state.model} {state.version}`)")
        self._checkpoint(ctx, lambda s: (setattr(s, "phase", "succeeded"), setattr(s, "outcome", "promoted"),
                                         setattr(s, "weight", 0 if s.strategy == "canary" else 100)))
        ctx.release = True

    # ---------------------------------------------------------------------------- blue-green

    def _blue_green(self, ctx: "_Ctx", resumed: bool) -> None:
        cfg, state, o = ctx.cfg, ctx.state, ctx.objects
        router: SelectorRouter = ctx.router
        live_replicas = int(o["live_dep"].get("spec", {}).get("replicas", 1))
        version_of = lambda obj: version_ops(obj, cfg.version, state.model, state.version)  # noqa: E731
        if state.phase == "progressing":
            if self.store.get("Deployment", state.canary, ctx.namespace) is None:
                dep = colour_deployment(o["live_dep"], name=state.canary, key=cfg.selector_key, colour=o["idle_colour"])
                self._create(ctx, apply_patch(dep, version_of(dep), in_place=False), f"create the {o['idle_colour']} Deployment")
            else:
                self._patch(ctx, "Deployment", state.canary,
                            lambda d: version_of(d) + set_ops(d, pointer("spec", "replicas"), live_replicas),
                            f"tell {o['idle_colour']} the new version")
            self._checkpoint(ctx, lambda s: setattr(s, "step_index", 0))
            self._wait_ready(ctx, state.canary, f"idle colour ({o['idle_colour']})")
            started = self.clock.now()
            if not ctx.dry_run:
                self._smoke(ctx)
                self._wait(ctx, cfg.pause)
                self._judge(ctx, 0, 0, started)
            self._set_weight(ctx, 100, f"switch Service {router.name} to {o['idle_colour']}")
            keep_until = self.clock.now() + timedelta(seconds=cfg.keep)
            self._checkpoint(ctx, lambda s: (setattr(s, "phase", "switched"), setattr(s, "weight", 100),
                                             setattr(s, "keep_until", keep_until)))
            ctx.note(f"Service {router.name} now selects {cfg.selector_key}={o['idle_colour']}", self.clock.now())
            if ctx.dry_run:
                self._registry_success(ctx)
                return
            try:
                self.registry.promote(state.model, state.version, f"blue-green switch in {ctx.namespace}")
                self._checkpoint(ctx, lambda s: setattr(s, "promoted_in_registry", True))
            except MlserveError as exc:
                ctx.warnings.append(f"registry promotion failed: {exc}")
        # Keep the old colour up so `undo` is a selector switch; then scale it down.
        state = ctx.state
        left = ((state.keep_until or self.clock.now()) - self.clock.now()).total_seconds()
        if left > 0:
            try:
                self._wait(ctx, left, skippable=True)
            except _Stop as stop:
                if ctx.remote_abort or ctx.taken_over:
                    raise
                if self.clock.now() > state.deadline:
                    # past the deadline the switch stands: the old colour must not stay at full size forever
                    ctx.warnings.append(f"{stop.message} while keeping {state.stable}: the switch to {state.version} "
                                        f"stands and {state.stable} is scaled to 0 early")
                    self._patch(ctx, "Deployment", state.stable, lambda d: set_ops(d, pointer("spec", "replicas"), 0),
                                "scale the old colour to 0")
                    self._checkpoint(ctx, lambda s: (setattr(s, "phase", "succeeded"), setattr(s, "outcome", "promoted")))
                    ctx.release = True
                    return
                ctx.warnings.append(f"{stop.message}: the switch to {state.version} stands and {state.stable} was left running")
                self._checkpoint(ctx, lambda s: (setattr(s, "phase", "succeeded"), setattr(s, "outcome", "promoted")))
                ctx.release = True
                return
        self._patch(ctx, "Deployment", state.stable, lambda d: set_ops(d, pointer("spec", "replicas"), 0),
                    "scale the old colour to 0")
        self._checkpoint(ctx, lambda s: (setattr(s, "phase", "succeeded"), setattr(s, "outcome", "promoted")))
        ctx.release = True

    def _smoke(self, ctx: "_Ctx") -> None:
        cfg, state = ctx.cfg, ctx.state
        if cfg.smoke_url:
            try:
                with self._beating(ctx), urllib.request.urlopen(cfg.smoke_url, timeout=cfg.smoke_timeout) as resp:  # noqa: S310
                    code = resp.status
            except urllib.error.HTTPError as exc:
                code = exc.code
            except (urllib.error.URLError, OSError) as exc:
                raise _Stop("rolled-back", f"smoke check {cfg.smoke_url} failed: {exc}") from None
            if not 200 <= code < 300:
                raise _Stop("rolled-back", f"smoke check {cfg.smoke_url} answered {code}")
            ctx.note(f"smoke check {cfg.smoke_url}: {code}", self.clock.now())
        if cfg.smoke_cmd:
            env = dict(os.environ, MLSERVE_ROLLOUT_MODEL=state.model, MLSERVE_ROLLOUT_VERSION=state.version,
                       MLSERVE_ROLLOUT_NAMESPACE=ctx.namespace, MLSERVE_ROLLOUT_TARGET=state.canary)
            try:
                with self._beating(ctx):
                    done = subprocess.run(shlex.split(cfg.smoke_cmd), env=env, capture_output=True, text=True,
                                          timeout=cfg.smoke_timeout, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise _Stop("rolled-back", f"smoke command failed to run: {exc}") from None
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
                raise _Stop("rolled-back", f"smoke command exited {done.returncode}: {tail[0][:200]}")
            ctx.note("smoke command passed", self.clock.now())

    # ---------------------------------------------------------------------------- reverting

    def _revert(self, ctx: "_Ctx", state: RolloutState, *, undo: bool = False) -> list[PlannedChange]:
        """Re-apply the snapshot: traffic first (abort) or capacity first (undo); delete what we created."""
        done: list[PlannedChange] = []
        ns = state.namespace
        sub = _Ctx(cfg=ctx.cfg, namespace=ns, owner=ctx.owner, dry_run=ctx.dry_run, states=ctx.states)
        sub.state = state
        traffic = [s for s in state.snapshot if s.role == "traffic"]
        workloads = [s for s in state.snapshot if s.role == "workload" and not s.created]
        created = [s for s in state.snapshot if s.created and s.role != "traffic"]
        router = _router_for_revert(state)

        def restore(snap: ObjectSnapshot) -> None:
            if snap.created:
                if self.store.get(snap.kind, snap.name, ns) is not None:
                    if not ctx.dry_run:
                        self.store.delete(snap.kind, snap.name, ns)
                    done.append(PlannedChange(stage="revert", action="delete", kind=snap.kind, name=snap.name))
                return

            def compute(obj: dict[str, Any]) -> list[Op]:
                ops: list[Op] = []
                for f in snap.fields:
                    ops += restore_ops(obj, f.path, f.present, f.value)
                if snap.role == "traffic" and router is not None:
                    simulated = apply_patch(obj, changes_only(ops), in_place=False) if ops else obj
                    if router.weight(simulated) != 0:
                        ops += router.weight_ops(simulated, 0)  # never leave traffic on a canary
                return ops

            if self.store.get(snap.kind, snap.name, ns) is None:
                ctx.warnings.append(f"{snap.kind} {ns}/{snap.name} no longer exists; nothing to restore")
                return
            sub.changes = []
            self._patch(sub, snap.kind, snap.name, compute, "revert")
            done.extend(sub.changes)

        if undo:
            # Capacity first: whatever was scaled down comes back and is ready before traffic moves.
            for snap in workloads:
                replicas = next((f for f in snap.fields if f.path == "/spec/replicas"), None)
                if replicas is not None and replicas.present and snap.name == state.stable:
                    restore(snap)
                    self._wait_ready(sub, snap.name, "previous version")
            for snap in traffic:
                restore(snap)
            for snap in workloads:
                restore(snap)
        else:
            for snap in traffic:
                restore(snap)
            for snap in workloads:
                restore(snap)
        for snap in created:
            restore(snap)
        for snap in traffic:
            if snap.created:
                restore(snap)
        return done

    def _finish_failed(self, ctx: "_Ctx", outcome: Outcome, message: str) -> None:
        state = ctx.state
        state.event(message, self.clock.now())
        if outcome == "paused":
            try:
                self._save_final(ctx, lambda s: (setattr(s, "phase", "paused"), setattr(s, "message", message)), holder="")
            except MlserveError as exc:
                ctx.warnings.append(f"could not record the pause: {exc}")
            return
        if ctx.taken_over or ctx.remote_phase == "undone":
            if ctx.remote_phase == "undone" and state.promoted_in_registry and not ctx.dry_run:
                # an undo may have read the state before our registry promotion landed: take it back (CAS)
                try:
                    self.registry.restore(state.model, state.previous_version, state.version,
                                          f"mlserve rollout undo in {ctx.namespace}")
                except MlserveError as exc:
                    ctx.warnings.append(f"registry rollback failed: {exc}")
            return  # someone else owns the rollout now: touch nothing else
        reverted = False
        for attempt in range(3):
            try:
                ctx.reverted_changes = self._revert(ctx, state)
                reverted = True
                break
            except (InfrastructureError, ConflictError) as exc:
                ctx.warnings.append(f"revert attempt {attempt + 1} failed: {exc}")
                self.clock.sleep(0.2 * (attempt + 1))
        ctx.reverted = reverted
        if ctx.remote_abort and state.promoted_in_registry and not ctx.dry_run:
            # an abort may have read the state before our registry promotion landed: take it back (CAS)
            try:
                self.registry.restore(state.model, state.previous_version, state.version,
                                      f"mlserve rollout abort in {ctx.namespace}")
            except MlserveError as exc:
                ctx.warnings.append(f"registry rollback failed: {exc}")
        if ctx.remote_abort:
            # the aborting process records the outcome; we only made sure no step of ours survived it
            if not reverted:
                ctx.final_message = (f"{message}; this process could not re-apply the snapshot either: traffic may "
                                     f"still be split; run `mlserve rollout abort {state.model}` when the API is back")
            return
        if not reverted:
            message += (f"; the snapshot could not be re-applied, traffic may still be split: "
                        f"run `mlserve rollout abort {state.model}` when the API is back")
        ctx.final_message = message
        phase = PHASE_FOR[outcome]
        try:
            self._save_final(ctx, lambda s: (setattr(s, "phase", phase), setattr(s, "outcome", outcome),
                                             setattr(s, "reverted", reverted), setattr(s, "message", message),
                                             setattr(s, "weight", 0 if reverted else s.weight)), holder="")
        except MlserveError as exc:
            ctx.warnings.append(f"could not record the outcome in the Lease: {exc}")
        if not ctx.dry_run:
            try:
                self.registry.journal(state.model, f"rollout-{outcome}",
                                      {"reason": message, "namespace": ctx.namespace, "strategy": state.strategy,
                                       "step": state.step_index + 1, "weight": state.weight, "reverted": reverted},
                                      version=state.version)
            except MlserveError as exc:
                ctx.warnings.append(f"could not journal the outcome in the registry: {exc}")

    def _save_final(self, ctx: "_Ctx", mutate: Callable[[RolloutState], None], holder: str) -> None:
        if ctx.dry_run:
            return
        for _ in range(CONFLICT_RETRIES):
            stored = ctx.states.load(ctx.state.model)
            if stored is None:
                return
            mutate(ctx.state)
            ctx.state.command = None
            try:
                ctx.lease = ctx.states.write(ctx.state, stored.lease, holder=holder)
                return
            except ConflictError:
                continue

    def _result(self, ctx: "_Ctx", outcome: Outcome, message: str) -> RolloutResult:
        state = ctx.state
        if ctx.release and not ctx.dry_run:
            try:
                self._save_final(ctx, lambda s: None, holder="")
            except MlserveError as exc:
                ctx.warnings.append(f"could not release the Lease: {exc}")
        return RolloutResult(
            model=state.model, version=state.version, previous_version=state.previous_version, strategy=state.strategy,
            namespace=ctx.namespace, router=state.router, outcome=outcome, exit_code=EXIT_FOR[outcome],
            phase=state.phase if not ctx.dry_run else "dry-run", message=ctx.final_message or message,
            reverted=ctx.reverted, lease=lease_name(state.model), started_at=state.started_at, ended_at=self.clock.now(),
            steps=state.record, events=[e.model_dump(mode="json") for e in state.events],
            changes=ctx.changes if ctx.dry_run else [], warnings=ctx.warnings,
        )

    # ---------------------------------------------------------------------------- plan

    def plan(self, cfg: RolloutConfig) -> PlanResult:
        """The exact patches a rollout would send if every step passed; nothing is applied."""
        ctx = self._prepare(cfg, cfg.owner or default_owner())
        state, o = ctx.state, ctx.objects
        sim: dict[tuple[str, str], dict[str, Any]] = {}
        changes: list[PlannedChange] = []

        def current(kind: str, name: str) -> dict[str, Any]:
            key = (kind, name)
            if key not in sim:
                sim[key] = copy.deepcopy(self._require(kind, name, ctx.namespace, ""))
            return sim[key]

        def patch(stage: str, kind: str, name: str, ops: list[Op]) -> None:
            if changes_only(ops):
                sim[(kind, name)] = apply_patch(current(kind, name), ops, in_place=False)
                changes.append(PlannedChange(stage=stage, action="patch", kind=kind, name=name, ops=ops))

        def create(stage: str, obj: dict[str, Any]) -> None:
            sim[(obj["kind"], obj["metadata"]["name"])] = copy.deepcopy(obj)
            changes.append(PlannedChange(stage=stage, action="create", kind=obj["kind"], name=obj["metadata"]["name"], object=obj))

        existing = ctx.states.load(state.model)
        if existing is not None and (existing.state.phase in ACTIVE_PHASES
                                     or (existing.state.phase != "succeeded" and not existing.state.reverted)):
            ctx.warnings.append(f"a rollout of {state.model} is {existing.state.phase} (owner {existing.holder}); "
                                "running this plan would be refused")
        changes.append(PlannedChange(stage="lock", action="create" if existing is None else "patch", kind="Lease",
                                     name=lease_name(state.model), note="revert snapshot, owner, deadline, lock"))
        version_of = lambda obj: version_ops(obj, cfg.version, state.model, state.version)  # noqa: E731
        router: Router = ctx.router
        if cfg.strategy == "canary":
            if o["canary_svc"] is None or o["canary_dep"] is None:
                dep, svc = canary_objects(o["stable_dep"], o["stable_svc"], deployment_name=cfg.canary_deployment,
                                          service_name=cfg.canary_service, replicas=cfg.canary_replicas, model=state.model)
                if o["canary_svc"] is None:
                    create("create canary Service", svc)
                if o["canary_dep"] is None:
                    create("create canary Deployment", apply_patch(dep, version_of(dep), in_place=False))
            if o["canary_dep"] is not None:
                patch("tell the canary the new version", "Deployment", cfg.canary_deployment,
                      version_of(o["canary_dep"]) + set_ops(o["canary_dep"], pointer("spec", "replicas"), max(1, cfg.canary_replicas)))
            if o["router_created"] is not None:
                create(f"create the {router.label} canary object", o["router_created"])
            changes.append(PlannedChange(stage="wait", action="wait", kind="Deployment", name=cfg.canary_deployment,
                                         note="until observedGeneration, ready and available replicas match"))
            for index, weight in enumerate(state.steps):
                want = self._canary_capacity(ctx, weight)
                patch(f"scale the canary to {want} for {weight}%", "Deployment", cfg.canary_deployment,
                      set_ops(current("Deployment", cfg.canary_deployment), pointer("spec", "replicas"), want))
                patch(f"step {index + 1}: {weight}% to the canary", router.kind, router.name,
                      router.weight_ops(current(router.kind, router.name), weight))
                changes.append(PlannedChange(stage=f"step {index + 1}", action="wait",
                                             note=f"pause {cfg.pause:g}s, then judge"))
            patch("tell stable the new version", "Deployment", cfg.stable_deployment, version_of(current("Deployment", cfg.stable_deployment)))
            changes.append(PlannedChange(stage="wait", action="wait", kind="Deployment", name=cfg.stable_deployment, note="until ready"))
            patch("all traffic back to stable", router.kind, router.name, router.weight_ops(current(router.kind, router.name), 0))
            patch("scale the canary to 0", "Deployment", cfg.canary_deployment,
                  set_ops(current("Deployment", cfg.canary_deployment), pointer("spec", "replicas"), 0))
        else:
            live_replicas = int(o["live_dep"].get("spec", {}).get("replicas", 1))
            if o["idle_dep"] is None:
                dep = colour_deployment(o["live_dep"], name=state.canary, key=cfg.selector_key, colour=o["idle_colour"])
                create(f"create the {o['idle_colour']} Deployment", apply_patch(dep, version_of(dep), in_place=False))
            else:
                patch(f"tell {o['idle_colour']} the new version", "Deployment", state.canary,
                      version_of(o["idle_dep"]) + set_ops(o["idle_dep"], pointer("spec", "replicas"), live_replicas))
            changes.append(PlannedChange(stage="wait", action="wait", kind="Deployment", name=state.canary,
                                         note="until ready, then smoke check and analysis"))
            patch(f"switch to {o['idle_colour']}", "Service", router.name, router.weight_ops(current("Service", router.name), 100))
            changes.append(PlannedChange(stage="keep", action="wait", note=f"keep {state.stable} up for {cfg.keep:g}s"))
            patch("scale the old colour to 0", "Deployment", state.stable,
                  set_ops(current("Deployment", state.stable), pointer("spec", "replicas"), 0))
        changes.append(PlannedChange(stage="registry", action="registry", note=f"promote {state.model} {state.version} to production"))
        return PlanResult(model=state.model, version=state.version, previous_version=state.previous_version,
                          strategy=cfg.strategy, namespace=ctx.namespace, router=state.router, lease=lease_name(state.model),
                          changes=changes, snapshot=state.snapshot, warnings=ctx.warnings)

    # ---------------------------------------------------------------------------- other commands

    def status(self, name: str, namespace: str, *, wait: bool = False, timeout: float = 600.0,
               poll: float = 1.0) -> "StatusResult":
        states = LeaseStateStore(self._state_backend, namespace, now=self.clock.now)
        limit = time.monotonic() + timeout
        while True:
            stored = states.load(name)
            if stored is None:
                raise NotFoundError(f"no rollout of {name} recorded in namespace {namespace}",
                                    hint=f"no Lease {lease_name(name)}; check --namespace")
            result = _status_of(stored, self.store)
            if not wait or result.phase not in ACTIVE_PHASES:
                return result
            if result.stale or result.phase == "paused":
                result.exit_code = exitcodes.INFRASTRUCTURE if result.stale else exitcodes.ABORTED
                result.message = ("its owner stopped reporting: run abort or --resume" if result.stale
                                  else "paused: resume it or abort it")
                return result
            if time.monotonic() > limit:
                result.exit_code = exitcodes.INCONCLUSIVE
                result.message = f"still {result.phase} after --timeout {timeout:g}s"
                return result
            self.clock.sleep(poll)

    def abort(self, name: str, namespace: str, *, reason: str | None = None, dry_run: bool = False) -> "AbortResult":
        """Put everything back as the snapshot recorded it. Safe to repeat."""
        states = LeaseStateStore(self._state_backend, namespace, now=self.clock.now)
        who = default_owner()
        for _ in range(CONFLICT_RETRIES):
            stored = states.load(name)
            if stored is None:
                raise NotFoundError(f"no rollout of {name} recorded in namespace {namespace}")
            state = stored.state
            if state.phase in ("succeeded", "undone"):
                raise ConflictError(f"the rollout of {name} to {state.version} already {state.phase}; nothing to abort",
                                    hint=f"use `mlserve rollout undo {name}` to go back to the previous version")
            was = state.phase
            # a live or unfinished rollout, or an abort that failed half-way: the registry may need restoring
            unfinished = was in ACTIVE_PHASES or was == "failed" or not state.reverted
            state.command = None
            if state.phase in ACTIVE_PHASES or state.phase == "failed":
                # "aborted" with reverted=false until the revert is done: a running owner sees the abort
                # and stops, and no new rollout takes this Lease (and a split state as its snapshot) before.
                state.phase = "aborted"
                state.outcome = "aborted"
                state.reverted = False
                state.message = reason or f"aborted by {who}"
                state.event(f"abort requested by {who}" + (f": {reason}" if reason else ""), self.clock.now())
            try:
                lease = states.write(state, stored.lease, holder=who, dry_run=dry_run)
                break
            except ConflictError:
                continue
        else:
            raise ConflictError(f"the rollout state of {name} kept changing; try again")
        ctx = _Ctx(cfg=RolloutConfig(name=name, to=state.version, namespace=namespace), namespace=namespace,
                   owner=who, dry_run=dry_run, states=states)
        ctx.state = state
        ctx.lease = lease
        try:
            changes = self._revert(ctx, state)
        except (MlserveError, _Stop) as exc:
            detail = exc.message
            if not dry_run:
                state.event(f"abort by {who} failed half-way: {detail}", self.clock.now())
                try:
                    self._save_final(ctx, lambda s: setattr(s, "reverted", False), holder="")
                except MlserveError:
                    pass
            raise InfrastructureError(
                f"abort of {name} failed half-way, traffic may still be split between stable and the new version: {detail}",
                hint=f"run `mlserve rollout abort {name} -n {namespace}` again when the API answers") from None
        if not dry_run:
            state.reverted = True
            state.weight = 0
            try:
                self._save_final(ctx, lambda s: None, holder="")
            except MlserveError as exc:
                ctx.warnings.append(f"could not record the revert: {exc}")
            if unfinished and state.previous_version != state.version:
                # always a compare-and-swap (only if production still holds this rollout's version): the
                # process we interrupted may promote in the registry a moment after we read its state
                try:
                    self.registry.restore(name, state.previous_version, state.version, f"mlserve rollout abort in {namespace}")
                except MlserveError as exc:
                    ctx.warnings.append(f"registry rollback failed: {exc}")
            if was in ACTIVE_PHASES or was == "failed":
                try:
                    self.registry.journal(name, "rollout-aborted", {"reason": state.message, "namespace": namespace,
                                                                    "by": who, "phase_before": was}, version=state.version)
                except MlserveError as exc:
                    ctx.warnings.append(f"could not journal the abort in the registry: {exc}")
        return AbortResult(model=name, version=state.version, namespace=namespace, phase_before=was, phase=state.phase,
                           changes=changes, already_reverted=not changes, warnings=ctx.warnings)

    def promote(self, name: str, namespace: str, *, full: bool = False) -> "CommandResult":
        """Ask the running rollout to skip the current pause (``full``: every remaining pause)."""
        states = LeaseStateStore(self._state_backend, namespace, now=self.clock.now)
        for _ in range(CONFLICT_RETRIES):
            stored = states.load(name)
            if stored is None or stored.state.phase not in ACTIVE_PHASES:
                raise NotFoundError(f"no running rollout of {name} in namespace {namespace}")
            state = stored.state
            if stored.stale or state.phase == "paused":
                raise ConflictError(f"the rollout of {name} has no live owner to act on promote",
                                    hint="continue it with --resume, or abort it")
            state.command = "promote-full" if full else "promote"
            state.command_id = f"{default_owner()}@{self.clock.now().isoformat()}"
            state.event(f"promote{' --full' if full else ''} requested by {default_owner()}", self.clock.now())
            try:
                states.write(state, stored.lease, holder=stored.holder)
                return CommandResult(model=name, namespace=namespace, command=state.command, phase=state.phase,
                                     message=f"{state.command} sent to the rollout owned by {stored.holder}")
            except ConflictError:
                continue
        raise ConflictError(f"the rollout state of {name} kept changing; try again")

    def undo(self, name: str, namespace: str, *, dry_run: bool = False) -> "AbortResult":
        """Revert a finished rollout: back to the previous version (blue-green: an instant selector switch)."""
        states = LeaseStateStore(self._state_backend, namespace, now=self.clock.now)
        for _ in range(CONFLICT_RETRIES):
            stored = states.load(name)
            if stored is None:
                raise NotFoundError(f"no rollout of {name} recorded in namespace {namespace}")
            state = stored.state
            switched_bg = state.phase == "switched" and state.strategy == "blue-green"
            if state.phase != "succeeded" and not switched_bg:
                if state.phase in ACTIVE_PHASES:
                    raise ConflictError(f"the rollout of {name} is still {state.phase}", hint=f"use `mlserve rollout abort {name}`")
                raise ConflictError(f"the last rollout of {name} ended {state.phase}: its changes are already reverted")
            was = state.phase
            state.phase, state.command = "undone", None
            state.event(f"undo requested by {default_owner()}", self.clock.now())
            try:
                # Claimed first: a process still keeping the old colour sees it and stops.
                lease = states.write(state, stored.lease, holder="", dry_run=dry_run)
                break
            except ConflictError:
                continue  # the keeper's heartbeat won the race: read again
        else:
            raise ConflictError(f"the rollout state of {name} kept changing; try again")
        ctx = _Ctx(cfg=RolloutConfig(name=name, to=state.version, namespace=namespace, ready_timeout=300.0),
                   namespace=namespace, owner=default_owner(), dry_run=dry_run, states=states)
        ctx.state, ctx.lease = state, lease
        try:
            changes = self._revert(ctx, state, undo=True)
        except _Stop as stop:  # the previous version did not come back in time
            raise InfrastructureError(f"undo of {name} stopped: {stop.message}",
                                      hint="traffic was not moved; check the Deployment and run undo again") from None
        if not dry_run:
            state.reverted = True
            self._save_final(ctx, lambda s: None, holder="")
            # always a compare-and-swap, even when the state does not (yet) say the registry was promoted:
            # the process we interrupted may promote a moment after we read its state, and then undoes it too
            try:
                self.registry.restore(name, state.previous_version, state.version, f"mlserve rollout undo in {namespace}")
            except MlserveError as exc:
                ctx.warnings.append(f"registry rollback failed: {exc}")
        return AbortResult(model=name, version=state.version, namespace=namespace, phase_before=was, phase="undone",
                           changes=changes, already_reverted=False, warnings=ctx.warnings)


def _lagging(obj: dict[str, Any], generation: int) -> bool:
    """Whether a condition in ``status.parents`` was observed for an older generation than ``generation``."""
    for parent in (obj.get("status") or {}).get("parents") or []:
        for cond in parent.get("conditions") or []:
            observed = cond.get("observedGeneration")
            if observed is not None and int(observed) < int(generation):
                return True
    return False


def _router_for_revert(state: RolloutState) -> Router | None:
    """The router of a recorded rollout, rebuilt from its state (None for blue-green: the snapshot is enough)."""
    kind, _, name = state.traffic_object.partition("/")
    if state.strategy == "blue-green":
        return None
    if kind == "HTTPRoute":
        return GatewayRouter(name, state.stable_service, state.canary_service)
    if kind == "VirtualService":
        return IstioRouter(name, state.stable_service, state.canary_service)
    if kind == "Ingress":
        return NginxRouter(stable_ingress=name, stable_service=state.stable_service,
                           canary_service=state.canary_service, canary_ingress=name)
    return None


def _selector_router(state: RolloutState) -> SelectorRouter:
    """A blue-green rollout's Service switch, rebuilt from its state: the key from the snapshot, colours from the names."""
    _, _, name = state.traffic_object.partition("/")
    snap = next(s for s in state.snapshot if s.role == "traffic")
    key = parse_pointer(snap.fields[0].path)[-1]
    return SelectorRouter(name, str(key), state.stable.rsplit("-", 1)[-1], state.canary.rsplit("-", 1)[-1])


class StatusResult(BaseModel):
    model: str
    version: str
    previous_version: str | None
    strategy: str
    namespace: str
    phase: str
    outcome: str | None
    step: int  # 1-based; 0 before the first step
    steps: list[int]
    weight: int
    live_weight: int | None
    owner: str | None
    stale: bool
    started_at: datetime
    deadline: datetime
    heartbeat: datetime | None
    command: str | None
    reverted: bool
    message: str
    exit_code: int
    record: list[StepRecord]
    events: list[dict[str, Any]]


class AbortResult(BaseModel):
    model: str
    version: str
    namespace: str
    phase_before: str
    phase: str
    changes: list[PlannedChange]
    already_reverted: bool
    warnings: list[str] = Field(default_factory=list)


class CommandResult(BaseModel):
    model: str
    namespace: str
    command: str
    phase: str
    message: str


_EXIT_OF_PHASE = {"succeeded": exitcodes.OK, "rolled-back": exitcodes.ROLLED_BACK, "inconclusive": exitcodes.INCONCLUSIVE,
                  "aborted": exitcodes.ABORTED, "failed": exitcodes.INFRASTRUCTURE, "undone": exitcodes.OK}


def _status_of(stored: StoredState, store: Any) -> StatusResult:
    state = stored.state
    live: int | None = None
    try:
        kind, _, name = state.traffic_object.partition("/")
        obj = store.get(kind, name, state.namespace)
        router = _router_for_revert(state)
        if obj is not None and router is not None:
            live = router.weight(obj)
        elif obj is not None and state.strategy == "blue-green":
            live = _selector_router(state).weight(obj)
    except (MlserveError, KeyError, ValueError, TypeError, IndexError, StopIteration):
        live = None
    return StatusResult(
        model=state.model, version=state.version, previous_version=state.previous_version, strategy=state.strategy,
        namespace=state.namespace, phase=state.phase, outcome=state.outcome, step=state.step_index + 1, steps=state.steps,
        weight=state.weight, live_weight=live, owner=stored.holder or None,
        stale=bool(stored.stale and state.phase in ACTIVE_PHASES), started_at=state.started_at, deadline=state.deadline,
        heartbeat=stored.renewed_at, command=state.command, reverted=state.reverted, message=state.message,
        exit_code=_EXIT_OF_PHASE.get(state.phase, exitcodes.OK), record=state.record,
        events=[e.model_dump(mode="json") for e in state.events],
    )


@dataclass
class _Ctx:
    cfg: RolloutConfig
    namespace: str
    owner: str
    dry_run: bool
    states: LeaseStateStore
    state: RolloutState = None  # type: ignore[assignment]
    lease: dict[str, Any] = field(default_factory=dict)
    target: Any = None
    router: Any = None
    objects: dict[str, Any] = field(default_factory=dict)
    changes: list[PlannedChange] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skip_all: bool = False
    remote_abort: bool = False
    taken_over: bool = False
    release: bool = False
    reverted: bool = False
    reverted_changes: list[PlannedChange] = field(default_factory=list)
    final_message: str = ""
    progress: Progress = NULL_PROGRESS
    driving: bool = False  # the process running the rollout: heartbeats, deadline and signals apply
    remote_phase: str | None = None
    consumed: set[str | None] = field(default_factory=lambda: {None})  # command ids already acted on

    def changed(self, change: PlannedChange) -> None:
        self.changes.append(change)

    def note(self, message: str, at: datetime) -> None:
        self.progress.note(message)
        if self.state is not None:
            self.state.event(message, at)

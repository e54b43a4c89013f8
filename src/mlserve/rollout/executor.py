"""Runs a rollout's steps against a store, keeping its state in the Lease; reverts when it cannot go on.

There is no controller in the cluster: this process drives the rollout, and everything another
process needs to see, abort or resume it lives in the Lease (:mod:`mlserve.rollout.state`). The run:

1. resolve NAME and ``--to`` in the registry; :func:`~mlserve.rollout.strategies.prepare` reads the
   objects, records the revert snapshot and builds the steps;
2. take the lock (create the Lease with the snapshot) before any other change, or resume;
3. execute the steps (see :mod:`mlserve.rollout.steps`); between them, heartbeats, commands from
   other jobs (``promote``, ``abort``), signals and the deadline are noticed;
4. failure: traffic back to stable at once, every snapshot field restored, what the rollout created
   deleted (retried for ``--revert-timeout``), the outcome journaled in the registry.

Outcomes map to exit codes (``RolloutResult.exit_code``): promoted 0, rolled back by the judge /
readiness / smoke check 10, inconclusive 11, infrastructure failure 12, aborted 13. A final state
that cannot be saved in the Lease is a loud warning and never exit 0.
"""

from __future__ import annotations

import shlex
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mlserve import exitcodes
from mlserve.errors import ConflictError, InfrastructureError, MlserveError, RolledBackError, UsageError
from mlserve.progress import NULL_PROGRESS, Progress
from mlserve.rollout import steps as st
from mlserve.rollout.patching import last_writer, patch_and_read
from mlserve.rollout.registry_link import NoRegistry
from mlserve.rollout.results import EXIT_FOR, PHASE_FOR, Judge, JudgeWindow, Outcome, PlannedChange, RolloutResult
from mlserve.rollout.revert import revert_within
from mlserve.rollout.routers import Router
from mlserve.rollout.settings import DEFAULT_SLACK, RolloutConfig, planned_wait, validate
from mlserve.rollout.state import ACTIVE_PHASES, LeaseStateStore, RolloutState, StepRecord, lease_name, target_flags
from mlserve.rollout.strategies import Prepared, prepare
from mlserve.rollout.keeper import Keeper, Stop, notice_key
from mlserve.rollout.workload import workload_readiness
from mlserve.rollout.world import Interrupt, World, default_owner


@dataclass
class Run:
    """One rollout in progress: what it was asked, where it is, and what it did."""

    cfg: RolloutConfig
    owner: str
    states: LeaseStateStore
    prepared: Prepared
    state: RolloutState
    lease: dict[str, Any] = field(default_factory=dict)
    changes: list[PlannedChange] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skip_all: bool = False  # `promote --full` was received
    consumed: set[str | None] = field(default_factory=lambda: {None})  # command ids already acted on
    driving: bool = True  # heartbeats, the deadline and signals apply
    judge_from: datetime | None = None  # when the traffic now being judged started (the last weight change)
    notified: tuple[Any, ...] = ()
    final_save_failed: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock)

    def note(self, message: str, at: datetime, progress: Progress) -> None:
        progress.note(message)
        self.state.event(message, at)

    @property
    def dry_run(self) -> bool:
        return self.cfg.dry_run

    @property
    def namespace(self) -> str:
        return self.cfg.namespace

    @property
    def router(self) -> Router:
        return self.prepared.router


def resume_position(steps: list[st.Step], state: RolloutState) -> int:
    """Where a resumed rollout goes on: the promotion, the recorded step, or (blue-green) the keep."""
    if state.strategy == "blue-green":
        return st.first_of_stage(steps, "keep") if state.phase == "switched" else 0
    if state.phase == "promoting":
        return st.first_of_stage(steps, "promote")
    if state.step_index >= 0:
        return st.first_of_stage(steps, "step", state.step_index)
    return 0


class _Finished(Exception):
    """Raised by a step that ended the rollout successfully ahead of its list (the keep of a blue-green)."""


_NOT_IN_DRY_RUN = (st.WaitReady, st.Pause, st.Analysis, st.Smoke, st.Gate, st.CheckDrift, st.Keep)


class Executor:
    def __init__(self, store: Any, *, judge: Judge | None = None, registry: Any = None, world: World | None = None,
                 interrupt: Interrupt | None = None, progress: Progress = NULL_PROGRESS, live: bool = True,
                 state_backend: Any = None) -> None:
        self.store = store
        self.judge = judge
        self.registry = registry or NoRegistry()
        self.world = world or World()
        self.clock = self.world.clock
        self.interrupt = interrupt or Interrupt()
        self.progress = progress
        self.live = live
        self.state_backend = state_backend if state_backend is not None else store
        self.keeper = Keeper(self.world, self.interrupt)

    # ------------------------------------------------------------------------------------ starting

    def start(self, cfg: RolloutConfig, *, points_per_step: int | None = None) -> tuple[Prepared, Any]:
        """Validate ``cfg``, resolve the versions and prepare the steps (nothing is changed)."""
        validate(cfg)
        if cfg.pause is None:
            cfg.pause = 0.0
        if cfg.timeout is None:
            cfg.timeout = planned_wait(cfg) + DEFAULT_SLACK
        target = self.registry.target(cfg.name, cfg.to)
        previous = self.registry.current(target.model)
        prepared = prepare(self.store, cfg, model=target.model, version=target.version, previous=previous,
                           owner=cfg.owner or default_owner(), now=self.clock.now(), points_per_step=points_per_step)
        return prepared, target

    def run(self, cfg: RolloutConfig) -> RolloutResult:
        """Run a canary or blue-green rollout to its end; see the module docstring for outcomes."""
        prepared, _ = self.start(cfg)
        owner = cfg.owner or default_owner()
        run = Run(cfg=cfg, owner=owner, states=LeaseStateStore(self.state_backend, cfg.namespace, now=self.clock.now),
                  prepared=prepared, state=prepared.state, warnings=list(prepared.warnings))
        resumed = self._lock(run)
        start = resume_position(prepared.steps, run.state) if resumed else 0
        if resumed and run.state.phase == "promoting":
            run.note(f"resuming the promotion of {run.state.version}", self.clock.now(), self.progress)
        self.keeper.notify(run, "started" if not resumed else "resumed")
        run.notified = notice_key(run.state)
        outcome: Outcome
        final: dict[str, Any] = {}
        try:
            for step in prepared.steps[start:]:
                if run.dry_run and (isinstance(step, _NOT_IN_DRY_RUN) or (step.stage == "step" and step.index > 0)):
                    continue  # the server validated the first step; the next ones differ only in numbers
                self._execute(run, step)
            outcome = "dry-run" if run.dry_run else "promoted"
            message = ("dry run: every change was accepted by the server and none was applied" if run.dry_run
                       else f"{run.state.model} {run.state.version} promoted")
        except _Finished:
            outcome, message = "promoted", f"{run.state.model} {run.state.version} promoted"
        except Stop as stop:
            outcome, message = stop.outcome, stop.message
            final = self._finish_failed(run, outcome, message, by=stop.by)
        except RolledBackError as exc:  # the target refused the new version (local: it cannot be served)
            outcome, message = "rolled-back", exc.message
            final = self._finish_failed(run, outcome, message)
        except MlserveError as exc:
            outcome, message = "failed", exc.message
            final = self._finish_failed(run, outcome, message)
        except (Exception, KeyboardInterrupt) as exc:  # a bug (or Ctrl-C without catch_signals): still revert
            self._finish_failed(run, "failed", f"unexpected {type(exc).__name__}: {exc}")
            raise
        return self._result(run, outcome, final.get("message", message), reverted=final.get("reverted", False))

    def _lock(self, run: Run) -> bool:
        """Take the lock (or resume); returns True when resuming a previous run's state."""
        cfg, state = run.cfg, run.state
        stored = run.states.load(state.model)
        now = self.clock.now()
        if stored is None:
            state.event(f"rollout of {state.model} {state.version} started by {run.owner}", now)
            run.lease = run.states.create(state, dry_run=run.dry_run)
            if run.dry_run:
                run.changes.append(PlannedChange(stage="lock", action="create", kind="Lease", name=lease_name(state.model)))
            return False
        prior = stored.state
        if prior.phase in ACTIVE_PHASES or (prior.phase == "failed" and not prior.reverted):
            alive = not stored.stale and prior.phase not in ("paused", "failed")
            if cfg.resume and not alive:
                if (prior.version, prior.strategy) != (state.version, state.strategy):
                    raise ConflictError(f"cannot resume: the stored rollout of {prior.model} is {prior.strategy} to "
                                        f"{prior.version}, not {state.strategy} to {state.version}")
                prior.owner = run.owner
                prior.phase = "progressing" if prior.phase in ("paused", "failed") else prior.phase
                prior.command = None
                prior.deadline = now + timedelta(seconds=cfg.timeout or 0)
                prior.lease_seconds = cfg.lease_seconds
                prior.pause_seconds = cfg.pause or 0.0
                prior.event(f"resumed by {run.owner} at step {prior.step_index + 1}", now)
                run.state = prior
                run.lease = run.states.write(prior, stored.lease, holder=run.owner, acquire=True, dry_run=run.dry_run)
                return True
            since = prior.started_at.isoformat(timespec="seconds")
            if alive:
                raise ConflictError(
                    f"a rollout of {prior.model} ({prior.strategy} to {prior.version}) is already running, "
                    f"owned by {stored.holder}, since {since}",
                    hint=f"wait for it (`mlserve rollout status {prior.model}{target_flags(prior)} --wait`) or `mlserve rollout abort {prior.model}{target_flags(prior)}`")
            raise ConflictError(
                f"a rollout of {prior.model} to {prior.version} is {prior.phase if prior.phase != 'progressing' else 'stranded'}: "
                f"its owner {stored.holder or prior.owner} last reported at {stored.renewed_at}",
                hint=f"revert it with `mlserve rollout abort {prior.model}{target_flags(prior)}` or continue it with --resume")
        if not prior.reverted and prior.phase != "succeeded":
            raise ConflictError(
                f"the last rollout of {prior.model} to {prior.version} ended {prior.phase} without being reverted: "
                "traffic may still be split", hint=f"revert it with `mlserve rollout abort {prior.model}{target_flags(prior)}` first")
        state.event(f"rollout of {state.model} {state.version} started by {run.owner} (previous rollout: {prior.phase})", now)
        run.lease = run.states.write(state, stored.lease, holder=run.owner, acquire=True, dry_run=run.dry_run)
        if run.dry_run:
            run.changes.append(PlannedChange(stage="lock", action="patch", kind="Lease", name=lease_name(state.model)))
        return False

    # ------------------------------------------------------------------------------------ the steps

    def _execute(self, run: Run, step: st.Step) -> None:
        if isinstance(step, st.Create):
            self._create(run, step)
        elif isinstance(step, st.SetWeight):
            obj = self._change(run, step)
            self._check_route(run, obj)
            run.judge_from = self.clock.now()
        elif isinstance(step, st.Change):
            self._change(run, step)
        elif isinstance(step, st.WaitReady):
            self._wait_ready(run, step)
            if run.state.strategy == "blue-green":
                run.judge_from = self.clock.now()  # the idle colour's preview traffic is judged from here
        elif isinstance(step, st.Record):
            self.keeper.checkpoint(run, lambda s: step.mutate(s, self.clock.now()))
        elif isinstance(step, st.Gate):
            self._gate(run, step)
        elif isinstance(step, st.Pause):
            self.keeper.wait(run, step.seconds)
        elif isinstance(step, st.CheckDrift):
            self._check_drift(run, step)
        elif isinstance(step, st.Analysis):
            self._judge(run, step)
        elif isinstance(step, st.Smoke):
            self._smoke(run)
        elif isinstance(step, st.Keep):
            self._keep(run)
        elif isinstance(step, st.PromoteInRegistry):
            self._promote_in_registry(run, step)
        else:  # pragma: no cover - a new step type without its branch
            raise TypeError(f"no executor for {type(step).__name__}")
        if step.note:
            run.note(step.note, self.clock.now(), self.progress)

    def _create(self, run: Run, step: st.Create) -> None:
        obj = step.obj
        try:
            self.store.create(obj, dry_run=run.dry_run)
        except ConflictError:
            if self.store.get(obj["kind"], obj["metadata"]["name"], run.namespace) is None:
                raise
            return  # already there (a resumed rollout created it before)
        run.changes.append(PlannedChange(stage=step.why, action="create", kind=obj["kind"], name=obj["metadata"]["name"], object=obj))

    def _change(self, run: Run, step: st.Change) -> dict[str, Any] | None:
        obj, change = patch_and_read(self.store, step.kind, step.name, run.namespace, step.ops, why=step.why,
                                     dry_run=run.dry_run, sleep=self.clock.sleep)
        if change is not None:
            run.changes.append(change)
        return obj

    def _check_route(self, run: Run, obj: dict[str, Any] | None) -> None:
        """Give the router's controller time to report on this generation, then read its verdict."""
        if not self.live or run.dry_run or obj is None:
            return
        router = run.router
        generation = (obj.get("metadata") or {}).get("generation")
        limit = self.clock.monotonic() + run.cfg.route_check_timeout
        while generation is not None and _lagging(obj, generation):
            if self.clock.monotonic() > limit:
                run.warnings.append(f"{router.kind} {router.name}: the controller has not reported on generation "
                                    f"{generation} after {run.cfg.route_check_timeout:g}s; its conditions may be stale")
                break
            self.keeper.checkpoint(run)  # heartbeat while the controller catches up
            self.keeper.sleep(run, min(run.cfg.poll, 0.25))
            obj = self.store.get(router.kind, router.name, run.namespace) or obj
        errors, warnings = router.problems(obj)
        for w in warnings:
            if w not in run.warnings:
                run.warnings.append(w)
        if errors:
            raise InfrastructureError(f"the traffic router refused the change: {'; '.join(errors)}")

    def _wait_ready(self, run: Run, step: st.WaitReady) -> None:
        if not self.live or run.dry_run:
            return
        name, what = step.name, step.what
        limit = self.clock.monotonic() + run.cfg.ready_timeout
        next_beat = 0.0
        with self.progress.task(f"waiting for {what} {name} to be ready") as task:
            while True:
                state = workload_readiness(self.store, name, run.namespace, min_replicas=step.min_replicas,
                                           kind=step.kind, version=step.version or None)
                task.update(description=f"{what} {name}: {state.detail}")
                if state.ready:
                    run.note(f"{what} {name} is ready ({state.detail})", self.clock.now(), self.progress)
                    return
                if state.failed:
                    raise Stop("rolled-back", f"{what} {name} will not become ready: {state.detail}")
                if self.clock.monotonic() > limit:
                    raise Stop("rolled-back", f"{what} {name} not ready after {run.cfg.ready_timeout:g}s: {state.detail}")
                if run.driving and self.clock.monotonic() >= next_beat:
                    self.keeper.checkpoint(run)
                    next_beat = self.clock.monotonic() + run.cfg.poll
                self.keeper.sleep(run, min(run.cfg.poll, 0.25))

    def _gate(self, run: Run, step: st.Gate) -> None:
        state = run.state
        payload = {"model": state.model, "version": state.version, "namespace": run.namespace, "strategy": state.strategy,
                   "step": step.index + 1, "weight": state.steps[step.index] if 0 <= step.index < len(state.steps) else None,
                   "phase": state.phase, "event": "confirm-traffic-increase"}
        waited = False
        while True:
            with self.keeper.beating(run):
                answer = self.world.http.request("POST", step.url, body=payload, timeout=10.0)
            if answer.ok:
                run.note(f"gate {step.url} answered {answer.status} before step {step.index + 1}", self.clock.now(), self.progress)
                return
            if not waited:
                why = answer.error or f"answered {answer.status}"
                run.note(f"gate {step.url} {why}: waiting before step {step.index + 1}", self.clock.now(), self.progress)
                waited = True
            self.keeper.wait(run, run.cfg.gate_interval, skippable=False)

    def _check_drift(self, run: Run, step: st.CheckDrift) -> None:
        """The live split must still be the one this rollout set: else nothing about this step can be judged."""
        if not self.live or run.dry_run:
            return
        router = run.router
        obj = self.store.get(router.kind, router.name, run.namespace)
        problem = ""
        if obj is None:
            problem = f"{router.kind} {run.namespace}/{router.name} was deleted"
        else:
            try:
                shares = getattr(router, "shares", None)
                live = shares(obj) if shares else {"canary": router.weight(obj), "baseline": 0}
                if live.get("canary") != step.weight or live.get("baseline", 0) != step.baseline:
                    what = f"{live.get('canary')}% to {run.state.canary}"
                    if step.baseline or live.get("baseline"):
                        what += f" and {live.get('baseline')}% to {run.state.baseline}"
                    want = f"{step.weight}%" + (f" and {step.baseline}%" if step.baseline else "")
                    problem = (f"{router.kind} {run.namespace}/{router.name} now sends {what}; the rollout set {want} "
                               f"(changed by {last_writer(obj)})")
            except MlserveError as exc:
                problem = f"{router.kind} {run.namespace}/{router.name} no longer has the split the rollout set: {exc.message}"
        if not problem:
            return
        message = f"traffic changed under the rollout at step {step.index + 1}: {problem}; the step was not judged"
        if run.cfg.on_drift == "pause":
            raise Stop("paused", f"{message}; paused with traffic as it is: resume with --resume or revert with "
                                 f"`mlserve rollout abort {run.state.model}{target_flags(run.state)}`")
        raise Stop("aborted", message)

    def _judge(self, run: Run, step: st.Analysis) -> None:
        state = run.state
        index = max(step.index, 0)
        started = run.judge_from or self.clock.now()
        record = StepRecord(index=index, weight=step.weight, started_at=started)
        if self.judge is None or not step.judged:
            record.verdict, record.reason = "skipped", step.reason or run.cfg.analysis_note or "no analysis configured"
        else:
            window = JudgeWindow(model=state.model, version=state.version, namespace=run.namespace, canary=state.canary,
                                 stable=step.compare_with or state.stable, step=index, weight=step.weight, start=started,
                                 end=self.clock.now(), strategy=state.strategy,
                                 compare=state.strategy == "canary" and step.weight < 100)
            with self.progress.task(f"judging step {index + 1}"), self.keeper.beating(run):
                verdict = self.judge(window)
            record.verdict = str(getattr(verdict, "verdict", verdict))
            record.score = getattr(verdict, "score", None)
            record.reason = str(getattr(verdict, "reason", "") or "")
            if hasattr(verdict, "model_dump"):
                record.analysis = verdict.model_dump(mode="json")
            for w in getattr(verdict, "warnings", None) or []:
                run.warnings.append(f"step {index + 1}: {w}")
        record.ended_at = self.clock.now()
        self.keeper.checkpoint(run, lambda s: s.record.append(record))
        score = f" (score {record.score:g})" if record.score is not None else ""
        run.note(f"step {index + 1} at {step.weight}%: {record.verdict}{score} {record.reason}".rstrip(), record.ended_at,
                 self.progress)
        if record.verdict == "fail":
            raise Stop("rolled-back", f"the judge failed step {index + 1} at {step.weight}%{score}: {record.reason}".rstrip(": "))
        if record.verdict == "inconclusive":
            raise Stop("inconclusive", f"not enough data to judge step {index + 1} at {step.weight}%: {record.reason}".rstrip(": "))
        if record.verdict == "marginal":
            run.warnings.append(f"step {index + 1}: marginal verdict{score}; continuing")
        elif record.verdict not in ("pass", "skipped"):
            raise Stop("inconclusive", f"unknown verdict {record.verdict!r} at step {index + 1}")

    def _smoke(self, run: Run) -> None:
        cfg, state = run.cfg, run.state
        own = getattr(self.store, "smoke", None)  # the local target: one inference pinned to the new version
        if own is not None and not run.dry_run:
            with self.keeper.beating(run):
                ok, detail = own(state.version)
            if not ok:
                raise Stop("rolled-back", f"smoke check of {state.model} {state.version} failed: {detail}")
            run.note(f"smoke check: {detail}", self.clock.now(), self.progress)
        if cfg.smoke_url:
            with self.keeper.beating(run):
                answer = self.world.http.request("GET", cfg.smoke_url, timeout=cfg.smoke_timeout)
            if answer.status == 0:
                raise Stop("rolled-back", f"smoke check {cfg.smoke_url} failed: {answer.error}")
            if not answer.ok:
                raise Stop("rolled-back", f"smoke check {cfg.smoke_url} answered {answer.status}")
            run.note(f"smoke check {cfg.smoke_url}: {answer.status}", self.clock.now(), self.progress)
        if cfg.smoke_cmd:
            import os

            env = dict(os.environ, MLSERVE_ROLLOUT_MODEL=state.model, MLSERVE_ROLLOUT_VERSION=state.version,
                       MLSERVE_ROLLOUT_NAMESPACE=run.namespace, MLSERVE_ROLLOUT_TARGET=state.idle_deployment)
            with self.keeper.beating(run):
                done = self.world.commands.run(shlex.split(cfg.smoke_cmd), env=env, timeout=cfg.smoke_timeout)
            if done.returncode is None:
                raise Stop("rolled-back", f"smoke command failed to run: {done.error}")
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
                raise Stop("rolled-back", f"smoke command exited {done.returncode}: {tail[0][:200]}")
            run.note("smoke command passed", self.clock.now(), self.progress)

    def _keep(self, run: Run) -> None:
        """Blue-green: keep the old colour up so `undo` is a selector switch; past the deadline the switch stands."""
        state = run.state
        left = ((state.keep_until or self.clock.now()) - self.clock.now()).total_seconds()
        if left <= 0 or run.dry_run:
            return
        try:
            self.keeper.wait(run, left, skippable=True)
        except Stop as stop:
            if stop.by is not None:
                raise
            early = self.clock.now() > state.deadline
            run.warnings.append(f"{stop.message} while keeping {state.live_deployment}: the switch to {state.version} stands"
                                + (f" and {state.live_deployment} is scaled to 0 early" if early
                                   else f" and {state.live_deployment} was left running"))
            if not early:
                rest = [s for s in run.prepared.steps if s.stage == "keep" and isinstance(s, st.Record)]
                for step in rest:
                    self._execute(run, step)
                raise _Finished() from None

    def _promote_in_registry(self, run: Run, step: st.PromoteInRegistry) -> None:
        state = run.state
        if run.dry_run:
            run.changes.append(PlannedChange(stage="registry", action="registry",
                                             note=f"promote {state.model} {state.version} to production"))
            return
        reason = step.reason or (f"{state.strategy} rollout in {run.namespace} succeeded" if step.final
                                 else f"blue-green switch in {run.namespace}")
        try:
            # a compare-and-swap: production must still hold the version it held when the rollout started
            self.registry.promote(state.model, state.version, reason, expect_current=state.previous_version or "none")
            state.promoted_in_registry = True
            run.note(f"registry: {state.model}@production is now {state.version}", self.clock.now(), self.progress)
        except MlserveError as exc:
            if step.required:
                raise Stop("aborted", f"the registry promotion of {state.model} {state.version} failed: {exc.message}; "
                                      "the server follows production, so the rollout cannot finish") from None
            run.warnings.append(f"the cluster serves {state.version} but the registry promotion failed: {exc} "
                                f"(run `mlserve promote {state.model} {state.version}`)")
        if step.final:
            self.keeper.checkpoint(run, lambda s: (setattr(s, "phase", "succeeded"), setattr(s, "outcome", "promoted"),
                                             setattr(s, "weight", 0)))
        else:
            self.keeper.checkpoint(run)


    def _finish_failed(self, run: Run, outcome: Outcome, message: str, *, by: str | None = None) -> dict[str, Any]:
        state = run.state
        run.driving = False
        state.event(message, self.clock.now())
        if outcome == "paused":
            try:
                self.keeper.save_final(run, lambda s: (setattr(s, "phase", "paused"), setattr(s, "message", message)), holder="")
            except MlserveError as exc:
                run.warnings.append(f"could not record the pause in the Lease: {exc}")
            return {}
        if by in ("takeover",) or by == "undone":
            if by == "undone" and state.promoted_in_registry and not run.dry_run:
                # an undo may have read the state before our registry promotion landed: take it back (CAS)
                self._restore_registry(run, "undo")
            return {}  # someone else owns the rollout now: touch nothing else
        report = revert_within(self.store, state, budget=run.cfg.revert_timeout if not run.dry_run else 0.0,
                               monotonic=self.clock.monotonic, sleep=self.clock.sleep, dry_run=run.dry_run,
                               warnings=run.warnings)
        reverted = report.complete
        if not reverted:
            run.warnings.append(f"revert: {report.describe()}")
        if state.promoted_in_registry and not run.dry_run and (by == "abort" or (by is None and reverted)):
            # the abort may have read the state before our promotion landed; and a rollout that put traffic back on
            # the previous version after promoting (local: stable follows production) takes the promotion back
            self._restore_registry(run, "abort" if by == "abort" else "revert")
        if by in ("abort", "deleted"):
            # the aborting process records the outcome; we only made sure no step of ours survived it
            if not reverted:
                return {"reverted": False, "message": f"{message}; this process could not re-apply the snapshot either, "
                                                      f"traffic may still be split ({report.describe()}): run `mlserve rollout abort {state.model}{target_flags(state)}` when the API is back"}
            return {"reverted": True}
        if not reverted:
            message += (f"; the snapshot could not be re-applied within --revert-timeout {run.cfg.revert_timeout:g}s, "
                        f"traffic may still be split ({report.describe()}): run `mlserve rollout abort {state.model}{target_flags(state)}` "
                        "when the API is back")
        phase = PHASE_FOR[outcome]
        try:
            self.keeper.save_final(run, lambda s: (setattr(s, "phase", phase), setattr(s, "outcome", outcome),
                                             setattr(s, "reverted", reverted), setattr(s, "message", message),
                                             setattr(s, "weight", 0 if reverted else s.weight)), holder="")
        except MlserveError as exc:
            run.warnings.append(f"the outcome could not be saved in Lease {run.namespace}/{lease_name(state.model)}: "
                                f"{exc.message}; `mlserve rollout abort {state.model}{target_flags(state)}` clears it once its holder is gone")
            run.final_save_failed = True
        if not run.dry_run:
            try:
                self.registry.journal(state.model, f"rollout-{outcome}",
                                      {"reason": message, "namespace": run.namespace, "strategy": state.strategy,
                                       "step": state.step_index + 1, "weight": state.weight, "reverted": reverted},
                                      version=state.version)
            except MlserveError as exc:
                run.warnings.append(f"could not journal the outcome in the registry: {exc}")
        return {"reverted": reverted, "message": message}

    def _restore_registry(self, run: Run, what: str) -> None:
        state = run.state
        try:
            self.registry.restore(state.model, state.previous_version, state.version, f"mlserve rollout {what} in {run.namespace}")
        except MlserveError as exc:
            run.warnings.append(f"registry rollback failed: {exc}")

    def _result(self, run: Run, outcome: Outcome, message: str, *, reverted: bool) -> RolloutResult:
        state = run.state
        exit_code = EXIT_FOR[outcome]
        if outcome == "promoted" and not run.dry_run:
            try:
                self.keeper.save_final(run, lambda s: None, holder="")
            except MlserveError as exc:
                run.warnings.append(f"{state.model} {state.version} is promoted, but Lease "
                                    f"{run.namespace}/{lease_name(state.model)} could not record it: {exc.message}; "
                                    f"run the same command with --resume to finish recording it")
                exit_code = exitcodes.INFRASTRUCTURE
                message = f"{message}, but the rollout state could not be saved: {exc.message}"
        if run.final_save_failed and exit_code == exitcodes.OK:
            exit_code = exitcodes.INFRASTRUCTURE
        return RolloutResult(
            model=state.model, version=state.version, previous_version=state.previous_version, strategy=state.strategy,
            namespace=run.namespace, router=state.router, outcome=outcome, exit_code=exit_code,
            phase=state.phase if not run.dry_run else "dry-run", message=message, reverted=reverted,
            lease=lease_name(state.model), started_at=state.started_at, ended_at=self.clock.now(),
            steps=state.record, events=[e.model_dump(mode="json") for e in state.events],
            changes=run.changes if run.dry_run else [], warnings=run.warnings,
        )



def _lagging(obj: dict[str, Any], generation: int) -> bool:
    """Whether a condition in ``status.parents`` was observed for an older generation than ``generation``."""
    for parent in (obj.get("status") or {}).get("parents") or []:
        for cond in parent.get("conditions") or []:
            observed = cond.get("observedGeneration")
            if observed is not None and int(observed) < int(generation):
                return True
    return False


__all__ = ["Executor", "Run", "Stop", "resume_position", "UsageError"]

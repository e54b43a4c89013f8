"""The rollout engine: canary and blue-green on any :class:`~mlserve.rollout.store.ResourceStore`.

:class:`RolloutEngine` is the facade the API and the tests use. The work is done elsewhere, one
responsibility per module:

* :mod:`mlserve.rollout.strategies` reads the objects, records the revert snapshot and builds the
  rollout as a list of steps (:mod:`mlserve.rollout.steps`), once;
* :mod:`mlserve.rollout.executor` runs those steps (``run``) and reverts on failure;
* :mod:`mlserve.rollout.planner` renders the same steps against a simulation (``plan``);
* :mod:`mlserve.rollout.commands` holds ``status``, ``abort``, ``promote`` and ``undo``;
* :mod:`mlserve.rollout.world` is the injected outside world (clock, HTTP, subprocesses).
"""

from __future__ import annotations

from typing import Any

from mlserve.errors import InfrastructureError
from mlserve.progress import NULL_PROGRESS, Progress
from mlserve.rollout import commands
from mlserve.rollout.executor import Executor, Stop
from mlserve.rollout.planner import render
from mlserve.rollout.results import (  # noqa: F401 - re-exported
    EXIT_FOR,
    AbortResult,
    CommandResult,
    Judge,
    JudgeWindow,
    Outcome,
    PlannedChange,
    PlanResult,
    RolloutResult,
    StatusResult,
)
from mlserve.rollout.settings import DEFAULT_SLACK, RolloutConfig, check_budget, planned_wait  # noqa: F401 - re-exported
from mlserve.rollout.state import LeaseStateStore
from mlserve.rollout.world import Clock, Interrupt, World, default_owner  # noqa: F401 - re-exported


class RolloutEngine:
    """Runs, plans, aborts, promotes and undoes rollouts against one store."""

    def __init__(self, store: Any, *, judge: Judge | None = None, registry: Any = None, clock: Clock | None = None,
                 interrupt: Interrupt | None = None, progress: Progress = NULL_PROGRESS, live: bool | None = None,
                 world: World | None = None) -> None:
        self.store = store
        self.world = world or World(clock=clock or Clock())
        if clock is not None:
            self.world.clock = clock
        self.clock = self.world.clock
        # A live store has controllers: wait for readiness and check route status. Manifest files have none.
        self.live = bool(getattr(store, "is_live", True)) if live is None else live
        # rollout state lives beside the objects, except where a store keeps it apart (manifests: .mlserve/)
        self._state_backend = store.state_store() if hasattr(store, "state_store") else store
        self.executor = Executor(store, judge=judge, registry=registry, world=self.world, interrupt=interrupt,
                                 progress=progress, live=self.live, state_backend=self._state_backend)
        self.registry = self.executor.registry

    def _states(self, namespace: str) -> LeaseStateStore:
        return LeaseStateStore(self._state_backend, namespace, now=self.clock.now)

    def run(self, cfg: RolloutConfig) -> RolloutResult:
        """Run a canary or blue-green rollout to its end (see :mod:`mlserve.rollout.executor`)."""
        return self.executor.run(cfg)

    def plan(self, cfg: RolloutConfig, *, points_per_step: int | None = None) -> PlanResult:
        """The exact patches a rollout would send if every step passed; nothing is applied."""
        prepared, _ = self.executor.start(cfg, points_per_step=points_per_step)
        return render(prepared, self._states(cfg.namespace), points_per_step=points_per_step,
                      describe=getattr(self.store, "describe", None))

    def status(self, name: str, namespace: str, *, wait: bool = False, timeout: float = 600.0,
               poll: float = 1.0) -> StatusResult:
        return commands.status(self.store, self._states(namespace), name, wait=wait, timeout=timeout, poll=poll,
                               clock=self.clock)

    def abort(self, name: str, namespace: str, *, reason: str | None = None, dry_run: bool = False,
              revert_timeout: float = 60.0) -> AbortResult:
        return commands.abort(self.store, self._states(namespace), self.registry, name, reason=reason, dry_run=dry_run,
                              clock=self.clock, revert_timeout=revert_timeout)

    def promote(self, name: str, namespace: str, *, full: bool = False) -> CommandResult:
        return commands.promote(self._states(namespace), name, full=full, clock=self.clock)

    def undo(self, name: str, namespace: str, *, dry_run: bool = False, revert_timeout: float = 60.0,
             ready_timeout: float = 300.0) -> AbortResult:
        def wait_ready(deployment: str) -> None:
            from mlserve.rollout.workload import workload_readiness

            if not self.live or dry_run:
                return
            limit = self.clock.monotonic() + ready_timeout
            while True:
                state = workload_readiness(self.store, deployment, namespace)
                if state.ready:
                    return
                if state.failed or self.clock.monotonic() > limit:
                    raise InfrastructureError(f"previous version {deployment} not ready after {ready_timeout:g}s: {state.detail}")
                self.clock.sleep(0.25)

        def settle(state: Any) -> None:
            """A stable variant that follows production swaps back after the registry rollback: wait for it."""
            from mlserve.rollout.workload import workload_readiness

            if not hasattr(self.store, "readiness") or dry_run or not state.previous_version:
                return
            limit = self.clock.monotonic() + ready_timeout
            while True:
                ready = workload_readiness(self.store, state.stable, namespace, version=state.previous_version)
                if ready.ready:
                    return
                if ready.failed or self.clock.monotonic() > limit:
                    raise InfrastructureError(f"{state.stable} does not serve {state.previous_version} after "
                                              f"{ready_timeout:g}s: {ready.detail}")
                self.clock.sleep(0.1)

        return commands.undo(self.store, self._states(namespace), self.registry, name, dry_run=dry_run, clock=self.clock,
                             wait_ready=wait_ready, revert_timeout=revert_timeout, settle=settle)


__all__ = ["RolloutEngine", "RolloutConfig", "Clock", "Interrupt", "JudgeWindow", "Stop", "check_budget", "planned_wait"]

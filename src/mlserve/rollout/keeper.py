"""The rollout owner's side of the Lease: heartbeats, commands from other jobs, signals, the deadline, notifications.

While the executor runs steps, the :class:`Keeper` is how it stays in touch: every wait goes
through it (so a ``promote``/``abort`` from another job, a signal or the deadline is noticed within
one poll), every state change is saved through :func:`~mlserve.rollout.state.update_state`, and each
change of phase, step, weight or outcome is posted to the ``--notify`` URLs.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

from mlserve.errors import MlserveError
from mlserve.rollout.state import ACTIVE_PHASES, RolloutState, target_flags, update_state
from mlserve.rollout.world import Interrupt, World

if TYPE_CHECKING:  # pragma: no cover
    from mlserve.rollout.executor import Run


class Stop(Exception):
    """Ends the rollout early: ``outcome`` says how, the message says why, ``by`` who ended it if not us."""

    def __init__(self, outcome: str, message: str, *, by: str | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.message = message
        self.by = by  # "abort" / "undone" (another process finished it), "takeover", "deleted", or None


def notice_key(state: RolloutState) -> tuple[Any, ...]:
    """What a notification is sent on: a change of any of these."""
    return (state.phase, state.step_index, state.weight, state.outcome)


class Keeper:
    def __init__(self, world: World, interrupt: Interrupt) -> None:
        self.world = world
        self.clock = world.clock
        self.interrupt = interrupt


    def sleep(self, run: Run, seconds: float) -> None:
        end = self.clock.monotonic() + seconds
        while True:
            self.check_interrupt(run)
            left = end - self.clock.monotonic()
            if left <= 0:
                return
            self.clock.sleep(min(left, 0.05))

    def check_interrupt(self, run: Run) -> None:
        if not run.driving:
            return
        if self.interrupt.signal:
            if run.cfg.on_interrupt == "pause":
                raise Stop("paused", f"{self.interrupt.signal} received: paused at {run.state.weight}% to the canary; "
                                     f"resume with --resume or revert with `mlserve rollout abort {run.state.model}{target_flags(run.state)}`")
            raise Stop("aborted", f"{self.interrupt.signal} received: rollout aborted")
        if self.clock.now() > run.state.deadline:
            raise Stop("aborted", f"deadline {run.state.deadline.isoformat()} passed (--timeout)")

    def wait(self, run: Run, seconds: float, *, skippable: bool = True) -> str:
        """Pause ``seconds``, heartbeating; returns 'done' or 'skipped' (a promote command)."""
        if skippable and run.skip_all:
            return "skipped"
        end = self.clock.monotonic() + seconds
        next_poll = 0.0
        while True:
            self.check_interrupt(run)
            now = self.clock.monotonic()
            if now >= next_poll:
                self.checkpoint(run)
                command = run.state.command
                if command in ("promote", "promote-full") and run.state.command_id not in run.consumed:
                    run.skip_all = run.skip_all or command == "promote-full"
                    run.consumed.add(run.state.command_id)
                    run.state.event(f"pause skipped by `promote{' --full' if command == 'promote-full' else ''}`", self.clock.now())
                    self.checkpoint(run, lambda s: (setattr(s, "command", None), setattr(s, "command_id", None)))
                    if skippable:
                        return "skipped"
                if skippable and run.skip_all:
                    return "skipped"
                next_poll = now + run.cfg.poll
            if now >= end:
                return "done"
            self.clock.sleep(min(end - now, next_poll - now, 0.05))

    @contextmanager
    def beating(self, run: Run) -> Iterator[None]:
        """Keep the heartbeat going from a thread while the rollout blocks (smoke check, gate, judge).

        What the heartbeat notices (an abort, a take-over) is raised here once the blocking call returns.
        """
        if run.dry_run or not run.driving:
            yield
            return
        stop = threading.Event()
        failure: list[BaseException] = []

        def beat() -> None:
            period = max(0.05, min(run.cfg.poll, run.cfg.lease_seconds / 3))
            while not stop.wait(period):
                try:
                    self.checkpoint(run)
                except (Stop, MlserveError) as exc:
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


    def checkpoint(self, run: Run, mutate: Callable[[RolloutState], Any] | None = None) -> None:
        """Save our state (heartbeat included); notice aborts, take-overs and commands from others."""
        with run.lock:
            if mutate:
                mutate(run.state)  # once: on a conflict only the other side's command is merged in
            if run.dry_run:
                return

            def decide(stored: Any) -> RolloutState:
                if stored is None:
                    raise Stop("aborted", "the rollout's Lease was deleted by someone else", by="deleted")
                remote = stored.state
                if remote.command == "abort" or remote.phase not in ACTIVE_PHASES:
                    who = f" ({stored.holder})" if stored.holder else ""
                    why = remote.message or (remote.events[-1].message if remote.events else "")
                    raise Stop("aborted", f"aborted from another process{who}" + (f": {why}" if why else ""),
                               by="undone" if remote.phase == "undone" else "abort")
                if stored.holder and stored.holder != run.owner:
                    raise Stop("aborted", f"the rollout was taken over by {stored.holder}", by="takeover")
                if remote.command_id not in run.consumed:
                    run.state.command, run.state.command_id = remote.command, remote.command_id
                return run.state

            run.state, run.lease = update_state(run.states, run.state.model, decide, holder=run.owner,
                                                cached=(run.state, run.lease))
            self.notify_if_changed(run)

    def notify_if_changed(self, run: Run) -> None:
        key = notice_key(run.state)
        if key != run.notified:
            run.notified = key
            self.notify(run, "state")

    def notify(self, run: Run, event: str) -> None:
        if not run.cfg.notify or run.dry_run:
            return
        s = run.state
        body = {"event": event, "model": s.model, "version": s.version, "previous_version": s.previous_version,
                "namespace": run.namespace, "strategy": s.strategy, "phase": s.phase, "outcome": s.outcome,
                "step": s.step_index + 1, "steps": s.steps, "weight": s.weight, "message": s.message,
                "at": self.clock.now().isoformat(), "owner": run.owner}
        for url in run.cfg.notify:
            answer = self.world.http.request("POST", url, body=body, timeout=5.0)
            if not answer.ok:
                warning = f"notification to {url} failed: {answer.error or answer.status}"
                if warning not in run.warnings:
                    run.warnings.append(warning)

    def save_final(self, run: Run, mutate: Callable[[RolloutState], Any], holder: str) -> None:
        """Record the end in the Lease; raises when it cannot (the caller makes that loud)."""
        if run.dry_run:
            return

        def decide(stored: Any) -> RolloutState | None:
            if stored is None:
                return None
            mutate(run.state)
            run.state.command = None
            return run.state

        try:
            run.state, run.lease = update_state(run.states, run.state.model, decide, holder=holder)
        except MlserveError as exc:
            if "no rollout of" in exc.message:
                return  # the Lease is gone: nothing left to record
            raise
        self.notify_if_changed(run)


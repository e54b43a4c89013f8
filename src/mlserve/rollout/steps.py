"""A rollout as data: the list of steps a strategy builds once, that ``run`` executes and ``plan`` renders.

Like Argo Rollouts' canary steps (setWeight, pause, analysis, setCanaryScale), every step is a
small frozen dataclass. The object changes are computed by the step itself from the object as it
is (:meth:`Change.ops`), so the executor (against the live object) and the planner (against its
simulation) send and show the very same operations.

``stage`` says where the step belongs, which is what resuming and the dry run need:
``prepare`` (before traffic moves), ``step`` with ``index`` (one canary step), ``header`` (the
header/cookie route), ``promote`` (every check passed), and for blue-green ``switch`` and ``keep``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from mlserve.rollout.ops import Op, pointer, set_ops
from mlserve.rollout.state import RolloutState


@dataclass(frozen=True)
class Step:
    stage: str
    index: int = -1  # the canary step (0-based) for stage "step"
    why: str = ""  # how plans and dry runs name it
    note: str = ""  # recorded as an event once done


@dataclass(frozen=True)
class Create(Step):
    """Create ``obj`` unless it exists (a resumed rollout created it before)."""

    obj: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.obj["kind"]

    @property
    def name(self) -> str:
        return self.obj["metadata"]["name"]


@dataclass(frozen=True)
class Change(Step):
    """Patch ``kind``/``name``: the operations are computed from the object as it is when the step runs."""

    kind: str = ""
    name: str = ""
    compute: Callable[[dict[str, Any]], list[Op]] = field(default=lambda obj: [], compare=False)

    def ops(self, obj: dict[str, Any]) -> list[Op]:
        return self.compute(obj)


@dataclass(frozen=True)
class SetVersion(Change):
    """Tell a Deployment the version (image, env var, annotation, version labels)."""


@dataclass(frozen=True)
class Scale(Change):
    replicas: int = 0


@dataclass(frozen=True)
class SetWeight(Change):
    """Move traffic; on a live cluster, then check the router's status for this generation."""

    weight: int = 0
    baseline: int = 0


@dataclass(frozen=True)
class SetHeaderRoute(Change):
    """Send header- or cookie-matched requests to the canary (``on``), or stop doing so."""

    on: bool = True


@dataclass(frozen=True)
class WaitReady(Step):
    """Wait until a workload is ready: a Deployment (replicas), or on the local target a variant of the split."""

    name: str = ""
    what: str = ""
    min_replicas: int = 0
    kind: str = "Deployment"
    version: str = ""  # local target: ready means serving this version ("" : any)


@dataclass(frozen=True)
class Record(Step):
    """Save a change of the rollout state in the Lease (the heartbeat goes with it)."""

    mutate: Callable[[RolloutState, datetime], None] = field(default=lambda state, now: None, compare=False)


@dataclass(frozen=True)
class Gate(Step):
    """A webhook that must answer 2xx before the step goes on (retried until it does, or the deadline)."""

    url: str = ""


@dataclass(frozen=True)
class Pause(Step):
    seconds: float = 0.0
    points: int | None = None  # what the judge will have per metric and side after it (plan shows it)


@dataclass(frozen=True)
class CheckDrift(Step):
    """Before judging: the live traffic split must still be what the rollout set."""

    weight: int = 0
    baseline: int = 0


@dataclass(frozen=True)
class Analysis(Step):
    weight: int = 0
    compare_with: str = ""  # the Deployment the canary is compared with (stable or the baseline)
    judged: bool = True  # False: recorded as "skipped" with ``reason``
    reason: str = ""


@dataclass(frozen=True)
class Smoke(Step):
    """Blue-green: the smoke URL and/or command must pass before the switch."""


@dataclass(frozen=True)
class Keep(Step):
    """Blue-green: keep the old colour running until ``keep_until`` (so undo is instant)."""


@dataclass(frozen=True)
class PromoteInRegistry(Step):
    """Promote the version to production in the registry, by compare-and-swap on the previous version."""

    final: bool = True  # canary: the last step; blue-green: right after the switch
    required: bool = False  # the rollout cannot go on without it (local: the stable variant follows @production)
    reason: str = ""  # recorded in the registry journal ("" : the strategy's default)


def replicas_ops(replicas: int) -> Callable[[dict[str, Any]], list[Op]]:
    return lambda obj: set_ops(obj, pointer("spec", "replicas"), replicas)


def first_of_stage(steps: list[Step], stage: str, index: int = -1) -> int:
    """The position of the first step of ``stage`` (and ``index``), or len(steps)."""
    for i, step in enumerate(steps):
        if step.stage == stage and (index < 0 or step.index == index):
            return i
    return len(steps)

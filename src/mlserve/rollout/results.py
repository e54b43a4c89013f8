"""What the rollout functions return (pydantic models the CLI renders or prints as JSON), and the judge's window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Literal

from pydantic import BaseModel, Field

from mlserve import exitcodes
from mlserve.rollout.state import ObjectSnapshot, StepRecord

Outcome = Literal["promoted", "rolled-back", "inconclusive", "aborted", "failed", "paused", "dry-run"]
EXIT_FOR: dict[str, int] = {
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
EXIT_OF_PHASE = {"succeeded": exitcodes.OK, "rolled-back": exitcodes.ROLLED_BACK, "inconclusive": exitcodes.INCONCLUSIVE,
                 "aborted": exitcodes.ABORTED, "failed": exitcodes.INFRASTRUCTURE, "undone": exitcodes.OK}


@dataclass(frozen=True)
class JudgeWindow:
    """What the judge compares over [start, end].

    ``canary`` is the Deployment serving the new version and ``stable`` the one it is compared
    with: the stable Deployment, or the baseline (a fresh copy of stable) with ``--baseline``. In
    blue-green, ``canary`` is the idle colour being checked and ``stable`` the live colour.
    """

    model: str
    version: str
    namespace: str
    canary: str
    stable: str
    step: int
    weight: int
    start: datetime
    end: datetime
    strategy: str = "canary"
    compare: bool = True  # False: the reference serves no comparable traffic (100% step, blue-green)


Judge = Callable[[JudgeWindow], Any]  # returns an object with .verdict (and optionally .score, .reason)


class PlannedChange(BaseModel):
    stage: str
    action: Literal["create", "patch", "delete", "wait", "registry", "gate", "notify"]
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
    points_per_step: int | None = None  # what the judge will have per metric and side after each pause
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


class ObjectStatus(BaseModel):
    """One object the rollout manages, as read by ``status`` (one GET each)."""

    kind: str
    name: str
    role: str  # traffic, canary, stable, baseline
    exists: bool
    detail: str = ""


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
    objects: list[ObjectStatus] = Field(default_factory=list)


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

"""Rollout state kept in the cluster: one ``Lease`` per model, the lock and the record at once.

The Lease ``mlserve-rollout-<model>`` in the rollout's namespace (:func:`lease_name`: a model name
that is not a plain lowercase DNS name gets a hash of its exact spelling, so ``IRIS`` and ``iris``
never share one; :meth:`LeaseStateStore.load` refuses a Lease holding another model's state) holds:

* ``spec.holderIdentity`` (the owner: user@host:pid), ``spec.renewTime`` (the owner's heartbeat)
  and ``spec.leaseDurationSeconds`` (after which a silent owner is presumed dead);
* the annotation ``rollout.mlserve.dev/state``: a JSON :class:`RolloutState` with the revert
  snapshot (every field the rollout touches, as it was before the first change), the step, the
  start time, the deadline, the step-by-step record and a pending command from another process.

Creating the Lease is the lock: the API server answers 409 to a second create. A Lease whose
rollout has finished (succeeded, aborted, rolled back...) is taken over by the next rollout with a
resourceVersion-guarded patch. Every write is guarded the same way, so two writers can never both
win; the loser reads again and decides anew (that is how an ``abort`` from another job reaches a
running pipeline).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import BaseModel, Field

from mlserve.errors import ConflictError, IntegrityError
from mlserve.rollout.ops import pointer, set_ops, version_guard

STATE_ANNOTATION = "rollout.mlserve.dev/state"
MODEL_LABEL = "rollout.mlserve.dev/model"

Phase = Literal[
    "progressing",  # moving traffic step by step (or preparing)
    "paused",  # interrupted with --on-interrupt pause: traffic left where it was, resumable
    "promoting",  # all checks passed; stable is being updated
    "switched",  # blue-green: traffic on the new colour, the old one kept for --keep
    "succeeded",
    "rolled-back",  # the judge, a smoke check or readiness said no; traffic on stable
    "inconclusive",  # not enough data; traffic on stable
    "aborted",  # by a user, a signal or the deadline; traffic on stable
    "failed",  # infrastructure error; see `reverted` for whether the snapshot could be re-applied
    "undone",  # a finished rollout was reverted with `undo`
]
ACTIVE_PHASES = {"progressing", "paused", "promoting", "switched"}
TERMINAL_PHASES = {"succeeded", "rolled-back", "inconclusive", "aborted", "undone"}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


LEASE_PREFIX = "mlserve-rollout-"
_PLAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_MAX = 63  # a label value's limit


def _model_slug(model: str) -> str:
    """A DNS-label-safe form of ``model``, unique per exact name.

    A plain lowercase DNS name (``iris``, ``churn-v2``) is kept as is, so existing Leases keep their
    names. Anything else (``IRIS``, ``my_model``, ``iris.v2``) is lowercased, every other character
    becomes ``-``, and 8 hex digits of the exact name's sha256 are appended: ``IRIS``, ``Iris`` and
    ``iris`` get three different Leases.
    """
    if _PLAIN.match(model) and len(LEASE_PREFIX) + len(model) <= 253:
        return model
    slug = re.sub(r"[^a-z0-9-]+", "-", model.lower()).strip("-") or "model"
    digest = hashlib.sha256(model.encode("utf-8")).hexdigest()[:8]
    return f"{slug[:200]}-{digest}"


def lease_name(model: str) -> str:
    """The Lease of ``model``'s rollouts: ``mlserve-rollout-<model>`` (see :func:`_model_slug`)."""
    return LEASE_PREFIX + _model_slug(model)


def _model_label(model: str) -> str:
    """The model label's value: the slug, shortened with its own hash to a label value's 63 characters."""
    slug = _model_slug(model)
    if len(slug) <= _LABEL_MAX:
        return slug
    digest = hashlib.sha256(model.encode("utf-8")).hexdigest()[:8]
    return f"{slug[:_LABEL_MAX - 9].rstrip('-')}-{digest}"


def micro_time(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FieldSnapshot(BaseModel):
    path: str
    present: bool
    value: Any = None


class ObjectSnapshot(BaseModel):
    kind: str
    name: str
    role: Literal["traffic", "workload", "service"]
    created: bool = False  # made by the rollout: reverting deletes it
    fields: list[FieldSnapshot] = Field(default_factory=list)


class StepRecord(BaseModel):
    index: int
    weight: int
    started_at: datetime
    ended_at: datetime | None = None
    verdict: str | None = None  # pass / marginal / fail / inconclusive / skipped
    score: float | None = None
    reason: str = ""
    analysis: dict[str, Any] | None = None


class Event(BaseModel):
    at: datetime
    message: str


class RolloutState(BaseModel):
    model: str
    version: str
    previous_version: str | None = None
    strategy: Literal["canary", "blue-green"]
    namespace: str
    router: str
    steps: list[int]
    pause_seconds: float
    step_index: int = -1  # -1: not yet at the first step
    weight: int = 0
    phase: Phase = "progressing"
    outcome: str | None = None
    owner: str
    started_at: datetime
    deadline: datetime
    lease_seconds: float
    command: Literal["promote", "promote-full", "abort"] | None = None
    command_id: str | None = None  # who sent it and when: a command is acted on once
    stable: str  # stable Deployment (blue-green: the live colour)
    canary: str  # canary Deployment (blue-green: the idle colour, which gets the new version)
    traffic_object: str  # kind/name of the object holding the traffic split
    stable_service: str = ""
    canary_service: str = ""
    reverted: bool = False
    promoted_in_registry: bool = False
    keep_until: datetime | None = None
    snapshot: list[ObjectSnapshot] = Field(default_factory=list)
    record: list[StepRecord] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)
    message: str = ""

    def event(self, message: str, at: datetime | None = None) -> None:
        self.events.append(Event(at=at or utcnow(), message=message))


class StoredState(BaseModel):
    state: RolloutState
    lease: dict[str, Any]
    holder: str | None
    renewed_at: datetime | None
    stale: bool


def _parse_time(text: Any) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


class LeaseStateStore:
    """Reads and writes :class:`RolloutState` in a Lease through any ``ResourceStore``."""

    def __init__(self, store: Any, namespace: str, *, now: Any = utcnow) -> None:
        self.store = store
        self.namespace = namespace
        self.now = now

    def load(self, model: str) -> StoredState | None:
        lease = self.store.get("Lease", lease_name(model), self.namespace)
        if lease is None:
            return None
        raw = (lease.get("metadata", {}).get("annotations") or {}).get(STATE_ANNOTATION)
        if not raw:
            raise IntegrityError(f"Lease {self.namespace}/{lease_name(model)} has no {STATE_ANNOTATION} annotation",
                                 hint="it was not written by mlserve; delete it if nothing uses it")
        try:
            state = RolloutState.model_validate(json.loads(raw))
        except (ValueError, TypeError) as exc:
            raise IntegrityError(f"Lease {self.namespace}/{lease_name(model)} holds an unreadable rollout state: {exc}") from None
        if state.model != model:
            # Only a Lease written by an older mlserve (which gave IRIS and iris one Lease) can get here.
            raise ConflictError(
                f"Lease {self.namespace}/{lease_name(model)} holds the rollout state of model {state.model!r}, not {model!r}",
                hint=f"an older mlserve gave both names one Lease; finish or abort the rollout of {state.model!r} "
                     "with that version, or delete the Lease once nothing uses it",
            )
        spec = lease.get("spec") or {}
        renewed = _parse_time(spec.get("renewTime"))
        duration = float(spec.get("leaseDurationSeconds") or state.lease_seconds)
        stale = renewed is None or self.now() - renewed > timedelta(seconds=duration)
        return StoredState(state=state, lease=lease, holder=spec.get("holderIdentity") or None,
                           renewed_at=renewed, stale=stale)

    def _lease_body(self, state: RolloutState, holder: str | None) -> dict[str, Any]:
        now = micro_time(self.now())
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": lease_name(state.model),
                "namespace": self.namespace,
                "labels": {MODEL_LABEL: _model_label(state.model),
                           "app.kubernetes.io/managed-by": "mlserve"},
                "annotations": {STATE_ANNOTATION: state.model_dump_json()},
            },
            "spec": {"holderIdentity": holder or "", "leaseDurationSeconds": max(1, int(round(state.lease_seconds))),
                     "acquireTime": now, "renewTime": now},
        }

    def create(self, state: RolloutState, *, dry_run: bool = False) -> dict[str, Any]:
        """Take the lock by creating the Lease; :class:`ConflictError` if it exists."""
        return self.store.create(self._lease_body(state, state.owner), dry_run=dry_run)

    def write(self, state: RolloutState, lease: dict[str, Any], *, holder: str | None, acquire: bool = False,
              dry_run: bool = False) -> dict[str, Any]:
        """Save ``state`` if the Lease is still exactly ``lease`` (else :class:`ConflictError`)."""
        body = self._lease_body(state, holder)
        ops = version_guard(lease)
        ops += set_ops(lease, pointer("metadata", "annotations", STATE_ANNOTATION), body["metadata"]["annotations"][STATE_ANNOTATION])
        ops += set_ops(lease, pointer("spec", "holderIdentity"), body["spec"]["holderIdentity"])
        ops += set_ops(lease, pointer("spec", "leaseDurationSeconds"), body["spec"]["leaseDurationSeconds"])
        ops += set_ops(lease, pointer("spec", "renewTime"), body["spec"]["renewTime"])
        if acquire:
            ops += set_ops(lease, pointer("spec", "acquireTime"), body["spec"]["acquireTime"])
        if not ops:
            return lease
        try:
            return self.store.patch("Lease", lease_name(state.model), self.namespace, ops, dry_run=dry_run)
        except ConflictError as exc:
            raise ConflictError(f"rollout state of {state.model} changed under us: {exc.message}") from None

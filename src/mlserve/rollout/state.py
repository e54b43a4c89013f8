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
running pipeline). :func:`update_state` is that loop, the one every writer uses.

The state must fit in an annotation (the API server refuses more than 256 KiB of annotations per
object): past :data:`STATE_BUDGET` bytes the copy written to the Lease drops the analysis details of
all but the last step and then the oldest events, and says so in an event
(:func:`compact_for_lease`).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import BaseModel, Field

from mlserve.errors import ConflictError, IntegrityError, NotFoundError
from mlserve.rollout.ops import guarded, pointer, set_ops

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
    # The Deployment serving the old version and the one getting the new version. Blue-green:
    # the live colour and the idle colour (see live_deployment / idle_deployment).
    stable: str
    canary: str
    traffic_object: str  # kind/name of the object holding the traffic split
    stable_service: str = ""
    canary_service: str = ""
    baseline: str = ""  # --baseline: the Deployment the canary is compared with ("" without one)
    baseline_service: str = ""
    header_route: dict[str, str] | None = None  # --canary-header/--canary-cookie, as given
    reverted: bool = False
    promoted_in_registry: bool = False
    keep_until: datetime | None = None
    # where the rollout runs when it is not a cluster: {"kind": "local", "server": URL, "admin": URL, ...}
    target: dict[str, str] = Field(default_factory=dict)
    snapshot: list[ObjectSnapshot] = Field(default_factory=list)
    record: list[StepRecord] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)
    message: str = ""

    def event(self, message: str, at: datetime | None = None) -> None:
        self.events.append(Event(at=at or utcnow(), message=message))

    @property
    def live_deployment(self) -> str:
        """Blue-green: the colour serving traffic when the rollout started."""
        return self.stable

    @property
    def idle_deployment(self) -> str:
        """Blue-green: the colour that gets the new version and, after the switch, the traffic."""
        return self.canary


STATE_BUDGET = 200 * 1024  # bytes of state JSON in the annotation; the server's limit for all annotations is 256 KiB
_KEEP_EVENTS = 50


def compact_for_lease(state: RolloutState, budget: int = STATE_BUDGET) -> str:
    """``state`` as JSON for the Lease annotation, shortened to ``budget`` bytes where needed."""
    text = state.model_dump_json()
    if len(text.encode("utf-8")) <= budget:
        return text
    slim = state.model_copy(deep=True)
    for record in slim.record[:-1]:
        record.analysis = None  # the verdict, score and reason stay; the per-metric details go
    text = slim.model_dump_json()
    if len(text.encode("utf-8")) > budget and slim.record and slim.record[-1].analysis is not None:
        slim.record[-1].analysis = None
        text = slim.model_dump_json()
    dropped = 0
    while len(text.encode("utf-8")) > budget and len(slim.events) > _KEEP_EVENTS:
        cut = max(1, len(slim.events) // 4)
        del slim.events[1:1 + cut]  # keep the first event (who started it) and the newest ones
        dropped += cut
        text = slim.model_dump_json()
    while len(text.encode("utf-8")) > budget and any(len(r.reason) > 500 for r in slim.record):
        for record in slim.record:
            record.reason = record.reason[:500]
        text = slim.model_dump_json()
    if dropped:
        slim.events.insert(1, Event(at=slim.events[0].at, message=f"{dropped} older event(s) left out of the Lease to "
                                                                  "stay within the API server's 256 KiB annotation limit"))
        text = slim.model_dump_json()
    return text


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
                "annotations": {STATE_ANNOTATION: compact_for_lease(state)},
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
        ops = set_ops(lease, pointer("metadata", "annotations", STATE_ANNOTATION), body["metadata"]["annotations"][STATE_ANNOTATION])
        ops += set_ops(lease, pointer("spec", "holderIdentity"), body["spec"]["holderIdentity"])
        ops += set_ops(lease, pointer("spec", "leaseDurationSeconds"), body["spec"]["leaseDurationSeconds"])
        ops += set_ops(lease, pointer("spec", "renewTime"), body["spec"]["renewTime"])
        if acquire:
            ops += set_ops(lease, pointer("spec", "acquireTime"), body["spec"]["acquireTime"])
        if not ops:
            return lease
        from mlserve.errors import PatchNotAppliedError

        try:
            return self.store.patch("Lease", lease_name(state.model), self.namespace, guarded(lease, ops), dry_run=dry_run)
        except (ConflictError, PatchNotAppliedError) as exc:
            # 409, or the resourceVersion test failed (422): someone else wrote the Lease since we read it
            raise ConflictError(f"rollout state of {state.model} changed under us: {exc.message}") from None


CONFLICT_RETRIES = 5


def update_state(states: LeaseStateStore, model: str, decide: Any, *, holder: str | Any, acquire: bool = False,
                 dry_run: bool = False, cached: tuple[RolloutState, dict[str, Any]] | None = None,
                 retries: int = CONFLICT_RETRIES) -> tuple[RolloutState, dict[str, Any]]:
    """The one read-decide-write loop on a rollout's Lease.

    ``decide(stored)`` gets the Lease as it is now (``None`` if it is gone) and returns the state to
    write, or ``None`` to write nothing; it may raise to stop. The write is guarded by the
    resourceVersion that was read; when another writer got there first, the Lease is read again and
    ``decide`` asked again. ``cached`` (a state and the Lease it was last written to) is tried first
    without reading: the heartbeat of the rollout's owner costs one request when nobody else wrote.
    ``holder`` is the holder to write, or a function of the stored state that gives it.
    """
    if cached is not None:
        state, lease = cached
        try:
            return state, states.write(state, lease, holder=holder if isinstance(holder, str) else holder(None),
                                       acquire=acquire, dry_run=dry_run)
        except ConflictError:
            pass
    for _ in range(retries):
        stored = states.load(model)
        state = decide(stored)
        if state is None:
            if stored is None:
                raise NotFoundError(f"no rollout of {model} recorded in namespace {states.namespace}")
            return stored.state, stored.lease
        if stored is None:
            raise NotFoundError(f"the Lease of the rollout of {model} was deleted")
        who = holder if isinstance(holder, str) else holder(stored)
        try:
            return state, states.write(state, stored.lease, holder=who, acquire=acquire, dry_run=dry_run)
        except ConflictError:
            continue
    raise ConflictError(f"the rollout state of {model} kept changing ({retries} conflicts); try again")


def target_flags(state: "RolloutState | None", namespace: str = "") -> str:
    """The options that point a command at where ``state``'s rollout runs, for the hints in messages:
    `` --target local --server URL --admin-url URL`` on a running server, `` -n NAMESPACE`` otherwise."""
    where = state.target if state is not None else {}
    if where.get("kind") == "local":
        return f" --target local --server {where.get('server', '')} --admin-url {where.get('admin', '')}"
    ns = state.namespace if state is not None else namespace
    return f" -n {ns}" if ns and ns not in ("default", "local") else ""

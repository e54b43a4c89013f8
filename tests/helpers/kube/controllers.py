"""The controllers a rollout depends on, played by the emulator: the deployment controller and a Gateway controller.

They act the way the real ones do from the outside, and like them they write ``status`` through the
API (a status write gets a new ``resourceVersion``, so a client that read the object just before
and patches with that version as guard is refused and must read again):

* :class:`DeploymentController`: after a spec change, the Deployment becomes ready once it has been
  read ``ready_after_reads`` times and ``ready_delay`` seconds have passed. Names in ``never_ready``
  never get there; names in ``stalled`` report ``Progressing=False`` with reason
  ``ProgressDeadlineExceeded`` once ``spec.progressDeadlineSeconds`` have passed since the change,
  as the real controller does. Its conditions carry the real reasons and messages.
* :class:`GatewayController`: reports on an HTTPRoute's ``status.parents`` (``Accepted``,
  ``ResolvedRefs``; ``ResolvedRefs=False``/``BackendNotFound`` for a backendRef to a missing
  Service), each condition with the ``observedGeneration`` it saw. It catches up with a new
  generation only after ``lag_reads`` reads, so a client that trusts conditions without checking
  ``observedGeneration`` reads stale ones.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, status: str, reason: str, message: str, old: list[dict[str, Any]] | None) -> dict[str, Any]:
    previous = next((c for c in old or [] if c.get("type") == kind), None)
    stamp = now_rfc3339()
    changed = previous is None or previous.get("status") != status
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastUpdateTime": stamp, "lastTransitionTime": stamp if changed else previous.get("lastTransitionTime", stamp)}


def replica_set_name(deployment: dict[str, Any]) -> str:
    template = json.dumps((deployment.get("spec") or {}).get("template"), sort_keys=True)
    return f"{deployment['metadata']['name']}-{hashlib.sha256(template.encode()).hexdigest()[:10]}"


@dataclass
class DeploymentController:
    ready_after_reads: int | None = 1  # None: never ready
    ready_delay: float = 0.0
    never_ready: set[str] = field(default_factory=set)
    stalled: set[str] = field(default_factory=set)  # never ready, and past progressDeadlineSeconds they say so
    _reads: dict[tuple[str, str], int] = field(default_factory=dict)
    _changed_at: dict[tuple[str, str], float] = field(default_factory=dict)

    def spec_changed(self, namespace: str, name: str) -> None:
        self._reads[(namespace, name)] = 0
        self._changed_at[(namespace, name)] = time.monotonic()

    def forget(self, namespace: str, name: str) -> None:
        self._reads.pop((namespace, name), None)
        self._changed_at.pop((namespace, name), None)

    def status_after_read(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """The status the controller would have written by now (None: unchanged)."""
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        reads = self._reads.get(key, 0) + 1
        self._reads[key] = reads
        spec = obj.get("spec") or {}
        want = int(spec.get("replicas", 1))
        old = obj.get("status") or {}
        conditions = old.get("conditions") or []
        since = time.monotonic() - self._changed_at.get(key, 0.0)
        rs = replica_set_name(obj)
        stuck = meta["name"] in self.never_ready or meta["name"] in self.stalled or self.ready_after_reads is None
        ready = not stuck and reads >= (self.ready_after_reads or 0) and since >= self.ready_delay
        if ready or want == 0:
            status = {"observedGeneration": meta.get("generation", 1), "replicas": want, "updatedReplicas": want,
                      "readyReplicas": want, "availableReplicas": want,
                      "conditions": [_condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", conditions),
                                     _condition("Progressing", "True", "NewReplicaSetAvailable", f'ReplicaSet "{rs}" has successfully progressed.', conditions)]}
            if want == 0:
                status = {k: v for k, v in status.items() if k not in ("readyReplicas", "availableReplicas", "updatedReplicas", "replicas")}
        else:
            deadline = int(spec.get("progressDeadlineSeconds", 600))
            if meta["name"] in self.stalled and since >= deadline:
                progressing = _condition("Progressing", "False", "ProgressDeadlineExceeded", f'ReplicaSet "{rs}" has timed out progressing.', conditions)
            else:
                progressing = _condition("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs}" is progressing.', conditions)
            status = {"observedGeneration": meta.get("generation", 1), "replicas": want, "updatedReplicas": want,
                      "unavailableReplicas": want,
                      "conditions": [_condition("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.", conditions),
                                     progressing]}
        if _same(old, status):
            return None
        return status


def _same(old: dict[str, Any], new: dict[str, Any]) -> bool:
    strip = lambda s: {**s, "conditions": [{k: v for k, v in c.items() if not k.endswith("Time")} for c in s.get("conditions") or []]}  # noqa: E731
    return strip(old) == strip(new)


@dataclass
class GatewayController:
    enabled: bool = True
    lag_reads: int = 1  # reads of a changed route before its status reports the new generation
    name: str = "example.com/gateway-controller"
    unresolved: set[str] = field(default_factory=set)  # Services it cannot resolve even if they exist (no ReferenceGrant...)
    _reads: dict[tuple[str, str], int] = field(default_factory=dict)

    def spec_changed(self, namespace: str, name: str) -> None:
        self._reads[(namespace, name)] = 0

    def status_after_read(self, obj: dict[str, Any], service_exists: Any) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        reads = self._reads.get(key, self.lag_reads) + 1
        self._reads[key] = reads
        if reads <= self.lag_reads:
            return None
        generation = meta.get("generation", 1)
        missing = []
        for rule in (obj.get("spec") or {}).get("rules") or []:
            for ref in rule.get("backendRefs") or []:
                if ref.get("kind", "Service") == "Service" and (ref.get("name") in self.unresolved or not service_exists(
                        ref.get("namespace") or meta.get("namespace"), ref.get("name"))):
                    missing.append(ref.get("name"))
        old_parents = {json.dumps(p.get("parentRef"), sort_keys=True): p for p in ((obj.get("status") or {}).get("parents") or [])}
        parents = []
        for ref in (obj.get("spec") or {}).get("parentRefs") or []:
            previous = old_parents.get(json.dumps(ref, sort_keys=True), {}).get("conditions")
            accepted = _condition("Accepted", "True", "Accepted", "Route is accepted", previous)
            if missing:
                resolved = _condition("ResolvedRefs", "False", "BackendNotFound", f'Service "{missing[0]}" not found', previous)
            else:
                resolved = _condition("ResolvedRefs", "True", "ResolvedRefs", "Resolved all the Object references for the Route", previous)
            for cond in (accepted, resolved):
                cond.pop("lastUpdateTime", None)
                cond["observedGeneration"] = generation
            parents.append({"parentRef": ref, "controllerName": self.name, "conditions": [accepted, resolved]})
        status = {"parents": parents}
        if _same({"conditions": [c for p in (obj.get("status") or {}).get("parents") or [] for c in p.get("conditions") or []]},
                 {"conditions": [c for p in parents for c in p["conditions"]]}):
            return None
        return status

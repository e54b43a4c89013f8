"""The state of local rollouts, kept in the registry directory like a Lease is kept in a cluster.

:class:`RegistryLeases` is the state backend of ``--target local``: the same Lease documents
:class:`~mlserve.rollout.state.LeaseStateStore` writes to a cluster (holder, heartbeat, lease
duration, the JSON state with the revert snapshot, deadline, record and pending command), one per
model, stored as ``<registry>/rollouts/mlserve-rollout-<model>.json`` through the registry's
:meth:`~mlserve.registry.Registry.records` (a file lock per record, atomic writes). The semantics
are the API server's, so the engine's lock, heartbeat, abort and resume work unchanged:

* ``create`` of a Lease that exists is a :class:`~mlserve.errors.ConflictError` (the lock: a second
  rollout of the model is refused with exit 4);
* every write bumps ``metadata.resourceVersion``, and a patch whose ``test`` of it fails (someone
  wrote the record since it was read) changes nothing and raises :class:`ConflictError`;
* reads never see half a record (an atomic rename), and the file lock is only held for one
  read-modify-write, never across a rollout: a killed owner leaves a record whose heartbeat stops,
  which ``status`` reports stale and ``abort`` / ``--resume`` take over, as with a Lease.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from mlserve.errors import ConflictError, IntegrityError, NotFoundError, UsageError
from mlserve.rollout.jsonpatch import apply_patch

AREA = "rollouts"


class RegistryLeases:
    """Lease objects (kind ``Lease`` only) as records in a registry's ``rollouts/`` folder."""

    is_live = True

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self._folder: Any = None

    @property
    def folder(self) -> Any:
        if self._folder is None:
            self._folder = self.registry.records(AREA)
        return self._folder

    def _check(self, kind: str) -> None:
        if kind != "Lease":
            raise UsageError(f"the local rollout state holds Leases only, not {kind}")

    def _load(self, name: str) -> dict[str, Any] | None:
        raw = self.folder.read(name)
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise IntegrityError(f"{self.folder.path(name)} is not valid JSON: {exc}",
                                 hint="it holds a local rollout's state; restore it or remove it once nothing uses it") from None
        if not isinstance(doc, dict) or doc.get("kind") != "Lease":
            raise IntegrityError(f"{self.folder.path(name)} does not hold a rollout Lease")
        return doc

    def _save(self, doc: dict[str, Any]) -> None:
        self.folder.write(doc["metadata"]["name"], json.dumps(doc, sort_keys=True, indent=1).encode("utf-8") + b"\n")

    # -- the ResourceStore protocol -------------------------------------------------------------

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        self._check(kind)
        return self._load(name)

    def create(self, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        self._check(obj.get("kind", ""))
        name = obj["metadata"]["name"]
        doc = copy.deepcopy(obj)
        doc["metadata"]["resourceVersion"] = "1"
        if dry_run:
            if self._load(name) is not None:
                raise ConflictError(f"Lease {name} already exists in {self.folder.dir}")
            return doc
        with self.folder.locked(name):
            if self._load(name) is not None:
                raise ConflictError(f"Lease {name} already exists in {self.folder.dir}")
            self._save(doc)
        return doc

    def patch(self, kind: str, name: str, namespace: str, ops: list[dict[str, Any]], *,
              dry_run: bool = False) -> dict[str, Any]:
        self._check(kind)
        with self.folder.locked(name):
            current = self._load(name)
            if current is None:
                raise NotFoundError(f"Lease {name} not found in {self.folder.dir}")
            new = apply_patch(current, ops, in_place=False)  # a failed resourceVersion test: ConflictError
            if dry_run:
                return new
            new["metadata"]["resourceVersion"] = str(int(current["metadata"].get("resourceVersion") or 0) + 1)
            self._save(new)
        return new

    def delete(self, kind: str, name: str, namespace: str) -> None:
        self._check(kind)
        with self.folder.locked(name):
            if not self.folder.remove(name):
                raise NotFoundError(f"Lease {name} not found in {self.folder.dir}")


__all__ = ["RegistryLeases", "AREA"]

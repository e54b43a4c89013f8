"""A running ``mlserve serve`` as a :class:`~mlserve.rollout.store.ResourceStore`: the split of a model as an object.

The rollout engine speaks objects and RFC 6902 patches (:mod:`mlserve.rollout.store`). Here the one
object is ``Split/<model>``, built from the admin endpoint's split document (docs/serve.md)::

    {"kind": "Split", "metadata": {"name": "churn", "resourceVersion": "3"},
     "spec": {"experiment": "churn", "salt": "churn", "sticky": {...},
              "variants": {"stable": {"ref": "churn@production", "weight": 90},
                           "canary": {"ref": "churn:3", "weight": 10}}},
     "status": {"variants": {"stable": {"version": "2", "ready": true, ...}, "canary": {...}}}}

``resourceVersion`` is the split's ``revision``. A patch is applied to the split as just read (its
``test`` of the resourceVersion first), and the difference is sent as one admin request with
``expect_revision``, so the server refuses it (409, a :class:`~mlserve.errors.ConflictError`) when
someone changed the split in between, exactly like a guarded patch on the Kubernetes API:

* a variant removed: ``PUT`` of the whole split (what ``GET`` gave, with the new variants);
* otherwise: ``POST`` with the ``refs`` and ``weights`` that changed (a new variant: its REF; the
  server loads, checks and warms it up before it answers, so a canary is ready once this returns).

:func:`admin_request` is that translation, a pure function: ``rollout plan`` shows the requests a
run would send. The admin API has no dry run: with ``dry_run`` the patch is applied to the split as
read and nothing is sent. :meth:`ServerStore.readiness` is a variant's readiness (it serves the
wanted version, loaded and warmed up), :meth:`ServerStore.smoke` a blue-green smoke check (one
inference pinned to the new version).
"""

from __future__ import annotations

import copy
from typing import Any

from mlserve.errors import ConflictError, UsageError
from mlserve.rollout.jsonpatch import apply_patch
from mlserve.rollout.local.admin import SPLIT_PATH, ServerClient
from mlserve.rollout.local.router import KIND, variants
from mlserve.rollout.workload import Readiness

API_VERSION = "mlserve.dev/v1"


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def split_object(doc: dict[str, Any]) -> dict[str, Any]:
    """The admin endpoint's split document as a Split object."""
    spec_variants: dict[str, Any] = {}
    status: dict[str, Any] = {}
    for v in doc.get("variants") or []:
        spec_variants[v["name"]] = {"ref": v["ref"], "weight": _number(v["weight"])}
        status[v["name"]] = {k: v.get(k) for k in ("version", "sha256", "ready", "loading", "follows", "reload_failed",
                                                   "swaps", "share")}
    return {
        "apiVersion": API_VERSION, "kind": KIND,
        "metadata": {"name": doc["model"], "resourceVersion": str(doc["revision"]), "updated": doc.get("updated")},
        "spec": {"experiment": doc.get("experiment"), "salt": doc.get("salt"), "sticky": doc.get("sticky"),
                 "variants": spec_variants},
        "status": {"variants": status},
    }


def admin_request(before: dict[str, Any], after: dict[str, Any]) -> tuple[str, str, dict[str, Any]] | None:
    """The admin request that turns split ``before`` into ``after`` (method, path, body), None if nothing changes.

    The body carries ``expect_revision`` (the revision ``before`` was read at).
    """
    model = before["metadata"]["name"]
    old, new = variants(before), variants(after)
    spec_old = {k: v for k, v in (before.get("spec") or {}).items() if k != "variants"}
    spec_new = {k: v for k, v in (after.get("spec") or {}).items() if k != "variants"}
    revision = int(before["metadata"]["resourceVersion"])
    for name, v in new.items():
        if not isinstance(v, dict) or not isinstance(v.get("ref"), str) or v.get("weight") is None:
            raise UsageError(f"variant {name!r} of the split of {model!r} needs a ref and a weight")
    if set(old) - set(new) or spec_old != spec_new:
        body: dict[str, Any] = {"v": 1, "model": model, **{k: v for k, v in spec_new.items() if v is not None},
                                "variants": [{"name": n, "ref": v["ref"], "weight": v["weight"]} for n, v in new.items()],
                                "expect_revision": revision}
        return "PUT", f"{SPLIT_PATH}/{model}", body
    refs = {n: v["ref"] for n, v in new.items() if n not in old or old[n].get("ref") != v["ref"]}
    weights = {n: v["weight"] for n, v in new.items() if n not in old or old[n].get("weight") != v["weight"]}
    if not refs and not weights:
        return None
    body = {"expect_revision": revision}
    if refs:
        body["refs"] = refs
    if weights:
        body["weights"] = weights
    return "POST", f"{SPLIT_PATH}/{model}", body


class ServerStore:
    """The split of ``model`` in the ``mlserve serve`` that ``client`` talks to."""

    is_live = True

    def __init__(self, client: ServerClient, model: str, states: Any = None) -> None:
        self.client = client
        self.model = model
        self._states = states  # where the rollout's Lease lives (:class:`~mlserve.rollout.local.state.RegistryLeases`)

    def state_store(self) -> Any:
        """The store of the rollout state: the registry directory's Leases (the engine asks for it)."""
        if self._states is None:
            raise UsageError("the local target keeps its rollout state in the registry: give --registry")
        return self._states

    @property
    def retry_budget(self) -> float:
        return self.client.retry_budget

    @retry_budget.setter
    def retry_budget(self, seconds: float) -> None:
        self.client.retry_budget = seconds

    def _kind(self, kind: str) -> None:
        if kind != KIND:
            raise UsageError(f"the local target has no {kind} objects, only the model's Split")

    # -- the ResourceStore protocol -------------------------------------------------------------

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        self._kind(kind)
        doc = self.client.get_split(name)
        return None if doc is None else split_object(doc)

    def create(self, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        raise UsageError("the local target creates no objects: a model's split exists while the server serves it")

    def patch(self, kind: str, name: str, namespace: str, ops: list[dict[str, Any]], *,
              dry_run: bool = False) -> dict[str, Any]:
        self._kind(kind)
        current = self.get(kind, name, namespace)
        if current is None:
            from mlserve.errors import NotFoundError

            raise NotFoundError(f"the server at {self.client.admin} does not serve model {name!r}")
        new = apply_patch(current, ops, in_place=False)  # its resourceVersion test: ConflictError when it moved
        request = admin_request(current, new)
        if request is None or dry_run:
            return new
        method, _, body = request
        return split_object(self.client.change_split(method, name, body))

    def delete(self, kind: str, name: str, namespace: str) -> None:
        raise UsageError("the local target deletes no objects")

    # -- what the executor asks of a live target ------------------------------------------------

    def readiness(self, name: str, namespace: str, *, min_replicas: int = 0, version: str | None = None) -> Readiness:
        """Whether variant ``name`` serves ``version`` (any version when None), loaded, checked and warmed up."""
        obj = self.get(KIND, self.model, namespace)
        if obj is None:
            return Readiness(False, f"the server does not serve {self.model!r}")
        state = (obj.get("status") or {}).get("variants", {}).get(name)
        if state is None:
            return Readiness(False, "not in the split")
        failure = state.get("reload_failed")
        if failure and (version is None or failure.get("version") == version):
            return Readiness(False, f"version {failure.get('version')} failed to load: {failure.get('error')}", failed=True)
        if version is not None and state.get("version") != version:
            loading = state.get("loading")
            return Readiness(False, f"serves {state.get('version')}, waiting for {version}"
                                    + (f" (loading {loading})" if loading else ""))
        if not state.get("ready"):
            return Readiness(False, "loading")
        follows = f", follows {state['follows']}" if state.get("follows") else ""
        return Readiness(True, f"serves {state.get('version')}{follows}")

    def smoke(self, version: str) -> tuple[bool, str]:
        """One inference pinned to ``version``, with zeros of the model's input shapes (one row): 200 or not."""
        meta = self.client.model_metadata(self.model, version)
        if meta is None:
            return False, f"the server does not serve {self.model}:{version}"
        inputs = []
        for spec in meta.get("inputs") or []:
            shape = [1 if int(d) < 0 else int(d) for d in spec.get("shape") or []]
            count = 1
            for d in shape:
                count *= d
            zero: Any = False if spec.get("datatype") == "BOOL" else "" if spec.get("datatype") == "BYTES" else 0
            inputs.append({"name": spec["name"], "shape": shape, "datatype": spec["datatype"], "data": [zero] * count})
        answer = self.client.infer(self.model, version, {"inputs": inputs})
        path = f"/v2/models/{self.model}/versions/{version}/infer"
        if answer.status == 0:
            return False, f"{path}: {answer.error}"
        if answer.status != 200:
            message = answer.body.get("error") if isinstance(answer.body, dict) else answer.text[:200]
            return False, f"{path} answered {answer.status}: {message}"
        return True, f"{path} answered 200"

    def describe(self, kind: str, name: str, obj: dict[str, Any], ops: list[dict[str, Any]]) -> str:
        """The admin request a patch of ``obj`` becomes (``rollout plan`` shows it)."""
        import json

        guarded = copy.deepcopy(obj)
        try:
            request = admin_request(guarded, apply_patch(guarded, ops, in_place=False))
        except ConflictError:
            return ""
        if request is None:
            return ""
        method, path, body = request
        body.pop("expect_revision", None)  # the revision the run reads just before it sends
        return f"{method} {path} {json.dumps(body, sort_keys=True)} (with expect_revision)"


__all__ = ["ServerStore", "admin_request", "split_object"]

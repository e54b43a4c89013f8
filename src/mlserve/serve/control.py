"""Changing a model's split at run time (what the admin endpoint calls): read it, replace it, update it.

A change is all or nothing. Every REF it adds (a new variant, or a variant pointed at another REF)
is loaded, checked against the registry and warmed up first, and must take the same inputs as the
other variants; only then does the model switch to the new split, in one assignment on the event
loop. Requests already queued finish where they were; a variant taken out is released once its last
request is answered. Changes are serialised; a change that asks for nothing new changes nothing
(the revision stays), so a client can repeat one safely; ``expect_revision`` makes a change a
compare-and-swap against concurrent writers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from mlserve.serve.errors import RequestError
from mlserve.serve.repository import Repository
from mlserve.serve.split import (
    SPLIT_VERSION,
    SplitError,
    SplitSpec,
    SplitUpdate,
    Sticky,
    VariantSpec,
    apply_update,
    with_defaults,
)
from mlserve.serve.split_files import command_line_sticky, variant_ref
from mlserve.serve.variants import ModelGroup, ModelHandle, Split


class Conflict(RequestError):
    """``expect_revision`` does not match: someone else changed the split first."""

    status = 409
    grpc_code = "ABORTED"


class Unloadable(RequestError):
    """A REF of the change cannot be served (missing, damaged, not ONNX, other inputs): nothing changed."""

    status = 422
    grpc_code = "FAILED_PRECONDITION"


class SplitControl:
    def __init__(self, repo: Repository, log: Callable[..., None]) -> None:
        self.repo = repo
        self.log = log
        self._lock = asyncio.Lock()

    # ---------------------------------------------------------------- reading

    def document(self, name: str) -> dict[str, Any]:
        """The split document of model ``name`` (version 1), with what each variant serves now."""
        group = self.repo.group(name)
        split = group.split
        variants = []
        for handle, weight, share in zip(split.handles, split.router.weights, split.router.shares()):
            active = handle.active
            doc: dict[str, Any] = {
                "name": handle.variant, "ref": handle.ref.text, "weight": weight, "share": round(share, 6),
                "version": active.version if active else None, "sha256": active.sha256 if active else None,
                "follows": handle.follows, "ready": active is not None, "loading": handle.loading,
                "swaps": handle.swaps,
                "reload_failed": ({"version": handle.failure.version, "error": handle.failure.error}
                                  if handle.failure else None)}
            variants.append(doc)
        return {"v": SPLIT_VERSION, "model": group.name, "revision": split.revision,
                "updated": _iso(split.updated), "experiment": split.experiment, "salt": split.salt,
                "sticky": split.sticky.to_json() if split.sticky else None, "variants": variants}

    def documents(self) -> dict[str, Any]:
        return {"v": SPLIT_VERSION, "splits": [self.document(name) for name in self.repo.models]}

    # ---------------------------------------------------------------- changing

    async def replace(self, name: str, spec: SplitSpec, expect_revision: int | None, who: str = ""
                      ) -> tuple[dict, bool]:
        """Make the split exactly ``spec`` (PUT); unset sticky/experiment: the command line's (as for a file)."""
        group = self.repo.group(name)
        options = self.repo.options
        spec = with_defaults(spec, command_line_sticky(options), options.experiment)
        experiment = spec.experiment_for(name)
        return await self._apply(group, spec.variants, experiment, spec.salt or experiment, spec.sticky,
                                 expect_revision, who)

    async def update(self, name: str, update: SplitUpdate, expect_revision: int | None, who: str = ""
                     ) -> tuple[dict, bool]:
        """Change the weights and refs that ``update`` names (POST); everything else stays."""
        group = self.repo.group(name)
        split = group.split
        current = [VariantSpec(h.variant, h.ref.text, w) for h, w in zip(split.handles, split.router.weights)]
        try:
            variants = apply_update(current, update)
        except SplitError as exc:
            raise _bad(exc) from None
        return await self._apply(group, variants, split.experiment, split.salt, split.sticky, expect_revision, who)

    async def _apply(self, group: ModelGroup, variants: tuple[VariantSpec, ...], experiment: str, salt: str,
                     sticky: Sticky | None, expect_revision: int | None, who: str) -> tuple[dict, bool]:
        from mlserve.serve.errors import NotReady

        async with self._lock:
            if not self.repo.ready:
                raise NotReady("the server is still loading its models")
            old = group.split
            wanted = (tuple((v.name, v.ref, v.weight) for v in variants), experiment, salt, sticky)
            if wanted == old.spec():
                return self.document(group.name), False  # nothing to do: a repeated request is answered the same
            if expect_revision is not None and expect_revision != old.revision:
                raise Conflict(f"the split of {group.name!r} is at revision {old.revision}, not {expect_revision} "
                               "(changed by someone else: read it again)")
            handles, fresh = await self._handles(group, variants)
            try:
                split = Split(tuple(handles), tuple(v.weight for v in variants), experiment=experiment, salt=salt,
                              sticky=sticky, revision=old.revision + 1)
            except SplitError as exc:
                await self._discard(fresh)
                raise _bad(exc) from None
            group.split = split  # the switch: one assignment on the loop thread
            kept = {id(h) for h in handles}
            for handle in old.handles:
                if id(handle) not in kept:
                    self._remove(handle)
            self.repo.metrics.split(group.name, split, old)
            self.log("split_changed", model=group.name, revision=split.revision, by=who or None,
                     experiment=experiment, sticky=sticky.to_json() if sticky else None,
                     variants=[{"name": h.variant, "ref": h.ref.text, "weight": w,
                                "version": h.active.version if h.active else None}
                               for h, w in zip(split.handles, split.router.weights)])
            return self.document(group.name), True

    async def _handles(self, group: ModelGroup, variants: tuple[VariantSpec, ...]
                       ) -> tuple[list[ModelHandle], list[ModelHandle]]:
        """The handles of the new split: the current ones where the REF is unchanged, else loaded here."""
        loop = asyncio.get_running_loop()
        current = {h.variant: h for h in group.split.handles}
        handles: list[ModelHandle] = []
        fresh: list[ModelHandle] = []
        try:
            for i, v in enumerate(variants):
                old = current.get(v.name)
                if old is not None and old.ref.text == v.ref:
                    handles.append(old)
                    continue
                try:
                    ref = variant_ref(group.name, v.ref)
                except Exception as exc:  # noqa: BLE001 - a usage error of the REF: a bad request
                    raise _bad(exc) from None
                handle = ModelHandle(ref, model=group.name, variant=v.name)
                started = time.perf_counter()
                try:
                    artifact, model = await loop.run_in_executor(None, self.repo.load_blocking, ref)
                except Exception as exc:  # noqa: BLE001 - missing, damaged, not ONNX ...: nothing changes
                    raise Unloadable(f"variant {v.name!r}: {v.ref} cannot be served: {exc}") from None
                # compared with every variant the new split holds: those before this one, and the kept ones after it
                later = [current[x.name] for x in variants[i + 1:]
                         if x.name in current and current[x.name].ref.text == x.ref]
                others = (*handles, *later)
                problem = self.repo.incompatibility(group, handle, model, others)
                if problem:
                    model.close()
                    raise Unloadable(f"variant {v.name!r}: {v.ref} cannot serve next to the other variants: {problem}")
                self.repo.activate(handle, artifact, model)
                fresh.append(handle)
                handles.append(handle)
                self.log("model_loaded", model=group.name, variant=v.name, version=artifact.version,
                         sha256=artifact.sha256, path=str(artifact.path), providers=model.providers,
                         batching=model.batchable, seconds=round(time.perf_counter() - started, 3))
        except BaseException:
            await self._discard(fresh)
            raise
        return handles, fresh

    async def _discard(self, handles: list[ModelHandle]) -> None:
        for handle in handles:
            self._remove(handle)

    def _remove(self, handle: ModelHandle) -> None:
        handle.removed = True
        active = handle.active
        if active is not None:
            self.repo.metrics.not_serving(handle.name, handle.variant, active.version, active.sha256)
            active.retire()


def _bad(exc: Exception) -> RequestError:
    from mlserve.serve.errors import BadRequest

    return BadRequest(getattr(exc, "message", None) or str(exc))


def _iso(ts: float) -> str:
    from datetime import datetime, timezone

    from mlserve.experiments.assignments import format_time

    return format_time(datetime.fromtimestamp(ts, timezone.utc))

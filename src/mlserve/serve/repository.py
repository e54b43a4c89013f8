"""The models a server holds: loading their variants, routing requests to them, and hot swaps.

A served model is a :class:`~mlserve.serve.variants.ModelGroup`: one or more variants (``stable``,
``canary`` ... see :mod:`mlserve.serve.split`), each a :class:`~mlserve.serve.variants.ModelHandle`
on its own REF, and the weights that assign requests to them. Every variant is loaded, verified and
warmed up like a model of its own, and follows its stage on its own.

A model started on ``NAME@STAGE`` follows the stage: every ``poll_interval`` the stage's symlink is
read through :meth:`Registry.resolve`. When it names another version, that version is loaded in the
background, its sha256 checked against the registry, and warmed up; then the handle switches to it in
one assignment on the event loop (requests that arrive after it go to the new version, those already
queued finish on the old one, which is released when its last request is answered). A version that
fails to load, verify or warm up leaves the old one serving; the failure is counted, shown in the
model's metadata and logged, and that version is not retried until the stage names another one.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from mlserve.errors import UsageError
from mlserve.serve.assignment_log import AssignmentLog
from mlserve.serve.batching import Batcher, ExecutorPool
from mlserve.serve.errors import ModelNotFound, NotReady
from mlserve.serve.metrics import ServerMetrics
from mlserve.serve.options import ServeOptions
from mlserve.serve.runtime import OnnxModel, choose_providers
from mlserve.serve.sources import Artifact, ModelRef, current_version, resolve_artifact
from mlserve.serve.split import SplitSpec
from mlserve.serve.split_files import build_splits, variant_ref
from mlserve.serve.variants import (
    LoadedVersion,
    ModelGroup,
    ModelHandle,
    ReloadFailure,
    Split,
    signature_difference,
)

Log = Callable[..., None]


class Repository:
    def __init__(self, options: ServeOptions, metrics: ServerMetrics, log: Log) -> None:
        self.options = options
        self.metrics = metrics
        self.log = log
        self.models: dict[str, ModelGroup] = {}
        for name, spec in build_splits(options).items():
            self.models[name] = self._group(name, spec, revision=1)
        self._registry: Any = None
        self._providers: list[str] | None = None
        self.assignments: AssignmentLog | None = None
        self.ready = False

    def _group(self, name: str, spec: SplitSpec, revision: int) -> ModelGroup:
        handles = tuple(ModelHandle(variant_ref(name, v.ref), model=name, variant=v.name) for v in spec.variants)
        experiment = spec.experiment_for(name)
        split = Split(handles, tuple(v.weight for v in spec.variants), experiment=experiment,
                      salt=spec.salt_for(name), sticky=spec.sticky, revision=revision)
        return ModelGroup(name, split)

    def all_handles(self) -> list[ModelHandle]:
        return [h for g in self.models.values() for h in g.split.handles]

    # ---------------------------------------------------------------- lookup (hot path)

    def group(self, name: str) -> ModelGroup:
        group = self.models.get(name)
        if group is None:
            raise ModelNotFound(f"unknown model {name!r}; this server has: {', '.join(self.models)}")
        return group

    def get(self, name: str, version: str | None = None) -> LoadedVersion:
        """The primary variant's version, or the variant serving ``version`` (metadata, ready, config)."""
        group = self.group(name)
        if version:
            return self._pinned(group, version)
        active = group.primary.active
        if active is None:
            raise NotReady(f"model {name!r} is not loaded yet")
        return active

    def route(self, group: ModelGroup, version: str | None, key: str | None) -> LoadedVersion:
        """The version that answers an inference request: pinned by ``version``, else assigned by the split."""
        if version:
            return self._pinned(group, version)
        split = group.split
        if key is None:
            handle = split.handles[split.router.by_weight()]
        else:
            handle = split.handles[split.router.by_key(key)]
        active = handle.active
        if active is None:
            raise NotReady(f"model {group.name!r} is not loaded yet")
        self.metrics.assigned(group.name, split.experiment, handle.variant, "weight" if key is None else "key")
        if key is not None and self.assignments is not None:
            self.assignments.record(split.experiment, key, handle.variant, group.name, active.version)
        return active

    def _pinned(self, group: ModelGroup, version: str) -> LoadedVersion:
        serving = []
        for h in group.split.handles:
            active = h.active
            if active is not None:
                if active.version == version:
                    return active
                serving.append(active.version)
        if not serving:
            raise NotReady(f"model {group.name!r} is not loaded yet")
        raise ModelNotFound(f"model {group.name!r} has no version {version!r} loaded; it serves version"
                            f"{'s' if len(set(serving)) > 1 else ''} {', '.join(dict.fromkeys(serving))}")

    # ---------------------------------------------------------------- loading

    def _registry_for(self) -> Any:
        if self._registry is None:
            from mlserve.registry import Registry

            self._registry = Registry(self.options.registry) if self.options.registry else Registry()
        return self._registry

    def precheck(self) -> None:
        """Every REF resolves to an ONNX file (no hashing, no session): a wrong REF fails before any bind."""
        from mlserve.serve.sources import precheck

        self._providers = choose_providers(self.options.device)  # --device cuda without CUDA: exit 7 here
        for handle in self.all_handles():
            precheck(handle.ref, None if handle.ref.path is not None else self._registry_for())
        if self.options.assignment_log is not None:
            AssignmentLog(self.options.assignment_log).close()  # it can be opened: checked before any bind

    def open_assignment_log(self) -> None:
        if self.options.assignment_log is not None and self.assignments is None:
            self.assignments = AssignmentLog(self.options.assignment_log, self.log)

    def load_blocking(self, ref: ModelRef) -> tuple[Artifact, OnnxModel]:
        registry = None if ref.path is not None else self._registry_for()
        artifact = resolve_artifact(ref, registry)
        if self._providers is None:
            self._providers = choose_providers(self.options.device)
        model = OnnxModel(artifact.path, threads=self.options.threads, providers=self._providers)
        model.warm_up()
        if model.batchable and self.options.batching.max_batch_size > 1:
            model.run(model.example_feeds(self.options.batching.max_batch_size))  # the arena for a full batch
        return artifact, model

    def activate(self, handle: ModelHandle, artifact: Artifact, model: OnnxModel) -> LoadedVersion:
        loop = asyncio.get_running_loop()
        name = handle.name
        group = self.models[name]
        if group.pool is None:
            group.pool = ExecutorPool(self.options.batching.instances, name)
        batcher = Batcher(model.run, batchable=model.batchable, options=self.options.batching, loop=loop,
                          observe=self.metrics.batch_observer(name, artifact.version),
                          name=f"{name}-{handle.variant}-{artifact.version}", depth=self.metrics.queue_gauge(name),
                          pool=group.pool)
        loaded = LoadedVersion(artifact, model, batcher, self.metrics.inflight_gauge(name), name=name,
                               variant=handle.variant)
        old = handle.active
        handle.active = loaded  # the switch: one assignment on the loop thread
        self.metrics.serving(name, handle.variant, artifact.version, artifact.sha256,
                             (old.version, old.sha256) if old else None)
        if old is not None:
            old.retire()
        return loaded

    async def start(self) -> None:
        """Load every variant of every model (startup errors propagate: never ready without them)."""
        loop = asyncio.get_running_loop()
        self.open_assignment_log()
        for group in self.models.values():
            self.metrics.declare_model(group.name)
            for handle in group.split.handles:
                started = time.perf_counter()
                artifact, model = await loop.run_in_executor(None, self.load_blocking, handle.ref)
                problem = self.incompatibility(group, handle, model)
                if problem:
                    model.close()
                    raise UsageError(f"{handle.ref.text} cannot be a variant of model {group.name!r}: {problem}",
                                     hint="every variant of a model takes the same inputs and gives the same outputs")
                loaded = self.activate(handle, artifact, model)
                self.log("model_loaded", model=group.name, variant=handle.variant, version=loaded.version,
                         sha256=loaded.sha256, path=str(artifact.path), providers=model.providers,
                         batching=model.batchable, seconds=round(time.perf_counter() - started, 3))
            self.metrics.split(group.name, group.split)
        self.ready = True

    @staticmethod
    def incompatibility(group: ModelGroup, handle: ModelHandle, model: OnnxModel,
                        others: tuple[ModelHandle, ...] | None = None) -> str | None:
        """Why ``model`` cannot serve next to the model's other variants (None: it can)."""
        for other in others if others is not None else group.split.handles:
            if other is handle or other.variant == handle.variant or other.active is None:
                continue
            problem = signature_difference(other.active.model, model)
            if problem:
                return f"{problem} (variant {other.variant!r}, version {other.active.version})"
        return None

    # ---------------------------------------------------------------- following stages

    async def follow(self) -> None:
        """Poll every stage-following variant until cancelled (the set is read again on every poll)."""
        while True:
            await asyncio.sleep(self.options.poll_interval)
            for group in list(self.models.values()):
                for handle in group.split.handles:
                    if handle.ref.follows_stage and not handle.removed:
                        await self.check(group, handle)

    async def check(self, group: ModelGroup, handle: ModelHandle) -> None:
        loop = asyncio.get_running_loop()
        try:
            wanted = await loop.run_in_executor(None, current_version, handle.ref, self._registry_for())
        except Exception as exc:  # noqa: BLE001 - an unreadable or empty stage keeps the current version serving
            self._failed(handle, "?", f"cannot read {handle.ref.text}: {exc}")
            return
        if wanted is None or (handle.active and wanted == handle.active.version):
            if handle.failure and handle.active and wanted == handle.active.version:
                handle.failure = None  # the stage went back to what we serve (a rollback): nothing is failing now
                self.metrics.set_failing(handle.name, handle.variant, False)
            return
        if handle.failure and handle.failure.version == wanted:
            return  # tried and failed; the next stage change is tried again
        await self.swap(group, handle, wanted)

    async def swap(self, group: ModelGroup, handle: ModelHandle, wanted: str) -> None:
        loop = asyncio.get_running_loop()
        handle.loading = wanted
        started = time.perf_counter()
        old = handle.active.version if handle.active else None
        try:
            artifact, model = await loop.run_in_executor(None, self.load_blocking, handle.ref)
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the old version goes on serving
            handle.loading = None
            self._failed(handle, wanted, str(exc))
            return
        handle.loading = None
        if handle.removed:  # taken out of the split while it loaded
            model.close()
            return
        problem = self.incompatibility(group, handle, model)
        if problem:
            model.close()
            self._failed(handle, artifact.version, f"it cannot serve next to the other variants: {problem}")
            return
        if artifact.version != wanted:  # the stage moved again while loading: serve what was loaded, check again
            wanted = artifact.version
        self.activate(handle, artifact, model)
        handle.failure = None
        handle.swaps += 1
        self.metrics.reload(handle.name, handle.variant, True)
        self.log("model_swapped", model=handle.name, variant=handle.variant, version=wanted, previous=old,
                 sha256=artifact.sha256, seconds=round(time.perf_counter() - started, 3))

    def _failed(self, handle: ModelHandle, version: str, error: str) -> None:
        first = not (handle.failure and handle.failure.version == version and handle.failure.error == error)
        handle.failure = ReloadFailure(version=version, error=error, at=time.time())
        if first:
            self.metrics.reload(handle.name, handle.variant, False)
            self.log("model_reload_failed", level="error", model=handle.name, variant=handle.variant,
                     version=version, error=error, serving=handle.active.version if handle.active else None)

    # ---------------------------------------------------------------- shutdown

    async def release(self, timeout: float) -> None:
        """Retire every version and wait (up to ``timeout``) until their sessions are released."""
        versions = [h.active for h in self.all_handles() if h.active is not None]
        for v in versions:
            v.retire()
        if versions:
            try:
                await asyncio.wait_for(asyncio.gather(*(v.released.wait() for v in versions)), timeout)
            except asyncio.TimeoutError:
                pass
        pools = [g.pool for g in self.models.values() if g.pool is not None]
        if pools:
            await asyncio.get_running_loop().run_in_executor(None, lambda: [p.close(timeout) for p in pools])
        if self.assignments is not None:
            self.assignments.close()

"""The models a server holds: the version each one serves now, and hot swaps to the next.

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
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from mlserve.serve.batching import Batcher
from mlserve.serve.errors import BadRequest, ModelNotFound, NotReady
from mlserve.serve.metrics import ServerMetrics
from mlserve.serve.options import ServeOptions
from mlserve.serve.runtime import OnnxModel, choose_providers
from mlserve.serve.sources import Artifact, ModelRef, current_version, parse_model_ref, resolve_artifact

Log = Callable[..., None]


class LoadedVersion:
    """One version in memory: its session, its queue and executors, and its in-flight count."""

    def __init__(self, artifact: Artifact, model: OnnxModel, batcher: Batcher, inflight_gauge: Any) -> None:
        self.artifact = artifact
        self.name = artifact.name
        self.version = artifact.version
        self.sha256 = artifact.sha256
        self.model = model
        self.batcher = batcher
        self.inputs = model.inputs
        self.outputs = model.outputs
        self.input_by_name = model.input_by_name
        self.output_names = model.output_names
        self.batchable = model.batchable
        self.inflight = 0
        self._gauge = inflight_gauge
        self._retired = False
        self.released = asyncio.Event()
        self.metadata_cache: dict[str, bytes] = {}

    def submit(self, feeds: dict[str, np.ndarray], outputs: list[str] | None) -> asyncio.Future:
        """Queue ``feeds`` (already checked against the inputs); the future resolves to the output arrays."""
        if self.batchable:
            rows = -1
            for arr in feeds.values():
                if rows == -1:
                    rows = arr.shape[0]
                elif arr.shape[0] != rows:
                    raise BadRequest("inputs disagree on the first (batch) dimension: "
                                     + ", ".join(f"{n} has {a.shape[0]}" for n, a in feeds.items()))
            key = (tuple((n, a.shape[1:], a.dtype.str) for n, a in feeds.items()), tuple(outputs or ()))
        else:
            rows, key = 1, None
        future = self.batcher.submit(feeds, max(rows, 1), key, outputs)
        self.inflight += 1
        self._gauge.inc()
        future.add_done_callback(self._answered)
        return future

    def _answered(self, _future: asyncio.Future) -> None:
        self.inflight -= 1
        self._gauge.dec()
        if self._retired and self.inflight == 0:
            self._release()

    def retire(self) -> None:
        """No new requests come here; release the session once the last one is answered."""
        self._retired = True
        if self.inflight == 0:
            self._release()

    def _release(self) -> None:
        if self.released.is_set():
            return
        self.released.set()
        batcher, model = self.batcher, self.model
        # Joining executor threads must not block the loop.
        asyncio.get_running_loop().run_in_executor(None, lambda: (batcher.close(), model.close()))


@dataclass
class ReloadFailure:
    version: str
    error: str
    at: float


class ModelHandle:
    def __init__(self, ref: ModelRef) -> None:
        self.ref = ref
        self.name = ref.name
        self.active: LoadedVersion | None = None
        self.loading: str | None = None
        self.failure: ReloadFailure | None = None
        self.swaps = 0

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"serving": self.active.version if self.active else None,
                               "follows": f"{self.name}@{self.ref.stage}" if self.ref.follows_stage else None,
                               "loading": self.loading}
        if self.failure:
            doc["reload_failed"] = {"version": self.failure.version, "error": self.failure.error}
        return doc


class Repository:
    def __init__(self, options: ServeOptions, metrics: ServerMetrics, log: Log) -> None:
        self.options = options
        self.metrics = metrics
        self.log = log
        self.handles: dict[str, ModelHandle] = {}
        for text in options.refs:
            ref = parse_model_ref(text)
            if ref.name in self.handles:
                raise_dup(ref, self.handles[ref.name].ref)
            self.handles[ref.name] = ModelHandle(ref)
        self._registry: Any = None
        self._providers: list[str] | None = None
        self.ready = False

    # ---------------------------------------------------------------- lookup (hot path)

    def get(self, name: str, version: str | None = None) -> LoadedVersion:
        handle = self.handles.get(name)
        if handle is None:
            raise ModelNotFound(f"unknown model {name!r}; this server has: {', '.join(self.handles)}")
        active = handle.active
        if active is None:
            raise NotReady(f"model {name!r} is not loaded yet")
        if version is not None and version != "" and version != active.version:
            raise ModelNotFound(f"model {name!r} has no version {version!r} loaded; it serves version {active.version}")
        return active

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
        for handle in self.handles.values():
            precheck(handle.ref, None if handle.ref.path is not None else self._registry_for())

    def _load_blocking(self, ref: ModelRef) -> tuple[Artifact, OnnxModel]:
        registry = None if ref.path is not None else self._registry_for()
        artifact = resolve_artifact(ref, registry)
        if self._providers is None:
            self._providers = choose_providers(self.options.device)
        model = OnnxModel(artifact.path, threads=self.options.threads, providers=self._providers)
        model.warm_up()
        if model.batchable and self.options.batching.max_batch_size > 1:
            model.run(model.example_feeds(self.options.batching.max_batch_size))  # the arena for a full batch
        return artifact, model

    def _activate(self, handle: ModelHandle, artifact: Artifact, model: OnnxModel) -> LoadedVersion:
        loop = asyncio.get_running_loop()
        batcher = Batcher(model.run, batchable=model.batchable, options=self.options.batching, loop=loop,
                          observe=self.metrics.batch_observer(artifact.name, artifact.version),
                          name=f"{artifact.name}-{artifact.version}", depth=self.metrics.queue_gauge(artifact.name))
        loaded = LoadedVersion(artifact, model, batcher, self.metrics.inflight_gauge(artifact.name))
        old = handle.active
        handle.active = loaded  # the switch: one assignment on the loop thread
        self.metrics.serving(artifact.name, artifact.version, artifact.sha256,
                             (old.version, old.sha256) if old else None)
        if old is not None:
            old.retire()
        return loaded

    async def start(self) -> None:
        """Load every model (startup errors propagate: the server must not report ready without them)."""
        loop = asyncio.get_running_loop()
        for handle in self.handles.values():
            self.metrics.declare_model(handle.name)
            started = time.perf_counter()
            artifact, model = await loop.run_in_executor(None, self._load_blocking, handle.ref)
            loaded = self._activate(handle, artifact, model)
            self.log("model_loaded", model=handle.name, version=loaded.version, sha256=loaded.sha256,
                     path=str(artifact.path), providers=model.providers, batching=model.batchable,
                     seconds=round(time.perf_counter() - started, 3))
        self.ready = True

    # ---------------------------------------------------------------- following stages

    async def follow(self) -> None:
        """Poll every stage-following model until cancelled."""
        following = [h for h in self.handles.values() if h.ref.follows_stage]
        if not following:
            return
        while True:
            await asyncio.sleep(self.options.poll_interval)
            for handle in following:
                await self.check(handle)

    async def check(self, handle: ModelHandle) -> None:
        loop = asyncio.get_running_loop()
        try:
            wanted = await loop.run_in_executor(None, current_version, handle.ref, self._registry_for())
        except Exception as exc:  # noqa: BLE001 - an unreadable or empty stage keeps the current version serving
            self._failed(handle, "?", f"cannot read {handle.ref.text}: {exc}")
            return
        if wanted is None or (handle.active and wanted == handle.active.version):
            if handle.failure and handle.active and wanted == handle.active.version:
                handle.failure = None  # the stage went back to what we serve (a rollback): nothing is failing now
                self.metrics.set_failing(handle.name, False)
            return
        if handle.failure and handle.failure.version == wanted:
            return  # tried and failed; the next stage change is tried again
        await self.swap(handle, wanted)

    async def swap(self, handle: ModelHandle, wanted: str) -> None:
        loop = asyncio.get_running_loop()
        handle.loading = wanted
        started = time.perf_counter()
        old = handle.active.version if handle.active else None
        try:
            artifact, model = await loop.run_in_executor(None, self._load_blocking, handle.ref)
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the old version goes on serving
            handle.loading = None
            self._failed(handle, wanted, str(exc))
            return
        handle.loading = None
        if artifact.version != wanted:  # the stage moved again while loading: serve what was loaded, check again
            wanted = artifact.version
        self._activate(handle, artifact, model)
        handle.failure = None
        handle.swaps += 1
        self.metrics.reload(handle.name, True)
        self.log("model_swapped", model=handle.name, version=wanted, previous=old, sha256=artifact.sha256,
                 seconds=round(time.perf_counter() - started, 3))

    def _failed(self, handle: ModelHandle, version: str, error: str) -> None:
        first = not (handle.failure and handle.failure.version == version and handle.failure.error == error)
        handle.failure = ReloadFailure(version=version, error=error, at=time.time())
        if first:
            self.metrics.reload(handle.name, False)
            self.log("model_reload_failed", level="error", model=handle.name, version=version, error=error,
                     serving=handle.active.version if handle.active else None)

    # ---------------------------------------------------------------- shutdown

    async def release(self, timeout: float) -> None:
        """Retire every version and wait (up to ``timeout``) until their sessions are released."""
        versions = [h.active for h in self.handles.values() if h.active is not None]
        for v in versions:
            v.retire()
        if versions:
            try:
                await asyncio.wait_for(asyncio.gather(*(v.released.wait() for v in versions)), timeout)
            except asyncio.TimeoutError:
                pass


def raise_dup(ref: ModelRef, other: ModelRef) -> None:
    from mlserve.errors import UsageError

    raise UsageError(f"{ref.text} and {other.text} would both be served as model {ref.name!r}")

"""A served model's versions and variants: what requests are routed to.

- :class:`LoadedVersion`: one version in memory (its ONNX Runtime session, queue, in-flight count);
- :class:`ModelHandle`: one variant: its REF, the version it serves now, its hot-swap state;
- :class:`Split`: a model's variants and weights at one revision, replaced whole;
- :class:`ModelGroup`: a served model (its split and its executor threads).

Loading and hot swaps are :mod:`mlserve.serve.repository`'s; weights and hashing :mod:`mlserve.serve.split`'s.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlserve.serve.batching import Batcher, ExecutorPool
from mlserve.serve.errors import BadRequest
from mlserve.serve.runtime import OnnxModel
from mlserve.serve.sources import Artifact, ModelRef
from mlserve.serve.split import Router, Sticky


class LoadedVersion:
    """One version in memory: its session, its queue and executors, and its in-flight count."""

    def __init__(self, artifact: Artifact, model: OnnxModel, batcher: Batcher, inflight_gauge: Any, *,
                 name: str | None = None, variant: str = "stable") -> None:
        self.artifact = artifact
        self.name = name or artifact.name  # the served model's name (a variant's file may have another stem)
        self.variant = variant
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
    """One variant of a served model: its REF, the version it serves now, and its hot-swap state."""

    def __init__(self, ref: ModelRef, *, model: str | None = None, variant: str = "stable") -> None:
        self.ref = ref
        self.name = model or ref.name  # the served model's name
        self.variant = variant
        self.active: LoadedVersion | None = None
        self.loading: str | None = None
        self.failure: ReloadFailure | None = None
        self.swaps = 0
        self.removed = False  # taken out of its model's split (by the admin endpoint)

    @property
    def follows(self) -> str | None:
        return f"{self.ref.name}@{self.ref.stage}" if self.ref.follows_stage else None

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"serving": self.active.version if self.active else None, "follows": self.follows,
                               "loading": self.loading}
        if self.failure:
            doc["reload_failed"] = {"version": self.failure.version, "error": self.failure.error}
        return doc


class Split:
    """The variants of a model and their weights at one revision: replaced whole, in one assignment."""

    __slots__ = ("handles", "router", "experiment", "salt", "sticky", "revision", "updated")

    def __init__(self, handles: tuple[ModelHandle, ...], weights: tuple[float, ...], *, experiment: str, salt: str,
                 sticky: Sticky | None, revision: int) -> None:
        self.handles = handles
        self.router = Router([h.variant for h in handles], weights, salt)
        self.experiment = experiment
        self.salt = salt
        self.sticky = sticky
        self.revision = revision
        self.updated = time.time()

    def spec(self) -> tuple:
        """What a change compares against to tell whether it changes anything."""
        return (tuple((h.variant, h.ref.text, w) for h, w in zip(self.handles, self.router.weights)),
                self.experiment, self.salt, self.sticky)

    def variant(self, name: str) -> ModelHandle | None:
        for h in self.handles:
            if h.variant == name:
                return h
        return None


class ModelGroup:
    """A served model: its split (the first variant is the primary one: metadata and config describe it)."""

    def __init__(self, name: str, split: Split) -> None:
        self.name = name
        self.split = split
        self.pool: ExecutorPool | None = None  # the model's executor threads, shared by all its versions

    @property
    def primary(self) -> ModelHandle:
        return self.split.handles[0]

    @property
    def handles(self) -> tuple[ModelHandle, ...]:
        return self.split.handles

    @property
    def unassigned(self) -> LoadedVersion | None:
        """What a request rejected before its assignment counts under: the variant that takes every request
        (None while several share them)."""
        split = self.split
        only = split.router.only
        return split.handles[only].active if only is not None else None


def signature_difference(a: OnnxModel, b: OnnxModel) -> str | None:
    """How ``b``'s inputs or outputs differ from ``a``'s (names, datatypes, input shapes), or None."""
    ins_a = [(s.name, s.datatype, s.shape) for s in a.inputs]
    ins_b = [(s.name, s.datatype, s.shape) for s in b.inputs]
    if ins_a != ins_b:
        return f"its inputs {_specs(b.inputs)} differ from {_specs(a.inputs)}"
    outs_a = [(s.name, s.datatype) for s in a.outputs]
    outs_b = [(s.name, s.datatype) for s in b.outputs]
    if outs_a != outs_b:
        return f"its outputs {_specs(b.outputs)} differ from {_specs(a.outputs)}"
    return None


def _specs(specs: list) -> str:
    return ", ".join(f"{s.name} {s.datatype}{list(s.shape)}" for s in specs)

"""Dynamic batching: one bounded queue per loaded model version, drained by executor threads.

A batch forms as soon as an executor is free, taking what is queued (Triton's default, a queue delay
of 0) up to ``max_batch_size`` rows; with ``max_queue_delay`` > 0 a free executor waits that long after
the oldest request for more. Only requests with the same *key* (the non-batch dimensions and dtypes
of every input, and the outputs asked for) share a run, and only when the model's inputs and outputs
all have a dynamic first dimension. At low load an executor is idle when a request arrives, so the
request runs alone at once: batching costs nothing there.

The event loop calls :meth:`Batcher.submit` and awaits the future; executors run ONNX Runtime (which
releases the GIL) and hand each finished batch back with one ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from mlserve.serve.errors import ModelFailed, Overloaded, RequestError, RequestTimeout


@dataclass(frozen=True)
class BatchingOptions:
    max_batch_size: int = 32  # rows per run; 1 turns batching off
    max_queue_delay: float = 0.0  # seconds a free executor waits for more requests (0: never waits)
    max_queue: int = 1024  # queued requests beyond which new ones get 503 / UNAVAILABLE at once
    instances: int = 1  # executor threads per model version (concurrent session.run calls)
    request_timeout: float = 60.0  # seconds from arrival to result (0: no limit)


class Pending:
    """One queued request."""

    __slots__ = ("feeds", "rows", "key", "outputs", "future", "enqueued", "timer", "taken")

    def __init__(self, feeds: dict[str, np.ndarray], rows: int, key: Any, outputs: list[str] | None,
                 future: asyncio.Future) -> None:
        self.feeds = feeds
        self.rows = rows
        self.key = key
        self.outputs = outputs
        self.future = future
        self.enqueued = time.perf_counter()
        self.timer: asyncio.TimerHandle | None = None
        self.taken = False


BatchObserver = Callable[[int, float, float], None]  # (rows, queue seconds of the oldest, compute seconds)


class Batcher:
    def __init__(self, run: Callable[[dict[str, np.ndarray], list[str] | None], list[np.ndarray]], *,
                 batchable: bool, options: BatchingOptions, loop: asyncio.AbstractEventLoop,
                 observe: BatchObserver | None = None, name: str = "model", depth: Any = None) -> None:
        self._run = run
        self._batchable = batchable and options.max_batch_size > 1
        self.options = options
        self._loop = loop
        self._observe = observe
        self._depth = depth  # a gauge (prometheus-client child) of the queue's length, or None
        self._queue: collections.deque[Pending] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"mlserve-exec-{name}-{i}", daemon=True)
                         for i in range(max(1, options.instances))]
        for t in self._threads:
            t.start()

    # ---------------------------------------------------------------- event-loop side

    def queued(self) -> int:
        return len(self._queue)

    def submit(self, feeds: dict[str, np.ndarray], rows: int, key: Any, outputs: list[str] | None) -> asyncio.Future:
        """Queue one request (from the event loop); its future gets the list of output arrays."""
        future = self._loop.create_future()
        item = Pending(feeds, rows, key, outputs, future)
        with self._cond:
            if self._closed:
                raise Overloaded("the model is shutting down")
            if len(self._queue) >= self.options.max_queue:
                raise Overloaded(f"the queue is full ({self.options.max_queue} requests waiting; see --max-queue)")
            self._queue.append(item)
            self._cond.notify()
            if self._depth is not None:
                self._depth.set(len(self._queue))
        if self.options.request_timeout > 0:
            item.timer = self._loop.call_later(self.options.request_timeout, self._expire, item)
        future.add_done_callback(lambda f, item=item: self._settled(item, f))
        return future

    def _expire(self, item: Pending) -> None:
        if not item.future.done():
            item.future.set_exception(RequestTimeout(
                f"no result within {self.options.request_timeout:g} s (--request-timeout)"))

    def _settled(self, item: Pending, future: asyncio.Future) -> None:
        if item.timer is not None:
            item.timer.cancel()
        if future.cancelled() or future.exception() is not None:
            with self._cond:  # a cancelled or expired request frees its place in the queue at once
                if not item.taken:
                    try:
                        self._queue.remove(item)
                    except ValueError:
                        pass

    def _deliver(self, batch: list[Pending], results: list[Any]) -> None:
        for item, result in zip(batch, results):
            if item.future.done():
                continue
            if isinstance(result, BaseException):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)

    # ---------------------------------------------------------------- executor side

    def _take(self) -> list[Pending] | None:
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            first = self._queue.popleft()
            first.taken = True
            batch = [first]
            if not self._batchable:
                return batch
            rows = first.rows
            limit = self.options.max_batch_size
            deadline = first.enqueued + self.options.max_queue_delay
            while rows < limit:
                if not self._queue:
                    wait = deadline - time.perf_counter()
                    if wait <= 0 or self._closed:
                        break
                    self._cond.wait(wait)
                    continue
                nxt = self._queue[0]
                if nxt.key != first.key or rows + nxt.rows > limit:
                    break  # first come, first served: an incompatible request ends the batch
                self._queue.popleft()
                nxt.taken = True
                batch.append(nxt)
                rows += nxt.rows
            return batch

    def _work(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if self._depth is not None:
                self._depth.set(len(self._queue))
            batch = [item for item in batch if not item.future.done()]
            if not batch:
                continue
            started = time.perf_counter()
            results = self._execute(batch)
            done = time.perf_counter()
            if self._observe is not None:
                self._observe(sum(i.rows for i in batch), started - batch[0].enqueued, done - started)
            try:
                self._loop.call_soon_threadsafe(self._deliver, batch, results)
            except RuntimeError:  # the loop is closed: nobody waits for these any more
                return

    def _execute(self, batch: list[Pending]) -> list[Any]:
        if len(batch) == 1:
            item = batch[0]
            return [self._run_one(item.feeds, item.outputs)]
        names = list(batch[0].feeds)
        feeds = {n: np.concatenate([item.feeds[n] for item in batch], axis=0) for n in names}
        total = sum(item.rows for item in batch)
        try:
            outs = self._run(feeds, batch[0].outputs)
        except Exception:  # noqa: BLE001 - one bad request must not fail its neighbours: run each alone
            return [self._run_one(item.feeds, item.outputs) for item in batch]
        if any(o.ndim == 0 or o.shape[0] != total for o in outs):
            # The graph does not keep rows apart after all (e.g. it reduces over the batch): run each alone.
            return [self._run_one(item.feeds, item.outputs) for item in batch]
        results: list[Any] = []
        start = 0
        for item in batch:
            results.append([o[start:start + item.rows] for o in outs])
            start += item.rows
        return results

    def _run_one(self, feeds: dict[str, np.ndarray], outputs: list[str] | None) -> Any:
        try:
            return self._run(feeds, outputs)
        except RequestError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - the model raised: a 500 for this request, the server goes on
            text = str(exc).strip().splitlines()
            return ModelFailed(f"the model failed: {type(exc).__name__}: {(text[0] if text else '')[:300]}")

    # ---------------------------------------------------------------- shutdown

    def close(self, timeout: float = 5.0) -> None:
        """Stop the executors after what is queued has run."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)

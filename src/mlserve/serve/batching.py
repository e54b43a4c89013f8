"""Dynamic batching: one bounded queue per loaded model version, drained by executor threads.

A batch forms as soon as an executor is free, taking what is queued (Triton's default, a queue delay
of 0) up to ``max_batch_size`` rows; with ``max_queue_delay`` > 0 a free executor waits that long after
the oldest request for more. Only requests with the same *key* (the non-batch dimensions and dtypes
of every input, and the outputs asked for) share a run, and only when the model's inputs and outputs
all have a dynamic first dimension. At low load an executor is idle when a request arrives, so the
request runs alone at once: batching costs nothing there.

The event loop calls :meth:`Batcher.submit` and awaits the future; executors run ONNX Runtime (which
releases the GIL) and hand each finished batch back with one ``call_soon_threadsafe``.

The executor threads belong to an :class:`ExecutorPool`, one per served model: the queues of every
version the model holds (its split's variants, the old and new version of a hot swap) share the
model's ``--instances`` threads, and a free thread takes the queue whose oldest request waited
longest. Two versions of a model thus never add threads (on a small machine, more threads than cores
cost more in switching than a second queue does).
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


class ExecutorPool:
    """Executor threads shared by several batchers (the versions of one model); one lock for all their queues."""

    def __init__(self, instances: int = 1, name: str = "model") -> None:
        self.cond = threading.Condition(threading.Lock())
        self._batchers: list[Batcher] = []
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"mlserve-exec-{name}-{i}", daemon=True)
                         for i in range(max(1, instances))]
        for t in self._threads:
            t.start()

    def wake(self) -> None:
        """A request was queued (cond held): one thread suffices, unless some may be waiting on another
        queue's --max-queue-delay and would go back to sleep."""
        if len(self._threads) == 1:
            self.cond.notify()
        else:
            self.cond.notify_all()

    def add(self, batcher: "Batcher") -> None:
        with self.cond:
            self._batchers.append(batcher)

    def _next(self) -> "Batcher | None":
        """The batcher whose oldest request waited longest (cond held); closed, empty batchers leave."""
        best = None
        for b in self._batchers:
            if b._queue and (best is None or b._queue[0].enqueued < best._queue[0].enqueued):
                best = b
        if best is None and any(b._closed for b in self._batchers):
            self._batchers = [b for b in self._batchers if not b._closed]
        return best

    def _work(self) -> None:
        while True:
            with self.cond:
                while True:
                    batcher = self._next()
                    if batcher is not None:
                        break
                    if self._closed:
                        return
                    self.cond.wait()
                batch = batcher._form()
                batcher._running += 1
            try:
                batcher._finish(batch)
            finally:
                with self.cond:
                    batcher._running -= 1
                    self.cond.notify_all()  # a close() may wait for this run

    def close(self, timeout: float = 5.0) -> None:
        """Stop the threads once every queue is empty."""
        with self.cond:
            self._closed = True
            self.cond.notify_all()
        for t in self._threads:
            t.join(timeout)


class Batcher:
    def __init__(self, run: Callable[[dict[str, np.ndarray], list[str] | None], list[np.ndarray]], *,
                 batchable: bool, options: BatchingOptions, loop: asyncio.AbstractEventLoop,
                 observe: BatchObserver | None = None, name: str = "model", depth: Any = None,
                 pool: ExecutorPool | None = None) -> None:
        self._run = run
        self._batchable = batchable and options.max_batch_size > 1
        self.options = options
        self._loop = loop
        self._observe = observe
        self._depth = depth  # a gauge (prometheus-client child) of the queue's length, or None
        self._queue: collections.deque[Pending] = collections.deque()
        self._closed = False
        self._running = 0  # batches taken and not yet delivered
        self._own_pool = pool is None  # without a shared pool, a pool of its own
        self._pool = pool or ExecutorPool(options.instances, name)
        self._cond = self._pool.cond
        self._pool.add(self)

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
            self._pool.wake()
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

    def _form(self) -> list[Pending]:
        """Take the next batch (the pool's lock held, the queue not empty)."""
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

    def _finish(self, batch: list[Pending]) -> None:
        """Run a batch taken by :meth:`_form` (no lock held) and hand its results to the event loop."""
        if self._depth is not None:
            self._depth.set(len(self._queue))
        batch = [item for item in batch if not item.future.done()]
        if not batch:
            return
        started = time.perf_counter()
        results = self._execute(batch)
        done = time.perf_counter()
        if self._observe is not None:
            self._observe(sum(i.rows for i in batch), started - batch[0].enqueued, done - started)
        try:
            self._loop.call_soon_threadsafe(self._deliver, batch, results)
        except RuntimeError:  # the loop is closed: nobody waits for these any more
            pass

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
        """Take no more requests; return once what is queued has run (a pool of its own then stops)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            while self._queue or self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        if self._own_pool:
            self._pool.close(max(0.0, deadline - time.monotonic()))

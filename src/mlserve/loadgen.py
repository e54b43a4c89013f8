"""A small load generator for ``mlserve serve`` (``mlserve load``): real OIP v2 infer requests, counted by version.

Stdlib only: a few threads, each with its own keep-alive ``http.client`` connection, send
``POST /v2/models/{model}/infer`` with a sticky user key in a header (``X-User-Id: user-17``). The
users are ``user-0`` ... ``user-{users-1}``, taken in turn; every user always sends the same row (its
values come from the key), so a user whose input a model cannot handle fails on every request that
reaches that model, and never on another. The inputs are read from the model's metadata
(``GET /v2/models/{model}``): every dynamic dimension is 1, FP32/FP64 values are normal draws, integers
small, BOOL alternate.

Each request is recorded: the key, the HTTP status (0: no answer, e.g. a refused connection), the
version and the variant that answered (``X-Model-Version`` / ``X-Model-Variant``), the latency, and the
time since the start. :class:`LoadReport` sums them up per version and per variant; a request is a
*failure* when it got no answer or a status of 500 and above (a 4xx would be the load generator's own
mistake, and is counted as a failure too, separately).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from pydantic import BaseModel, Field

from mlserve.errors import InfrastructureError, UsageError


class RequestRecord(BaseModel):
    key: str
    status: int
    """HTTP status; 0 when no answer came (connection refused or reset, timeout)."""
    version: str = ""
    variant: str = ""
    latency_ms: float
    t: float
    """Seconds from the start of the run to the moment the request was sent."""
    error: str = ""

    @property
    def failed(self) -> bool:
        return self.status == 0 or self.status >= 400


class GroupSummary(BaseModel):
    requests: int = 0
    errors: int = 0
    """Requests that failed: no answer, or an HTTP status >= 400."""
    users: int = 0
    users_with_errors: int = 0
    statuses: dict[str, int] = Field(default_factory=dict)
    p50_ms: float = 0.0
    p99_ms: float = 0.0


class LoadReport(BaseModel):
    url: str
    model: str
    header: str
    requests: int
    errors: int
    unanswered: int
    """Requests with no HTTP answer at all (no version to blame)."""
    seconds: float
    requests_per_second: float
    users: int
    by_version: dict[str, GroupSummary]
    by_variant: dict[str, GroupSummary]
    records_file: Optional[Path] = None


def _summary(records: list[RequestRecord]) -> GroupSummary:
    lat = sorted(r.latency_ms for r in records)

    def q(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 3) if lat else 0.0

    statuses = Counter(str(r.status) for r in records)
    return GroupSummary(requests=len(records), errors=sum(r.failed for r in records),
                        users=len({r.key for r in records}), users_with_errors=len({r.key for r in records if r.failed}),
                        statuses=dict(sorted(statuses.items())), p50_ms=q(0.5), p99_ms=q(0.99))


def summarize(records: list[RequestRecord], *, url: str, model: str, header: str, seconds: float,
              records_file: Path | None = None) -> LoadReport:
    def grouped(attr: str) -> dict[str, GroupSummary]:
        groups: dict[str, list[RequestRecord]] = {}
        for r in records:
            groups.setdefault(getattr(r, attr) or "-", []).append(r)
        return {k: _summary(v) for k, v in sorted(groups.items())}

    return LoadReport(url=url, model=model, header=header, requests=len(records),
                      errors=sum(r.failed for r in records), unanswered=sum(r.status == 0 for r in records),
                      seconds=round(seconds, 3), requests_per_second=round(len(records) / seconds, 1) if seconds else 0.0,
                      users=len({r.key for r in records}), by_version=grouped("version"), by_variant=grouped("variant"),
                      records_file=records_file)


def read_records(path: Path) -> list[RequestRecord]:
    return [RequestRecord.model_validate_json(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _split_url(url: str) -> tuple[str, int, str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise UsageError(f"--server {url!r} is not an http:// URL", hint="e.g. --server http://127.0.0.1:8000")
    return parts.hostname, parts.port or 80, parts.path.rstrip("/")


def _get_json(url: str, path: str, timeout: float) -> tuple[int, Any]:
    host, port, prefix = _split_url(url)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", prefix + path)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, None
    finally:
        conn.close()


def wait_ready(url: str, timeout: float, *, sleep: Callable[[float], None] = time.sleep) -> None:
    """Wait until ``GET /v2/health/ready`` answers 200; :class:`InfrastructureError` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            status, _ = _get_json(url, "/v2/health/ready", timeout=2)
            if status == 200:
                return
            last = f"ready answered {status}"
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise InfrastructureError(f"the server at {url} was not ready within {timeout:g} s ({last})",
                                      hint="is mlserve serve running there? its log says why it is not ready")
        sleep(0.1)


def _values(datatype: str, count: int, rng: random.Random) -> list[Any]:
    if datatype in ("FP32", "FP64", "FP16", "BF16"):
        return [round(rng.gauss(0.0, 1.0), 6) for _ in range(count)]
    if datatype == "BOOL":
        return [i % 2 == 0 for i in range(count)]
    if datatype == "BYTES":
        return ["x"] * count
    return [rng.randrange(0, 4) for _ in range(count)]


def request_body(metadata: dict[str, Any], key: str, seed: int = 0) -> bytes:
    """The infer request of user ``key``: the same body every time for the same key and seed."""
    digest = hashlib.sha256(f"{seed}\n{key}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    inputs = []
    for spec in metadata.get("inputs") or []:
        shape = [1 if int(d) < 0 else int(d) for d in spec.get("shape") or []]
        count = 1
        for d in shape:
            count *= d
        inputs.append({"name": spec["name"], "shape": shape, "datatype": spec["datatype"],
                       "data": _values(spec["datatype"], count, rng)})
    return json.dumps({"inputs": inputs}).encode()


class LoadGenerator:
    """Sends requests to ``url`` for ``model`` from ``threads`` threads until stopped, or ``requests`` are sent."""

    def __init__(self, url: str, model: str, *, users: int = 100, threads: int = 4, header: str = "X-User-Id",
                 rate: float | None = None, seed: int = 0, timeout: float = 10.0, key_prefix: str = "user-") -> None:
        if users < 1 or threads < 1:
            raise UsageError("--users and --threads must be at least 1")
        if rate is not None and rate <= 0:
            raise UsageError("--rate must be above 0 requests per second")
        self.url = url.rstrip("/")
        self.host, self.port, self.prefix = _split_url(self.url)
        self.model = model
        self.users = users
        self.threads = threads
        self.header = header
        self.rate = rate
        self.seed = seed
        self.timeout = timeout
        self.key_prefix = key_prefix
        self.records: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()
        self._bodies: dict[str, bytes] = {}
        self._sink: Optional[Callable[[RequestRecord], None]] = None
        self.started = 0.0
        self.elapsed = 0.0

    def stop(self) -> None:
        self._stop.set()

    def metadata(self) -> dict[str, Any]:
        try:
            status, doc = _get_json(self.url, f"/v2/models/{urllib.parse.quote(self.model)}", timeout=self.timeout)
        except OSError as exc:
            raise InfrastructureError(f"cannot read the metadata of {self.model!r} at {self.url}: {exc}") from None
        if status == 404:
            raise UsageError(f"the server at {self.url} does not serve model {self.model!r}")
        if status != 200 or not isinstance(doc, dict):
            raise InfrastructureError(f"GET /v2/models/{self.model} at {self.url} answered {status}")
        return doc

    def _take(self, limit: int | None) -> int | None:
        with self._lock:
            if self._stop.is_set() or (limit is not None and self._next >= limit):
                return None
            n = self._next
            self._next += 1
            return n

    def _worker(self, limit: int | None, path: str) -> None:
        conn: http.client.HTTPConnection | None = None
        per_thread_interval = self.threads / self.rate if self.rate else 0.0
        next_at = time.monotonic()
        while True:
            n = self._take(limit)
            if n is None:
                break
            if per_thread_interval:
                delay = next_at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                next_at = max(next_at + per_thread_interval, time.monotonic() - 1.0)
            key = f"{self.key_prefix}{n % self.users}"
            body = self._bodies[key]
            sent = time.monotonic()
            status, version, variant, error = 0, "", "", ""
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                conn.request("POST", path, body, {"Content-Type": "application/json", self.header: key})
                resp = conn.getresponse()
                raw = resp.read()
                status = resp.status
                version = resp.getheader("X-Model-Version") or ""
                variant = resp.getheader("X-Model-Variant") or ""
                if status >= 400:
                    try:
                        error = str(json.loads(raw).get("error", ""))[:300]
                    except (ValueError, AttributeError):
                        error = raw[:300].decode("utf-8", "replace")
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
                if conn is not None:
                    conn.close()
                conn = None
            record = RequestRecord(key=key, status=status, version=version, variant=variant,
                                   latency_ms=round((time.monotonic() - sent) * 1000, 3),
                                   t=round(sent - self.started, 4), error=error)
            with self._lock:
                self.records.append(record)
                if self._sink is not None:
                    self._sink(record)
        if conn is not None:
            conn.close()

    def run(self, *, requests: int | None = None, duration: float | None = None,
            sink: Optional[Callable[[RequestRecord], None]] = None) -> list[RequestRecord]:
        """Send until ``requests`` are sent, ``duration`` seconds passed, or :meth:`stop`; the records."""
        meta = self.metadata()
        self._bodies = {f"{self.key_prefix}{i}": request_body(meta, f"{self.key_prefix}{i}", self.seed)
                        for i in range(self.users)}
        self._sink = sink
        path = f"{self.prefix}/v2/models/{urllib.parse.quote(self.model)}/infer"
        self.started = time.monotonic()
        timer = None
        if duration is not None:
            timer = threading.Timer(duration, self.stop)
            timer.daemon = True
            timer.start()
        workers = [threading.Thread(target=self._worker, args=(requests, path), name=f"mlserve-load-{i}", daemon=True)
                   for i in range(self.threads)]
        for w in workers:
            w.start()
        try:
            for w in workers:
                while w.is_alive():
                    w.join(0.2)
        finally:
            self.stop()
            if timer is not None:
                timer.cancel()
            for w in workers:
                w.join(self.timeout + 1)
            self.elapsed = time.monotonic() - self.started
        return list(self.records)

    def report(self, records_file: Path | None = None) -> LoadReport:
        with self._lock:
            records = list(self.records)
        return summarize(records, url=self.url, model=self.model, header=self.header, seconds=self.elapsed,
                         records_file=records_file)


def write_records(records: Iterable[RequestRecord], path: Path) -> None:
    with Path(path).open("w") as fh:
        for r in records:
            fh.write(r.model_dump_json() + "\n")


__all__ = ["LoadGenerator", "LoadReport", "GroupSummary", "RequestRecord", "read_records", "request_body",
           "summarize", "wait_ready", "write_records"]

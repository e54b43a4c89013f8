"""The outside world of a rollout, injected: the clock, HTTP calls (smoke checks, gates, notifications), subprocesses.

The engine never calls ``time``, ``urllib`` or ``subprocess`` itself; it asks a :class:`World`.
Tests pass their own clock (a job that starts "later"), or point the HTTP calls at a local server;
the defaults talk to the real thing.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


class Clock:
    """Wall clock, a monotonic clock for durations, and sleep; tests may pass a subclass."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


class Interrupt:
    """Set by a signal handler (see :mod:`mlserve.rollout.interrupts`); the engine checks it between waits."""

    def __init__(self) -> None:
        self.signal: str | None = None

    def set(self, name: str) -> None:
        self.signal = name


@dataclass(frozen=True)
class HttpAnswer:
    status: int  # 0: no answer (refused, timed out, DNS); ``error`` says why
    text: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Http:
    """Plain HTTP for smoke checks, webhook gates and notifications (urllib, no extra dependency)."""

    def request(self, method: str, url: str, *, body: Any = None, timeout: float = 10.0) -> HttpAnswer:
        data = None if body is None else json.dumps(body, sort_keys=True).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "mlserve-rollout"} if data is not None else {}
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the user's own URL
                return HttpAnswer(resp.status, resp.read(4096).decode("utf-8", "replace"))
        except urllib.error.HTTPError as exc:
            return HttpAnswer(exc.code, exc.read(4096).decode("utf-8", "replace") if exc.fp else "")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return HttpAnswer(0, error=f"{type(exc).__name__}: {reason}")


@dataclass(frozen=True)
class Completed:
    returncode: int | None  # None: it could not run, or it ran out of time (see ``error``)
    stdout: str = ""
    stderr: str = ""
    error: str = ""


class Commands:
    """Runs a smoke command (argv list, never a shell)."""

    def run(self, argv: list[str], *, env: dict[str, str], timeout: float) -> Completed:
        try:
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return Completed(None, error=f"timed out after {timeout:g}s")
        except OSError as exc:
            return Completed(None, error=str(exc))
        return Completed(done.returncode, done.stdout, done.stderr)


@dataclass
class World:
    clock: Clock = field(default_factory=Clock)
    http: Http = field(default_factory=Http)
    commands: Commands = field(default_factory=Commands)


def default_owner() -> str:
    """Who runs this rollout: user@host:pid, plus the CI job id ($GITHUB_RUN_ID, $CI_JOB_ID or $BUILD_ID)."""
    import getpass
    import os
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    job = os.environ.get("GITHUB_RUN_ID") or os.environ.get("CI_JOB_ID") or os.environ.get("BUILD_ID")
    suffix = f" job {job}" if job else ""
    return f"{user}@{socket.gethostname()}:{os.getpid()}{suffix}"

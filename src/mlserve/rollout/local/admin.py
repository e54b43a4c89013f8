"""HTTP calls to a running ``mlserve serve``: its admin endpoint (``/v2/mlserve/split``) and its data port.

Plain ``urllib`` (no extra dependency). Errors are translated once, here, the way a rollout must
react to them (the same split as :mod:`mlserve.rollout.kube` makes for the Kubernetes API):

* refused or timed-out connections and 503 (the server is starting, loading or draining) are
  transient: retried with backoff (0.1 s doubling to 2 s, honouring ``Retry-After``) within
  ``retry_budget`` seconds, then :class:`~mlserve.errors.InfrastructureError` (exit 12). A URL
  that has never answered this client is not retried (a wrong ``--server`` fails at once);
* 401/403 (no or a wrong admin token): :class:`InfrastructureError` naming ``MLSERVE_ADMIN_TOKEN``;
* 404: :class:`~mlserve.errors.NotFoundError` (the model is not served there);
* 409 (``expect_revision`` did not match: someone else changed the split): :class:`~mlserve.errors.ConflictError`;
* 422 (a version that cannot be served: missing, damaged, other inputs): :class:`UnservableVersion`,
  a :class:`~mlserve.errors.RolledBackError`: like a Deployment that never becomes ready, such a
  canary never gets traffic (exit 10);
* 400 and other answers: :class:`~mlserve.errors.ApiRejectedError` with what the server said.

The admin token is sent as ``Authorization: Bearer ...`` and never appears in a message.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable

from mlserve.errors import ApiRejectedError, ConflictError, InfrastructureError, NotFoundError, RolledBackError

SPLIT_PATH = "/v2/mlserve/split"
TOKEN_HINT = ("set MLSERVE_ADMIN_TOKEN (or --admin-token) to the token the server was started with, and --admin-url "
              "to its admin endpoint (--admin-host/--admin-port of mlserve serve)")


class UnservableVersion(RolledBackError):
    """The server refused to load a version (422): it never gets traffic."""


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer
    body: Any = None
    text: str = ""
    retry_after: float | None = None
    error: str = ""


class ServerClient:
    """One running ``mlserve serve``: ``server`` is its REST URL, ``admin`` its admin endpoint's URL."""

    def __init__(self, server: str, admin: str, token: str | None, *, timeout: float = 30.0, retry_budget: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.server = server.rstrip("/")
        self.admin = admin.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.retry_budget = retry_budget
        self._sleep = sleep
        self._monotonic = monotonic
        self.requests: list[tuple[str, str, Any]] = []  # (method, path, body) of every change sent, for plan == run
        self._answered: set[str] = set()  # the base URLs that have answered once: only their outages are retried

    # ------------------------------------------------------------------ the split

    def get_split(self, model: str) -> dict[str, Any] | None:
        """The split document of ``model`` (docs/serve.md), or None when the server does not serve it."""
        answer = self._admin("GET", f"{SPLIT_PATH}/{model}")
        if answer.status == 404:
            return None
        return self._checked(answer, f"GET {SPLIT_PATH}/{model}")

    def change_split(self, method: str, model: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST (change some weights and refs) or PUT (replace) the split; the new split document."""
        path = f"{SPLIT_PATH}/{model}"
        self.requests.append((method, path, body))
        answer = self._admin(method, path, body)
        if answer.status == 404:
            raise NotFoundError(f"the server at {self.admin} does not serve model {model!r}")
        return self._checked(answer, f"{method} {path}")

    # ------------------------------------------------------------------ the data port

    def model_metadata(self, model: str, version: str | None = None) -> dict[str, Any] | None:
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "")
        answer = self._send("GET", self.server + path, None, auth=False)
        if answer.status == 404:
            return None
        return self._checked(answer, f"GET {path}", where=self.server)

    def infer(self, model: str, version: str, body: dict[str, Any]) -> Answer:
        """One inference pinned to ``version`` (no retries: a smoke check wants the first answer)."""
        return self._once("POST", f"{self.server}/v2/models/{model}/versions/{version}/infer", body, auth=False)

    def metrics_url(self) -> str:
        return f"{self.server}/metrics"

    # ------------------------------------------------------------------ plumbing

    def _admin(self, method: str, path: str, body: Any = None) -> Answer:
        return self._send(method, self.admin + path, body, auth=True)

    def _checked(self, answer: Answer, what: str, *, where: str | None = None) -> dict[str, Any]:
        where = where or self.admin
        message = (answer.body or {}).get("error") if isinstance(answer.body, dict) else None
        detail = message or answer.text[:300] or answer.error
        if answer.status in (401, 403):
            raise InfrastructureError(f"the admin endpoint at {where} refused {what} ({answer.status}): {detail}",
                                      hint=TOKEN_HINT)
        if answer.status == 409:
            raise ConflictError(f"the split changed under us: {detail}")
        if answer.status == 422:
            raise UnservableVersion(f"mlserve serve at {where} refused {what} (422), it cannot serve that version: {detail}")
        if answer.status == 0 or answer.status >= 500:
            raise InfrastructureError(f"mlserve serve at {where} did not answer {what}: {detail}",
                                      hint="check --server / --admin-url and that mlserve serve is running")
        if not 200 <= answer.status < 300 or not isinstance(answer.body, dict):
            raise ApiRejectedError(f"mlserve serve at {where} answered {answer.status} to {what}: {detail}")
        return answer.body

    def _send(self, method: str, url: str, body: Any, *, auth: bool) -> Answer:
        """One request, retried while the answer is transient and the budget lasts."""
        give_up = self._monotonic() + self.retry_budget
        delay = 0.1
        base = self.admin if auth else self.server
        while True:
            answer = self._once(method, url, body, auth=auth)
            if answer.status != 0:
                self._answered.add(base)
            if answer.status not in (0, 503) or (answer.status == 0 and base not in self._answered):
                return answer
            left = give_up - self._monotonic()
            if left <= 0:
                return answer
            self._sleep(min(left, max(delay, answer.retry_after or 0.0)))
            delay = min(2.0, delay * 2)

    def _once(self, method: str, url: str, body: Any, *, auth: bool) -> Answer:
        data = None if body is None else json.dumps(body, sort_keys=True).encode("utf-8")
        headers = {"User-Agent": "mlserve-rollout"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if auth and self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - the user's own server
                raw = resp.read()
                status = resp.status
                retry = resp.headers.get("Retry-After")
        except urllib.error.HTTPError as exc:
            raw = exc.read() if exc.fp else b""
            status = exc.code
            retry = exc.headers.get("Retry-After") if exc.headers else None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return Answer(0, error=f"{type(exc).__name__}: {reason}")
        text = raw.decode("utf-8", "replace")
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        try:
            after = float(retry) if retry else None
        except ValueError:
            after = None
        return Answer(status, parsed, text, after)


__all__ = ["Answer", "ServerClient", "UnservableVersion", "SPLIT_PATH"]

"""A small client for Prometheus's HTTP query API (``/api/v1/query`` and ``/api/v1/query_range``).

Only what the canary judge needs: one series per query, as ``(unix_seconds, value)`` pairs. Errors
are split the way a rollout has to react to them:

* the server cannot be reached, answers 5xx, 401/403/404 or something that is not the API's JSON:
  :class:`~mlserve.errors.InfrastructureError` (exit 12; the rollout state stays recoverable);
* the server rejects the PromQL (HTTP 400 ``bad_data``, 422 ``execution``) or the query returns
  several series: :class:`~mlserve.errors.UsageError` (the analysis file must be fixed).

httpx is imported lazily (``mlserve[kubernetes]``). Credentials in the URL never appear in messages.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from mlserve._deps import require
from mlserve.errors import InfrastructureError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    import httpx

TimeLike = datetime | float | int
StepLike = str | float | int | timedelta


def redact_url(url: str) -> str:
    """``url`` without user:password (it may end up in CI logs)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def to_unix(when: TimeLike) -> float:
    """Seconds since the epoch; a naive datetime is taken as UTC."""
    if isinstance(when, datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return when.timestamp()
    return float(when)


def _step_param(step: StepLike) -> str:
    if isinstance(step, timedelta):
        return f"{step.total_seconds():g}s"
    if isinstance(step, (int, float)):
        return f"{float(step):g}s"
    return step


def _to_float(raw: Any) -> float:
    # Prometheus encodes sample values as strings: "1.5", "NaN", "+Inf", "-Inf".
    try:
        return float(raw)
    except (TypeError, ValueError) as exc:
        raise InfrastructureError(f"Prometheus returned a sample value that is not a number: {raw!r}") from exc


class PrometheusClient:
    """Queries one Prometheus server.

    ``client`` lets a caller inject a configured ``httpx.Client`` (TLS, proxies, a test transport);
    otherwise one is built with ``timeout``, ``headers`` (e.g. ``Authorization``) and ``retries``
    connection retries.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10,
        client: "httpx.Client | None" = None,
        headers: dict[str, str] | None = None,
        retries: int = 2,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise UsageError(f"Prometheus URL must start with http:// or https://, got {redact_url(base_url)!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._headers = dict(headers or {})
        self._retries = retries
        self._client = client
        self._owns_client = client is None

    # -- plumbing -------------------------------------------------------------------------------

    def _http(self) -> "httpx.Client":
        if self._client is None:
            httpx = require("httpx", purpose="querying Prometheus")
            self._client = httpx.Client(
                timeout=self.timeout,
                headers=self._headers,
                transport=httpx.HTTPTransport(retries=self._retries),
            )
        return self._client

    def close(self) -> None:
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> "PrometheusClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, str], promql: str) -> dict[str, Any]:
        httpx = require("httpx", purpose="querying Prometheus")
        url = f"{self.base_url}{path}"
        where = redact_url(self.base_url)
        try:
            # POST would allow longer queries, but GET works through read-only proxies too.
            response = self._http().get(url, params=params)
        except httpx.TimeoutException as exc:
            raise InfrastructureError(
                f"Prometheus at {where} did not answer within {self.timeout:g}s",
                hint="check the server's load or raise the timeout",
            ) from exc
        except httpx.HTTPError as exc:
            raise InfrastructureError(
                f"cannot reach Prometheus at {where}: {type(exc).__name__}: {exc}",
                hint="check --prometheus-url / MLSERVE_PROMETHEUS_URL and that the server is up",
            ) from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if response.status_code in (400, 422):
            raise UsageError(
                f"Prometheus rejected the query {promql!r}: {error or response.text[:200]}",
                hint="fix the PromQL in the analysis file",
            )
        if response.status_code >= 300 or not isinstance(body, dict):
            detail = error or response.text[:200].strip() or response.reason_phrase
            raise InfrastructureError(
                f"Prometheus at {where} answered HTTP {response.status_code} for {path}: {detail}",
                hint="check the URL (it should be the server's root, e.g. http://prometheus:9090) and credentials",
            )
        if body.get("status") != "success" or not isinstance(body.get("data"), dict):
            raise InfrastructureError(f"Prometheus at {where} returned an unexpected response for {path}: {str(body)[:200]}")
        return body["data"]

    @staticmethod
    def _single(result: list[dict[str, Any]], promql: str) -> dict[str, Any] | None:
        if not result:
            return None
        if len(result) > 1:
            labels = [series.get("metric", {}) for series in result[:3]]
            raise UsageError(
                f"the query {promql!r} returned {len(result)} series (e.g. {labels}); it must return one",
                hint="aggregate it, e.g. sum(...) or sum by () (...)",
            )
        return result[0]

    # -- API --------------------------------------------------------------------------------------

    def query_range(self, promql: str, start: TimeLike, end: TimeLike, step: StepLike) -> list[tuple[float, float]]:
        """The one series ``promql`` yields between ``start`` and ``end``, every ``step``.

        Returns ``[(unix_seconds, value), ...]`` in time order; values may be NaN or infinite (as
        Prometheus computes them, e.g. 0/0), an empty list when the query matches nothing.
        """
        params = {"query": promql, "start": f"{to_unix(start):.3f}", "end": f"{to_unix(end):.3f}", "step": _step_param(step)}
        data = self._get("/api/v1/query_range", params, promql)
        if data.get("resultType") != "matrix":
            raise UsageError(f"the query {promql!r} gave a {data.get('resultType')} result, a range query needs a vector")
        series = self._single(data.get("result") or [], promql)
        if series is None:
            return []
        return [(float(t), _to_float(v)) for t, v in series.get("values", [])]

    def query(self, promql: str, at: TimeLike | None = None) -> float | None:
        """The value of ``promql`` at ``at`` (default: now); None when it matches nothing."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{to_unix(at):.3f}"
        data = self._get("/api/v1/query", params, promql)
        kind = data.get("resultType")
        result = data.get("result")
        if kind == "scalar":
            return _to_float(result[1])
        if kind == "vector":
            series = self._single(result or [], promql)
            return None if series is None else _to_float(series["value"][1])
        raise UsageError(f"the query {promql!r} gave a {kind} result, expected a scalar or a vector")

    def ready(self) -> bool:
        """True when the server answers its readiness endpoint (no exception on failure)."""
        httpx = require("httpx", purpose="querying Prometheus")
        try:
            return self._http().get(f"{self.base_url}/-/ready").status_code == 200
        except httpx.HTTPError:
            return False


def finite(points: list[tuple[float, float]]) -> list[float]:
    """The finite values of a series (drops NaN and +/-Inf)."""
    return [v for _, v in points if math.isfinite(v)]

"""How ``--target local`` is put together: the server's store (its Lease in the registry) and the judge's querier.

:func:`open_server_store` builds the :class:`~mlserve.rollout.local.store.ServerStore` of one model
from the ``--server`` / ``--admin-url`` / ``--admin-token`` options, with the rollout state kept in
the registry directory. :func:`scrape_querier` is the judge's query backend when no Prometheus is
given: a :class:`~mlserve.rollout.local.scrape.Scraper` of the server's ``/metrics`` every
``scrape_interval`` of the analysis, answering the analysis's queries with the PromQL subset.
"""

from __future__ import annotations

from typing import Any

from mlserve.errors import InfrastructureError, UsageError

DEFAULT_SERVER = "http://127.0.0.1:8000"
DEFAULT_ADMIN = "http://127.0.0.1:8002"
SELECTOR = 'model="{model}",variant="{target}"'
"""The default analysis's label matchers on the local target: one variant of the model's split."""
TOKEN_ENV = "MLSERVE_ADMIN_TOKEN"


def check_url(url: str, flag: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"{flag} must start with http:// or https://, got {url!r}")
    return url.rstrip("/")


def open_server_store(model: str, *, server: str | None, admin: str | None, token: str | None, registry: Any,
                      retry_budget: float = 5.0, need_token: bool = True) -> Any:
    """The split of ``model`` on the server, its rollout state in ``registry`` (a :class:`mlserve.registry.Registry`)."""
    from mlserve.rollout.local.admin import ServerClient
    from mlserve.rollout.local.state import RegistryLeases
    from mlserve.rollout.local.store import ServerStore

    if need_token and not token:
        raise UsageError("--target local changes the split through the server's admin endpoint: it needs its token",
                         hint=f"set {TOKEN_ENV} (or --admin-token) to the token mlserve serve was started with")
    client = ServerClient(check_url(server or DEFAULT_SERVER, "--server"), check_url(admin or DEFAULT_ADMIN, "--admin-url"),
                          token, retry_budget=retry_budget)
    return ServerStore(client, model, states=RegistryLeases(registry))


def metric_names(spec: Any) -> set[str]:
    """The metric names the analysis's queries read (the scraper keeps only those)."""
    from mlserve.rollout.analysis import render_query
    from mlserve.rollout.local import promql

    names: set[str] = set()
    for metric in spec.metrics:
        query = render_query(metric.query, target="x", namespace="x", window="1m", model="x")
        names |= promql.metric_names(promql.parse(query))
    return names


def scrape_querier(spec: Any, metrics_url: str) -> tuple[Any, Any]:
    """``(querier, scraper)`` over ``metrics_url``; start the scraper with :func:`start_scraping` (and stop it when
    the rollout ends).

    Every query is parsed first, so a construct outside the PromQL subset is refused before the rollout starts.
    """
    from mlserve.rollout.analysis import parse_duration
    from mlserve.rollout.local.scrape import Scraper, ScrapeQuerier

    names = metric_names(spec)
    scraper = Scraper(metrics_url, interval=parse_duration(spec.scrape_interval).total_seconds(), metric_names=names)
    return ScrapeQuerier(scraper), scraper


def start_scraping(scraper: Any) -> None:
    """One scrape now, then every interval from a thread: a judge that cannot read the server's metrics must
    not start a rollout, so this runs before any weight changes (and after the analysis was checked)."""
    scraper.scrape_once()
    if scraper.scrapes == 0:
        raise InfrastructureError(f"cannot scrape {scraper.url} for the judge: {scraper.last_error}",
                                  hint="check --server (the REST URL of mlserve serve), or give --prometheus-url")
    scraper.start()


__all__ = ["DEFAULT_ADMIN", "DEFAULT_SERVER", "SELECTOR", "check_url", "open_server_store", "scrape_querier",
           "start_scraping"]

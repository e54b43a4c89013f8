"""Entry points for the CLI: build the store, judge and registry link from options, then call the engine.

Each function here is what one ``mlserve rollout`` command calls; they hold no logic of their own
beyond wiring (the outside world is created here, once, and injected into the engine).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlserve.progress import NULL_PROGRESS, Progress
from mlserve.rollout.engine import (
    AbortResult,
    CommandResult,
    Interrupt,
    Judge,
    JudgeWindow,
    PlanResult,
    RolloutConfig,
    RolloutEngine,
    RolloutResult,
    StatusResult,
)


@dataclass
class Target:
    """Where the objects are: ``manifests`` (a directory of YAML files), a cluster, or (``kind`` "local") a
    running ``mlserve serve``: ``server`` its REST URL, ``admin_url``/``admin_token`` its admin endpoint, ``model``
    the served model."""

    kind: str = "kubernetes"
    namespace: str = "default"
    manifests: Path | None = None
    kubeconfig: str | None = None
    context: str | None = None
    server: str | None = None
    registry: Path | None = None
    lock_timeout: float | None = None
    use_registry: bool = True
    admin_url: str | None = None
    admin_token: str | None = None
    model: str | None = None

    @property
    def local(self) -> bool:
        return self.kind == "local"


def open_store(target: Target, *, write: bool = True, need_token: bool = True) -> Any:
    if target.local:
        from mlserve.registry import Registry
        from mlserve.rollout.local.connect import open_server_store

        return open_server_store(target.model or "", server=target.server, admin=target.admin_url,
                                 token=target.admin_token, need_token=need_token,
                                 registry=Registry(root=target.registry, lock_timeout=target.lock_timeout))
    if target.manifests is not None:
        from mlserve.rollout.manifests import ManifestStore

        return ManifestStore(target.manifests, default_namespace=target.namespace, write=write)
    from mlserve.rollout.kube import KubernetesStore

    return KubernetesStore.connect(kubeconfig=target.kubeconfig, context=target.context, server=target.server)


def open_registry(target: Target) -> Any:
    from mlserve.rollout.registry_link import NoRegistry, RegistryLink

    if not target.use_registry:
        return NoRegistry()
    return RegistryLink.open(target.registry, target.lock_timeout)


@dataclass(frozen=True)
class SkippedVerdict:
    """A step the judge does not look at (the engine records it as "skipped")."""

    reason: str
    verdict: str = "skipped"
    score: float | None = None


STABLE_IDLE = "stable serves no traffic at 100%: nothing to compare against"


def load_spec(analysis: Path | None, *, local: bool = False) -> Any:
    """The analysis file, or the default analysis; ``local``: its default checks select the server's variants."""
    from mlserve.rollout.analysis import default_analysis, load_analysis

    selector = None
    if local:
        from mlserve.rollout.local.connect import SELECTOR as selector
    if analysis is not None:
        return load_analysis(analysis, selector=selector)
    return default_analysis(selector=selector) if selector else default_analysis()


def prometheus_judge(analysis: Path | None, prometheus_url: str | None, *, pause: float | None = None,
                     spec: Any = None, sleep: Any = None, querier: Any = None) -> Judge:
    """The Prometheus judge of :mod:`mlserve.rollout.analysis`, as the engine's callable.

    A ``pause`` too short to give every metric its ``min_points`` independent points is refused up
    front: such a rollout could only ever end "inconclusive".

    Comparisons need traffic on both sides: they are off at a 100% step (stable serves nothing)
    and for blue-green (stable's traffic is not comparable with a preview's). Where that leaves no
    metric with a threshold, the step is not judged ("skipped") instead of ending "inconclusive".

    A failing query (Prometheus unreachable or answering 5xx) is retried every ``step``; after more
    than ``consecutive_error_limit`` failures in a row the error stands (exit 12, reverted).

    ``querier``: where the queries go instead of the Prometheus at ``prometheus_url`` (``--target local``
    without Prometheus: the judge's own scraper, :func:`mlserve.rollout.local.connect.scrape_querier`).
    """
    import time

    from mlserve.errors import InfrastructureError, UsageError
    from mlserve.rollout.analysis import AnalysisContext, judge, parse_duration
    from mlserve.rollout.prometheus import PrometheusClient

    spec = spec if spec is not None else load_spec(analysis)
    has_threshold = any(m.threshold is not None for m in spec.metrics)
    needed = spec.min_range().total_seconds()
    if pause is not None and pause < needed:
        raise UsageError(f"--pause {pause:g}s is too short for the analysis: it needs at least {needed:g}s "
                         f"({spec.warmup().total_seconds():g}s warm-up, then one point every "
                         f"{spec.sample_interval().total_seconds():g}s up to min_points)",
                         hint="lengthen --pause, lower min_points in the analysis file, or use --no-analysis")
    client = querier if querier is not None else PrometheusClient(prometheus_url)
    pause_between = parse_duration(spec.step).total_seconds()
    wait = sleep or time.sleep

    def run(window: JudgeWindow) -> Any:
        # at a 100% step stable serves nothing (and blue-green's live colour is not comparable): thresholds only
        compare = window.compare
        if not compare and not has_threshold:
            return SkippedVerdict(STABLE_IDLE if window.strategy == "canary" else
                                  "the analysis has no threshold metric and blue-green cannot compare")
        ctx = AnalysisContext(canary=window.canary, stable=window.stable, namespace=window.namespace,
                              model=window.model, start=window.start, end=window.end, compare=compare, warmup=True)
        failures = 0
        while True:
            try:
                result = judge(spec, ctx, client)
            except InfrastructureError as exc:
                failures += 1
                if failures > spec.consecutive_error_limit:
                    raise InfrastructureError(f"{exc.message} ({failures} failed queries in a row, more than "
                                              f"consecutive_error_limit {spec.consecutive_error_limit})", hint=exc.hint) from None
                wait(pause_between)
                continue
            if failures:
                result.warnings.append(f"{failures} query error(s) before this verdict (consecutive_error_limit "
                                       f"{spec.consecutive_error_limit})")
            return result

    return run


def points_per_step(cfg: RolloutConfig, spec: Any) -> int | None:
    """What the judge will have per metric and side after one pause (for ``plan``)."""
    if spec is None or cfg.pause is None:
        return None
    return spec.points_in(cfg.pause)


def _engine(target: Target, *, judge: Judge | None = None, progress: Progress = NULL_PROGRESS,
            interrupt: Interrupt | None = None, registry: bool = True, write: bool = True,
            retry_budget: float | None = None, need_token: bool = True) -> RolloutEngine:
    store = open_store(target, write=write, need_token=need_token)
    if retry_budget is not None and hasattr(store, "retry_budget"):
        store.retry_budget = retry_budget
    return RolloutEngine(store, judge=judge, registry=open_registry(target) if registry else None,
                         interrupt=interrupt, progress=progress)


def run_rollout(cfg: RolloutConfig, target: Target, *, analysis: Path | None = None, prometheus_url: str | None = None,
                no_analysis: bool = False, progress: Progress = NULL_PROGRESS,
                interrupt: Interrupt | None = None) -> RolloutResult:
    """``mlserve rollout canary`` / ``blue-green``.

    ``cfg.pause`` None: the analysis's ``min_range()`` (0 without analysis). Blue-green is judged
    only with an explicit ``analysis`` (thresholds on the idle colour's preview traffic): before the
    switch the idle colour gets none of the Service's traffic, so the default analysis could only
    ever say "inconclusive". The planned pauses (and ``--keep``) must fit in ``--timeout``.
    """
    from mlserve.errors import UsageError
    from mlserve.rollout.settings import DEFAULT_SLACK, check_budget, planned_wait, validate

    validate(cfg)
    spec = None
    if cfg.strategy == "blue-green" and not no_analysis and analysis is None:
        cfg.analysis_note = ("analysis skipped: before the switch the idle colour gets no traffic to judge "
                             "(pass --analysis with thresholds for its preview traffic); readiness and smoke checks only")
    elif not no_analysis and target.manifests is None and (prometheus_url or target.local):
        spec = load_spec(analysis, local=target.local)
        if cfg.strategy == "blue-green" and not any(m.threshold is not None for m in spec.metrics):
            raise UsageError(f"the analysis {analysis} has no threshold metric: blue-green judges the idle colour "
                             "against thresholds only (stable's traffic is not comparable)",
                             hint="add a threshold to a metric, or use --no-analysis")
    if cfg.pause is None:  # what the analysis needs to judge a step: warm-up plus min_points sample intervals
        cfg.pause = spec.min_range().total_seconds() if spec is not None else 0.0
    if cfg.timeout is None:
        cfg.timeout = planned_wait(cfg) + DEFAULT_SLACK
    check_budget(cfg)
    # transient API errors are retried for up to half the Lease duration: the heartbeat survives them
    engine = _engine(target, progress=progress, interrupt=interrupt, retry_budget=max(1.0, cfg.lease_seconds / 2))
    scraper = None
    try:
        if spec is not None:
            querier = None
            if target.local and not prometheus_url:  # no Prometheus: the judge scrapes the server's /metrics itself
                from mlserve.rollout.local.connect import scrape_querier

                querier, scraper = scrape_querier(spec, engine.store.client.metrics_url())
            engine.executor.judge = prometheus_judge(analysis, prometheus_url, pause=cfg.pause, spec=spec, querier=querier)
            if scraper is not None:
                from mlserve.rollout.local.connect import start_scraping

                start_scraping(scraper)
        return engine.run(cfg)
    finally:
        if scraper is not None:
            scraper.stop()


def plan_rollout(cfg: RolloutConfig, target: Target, *, analysis: Path | None = None, no_analysis: bool = False) -> PlanResult:
    """What a run with the same options would do; says how many points the judge gets per step."""
    from mlserve.rollout.settings import validate

    validate(cfg)
    spec = None
    if not no_analysis and target.manifests is None and (cfg.strategy == "canary" or analysis is not None):
        spec = load_spec(analysis, local=target.local)
    if cfg.pause is None:  # what a run with this analysis would pause
        cfg.pause = spec.min_range().total_seconds() if spec is not None else 0.0
    result = _engine(target, write=False).plan(cfg, points_per_step=points_per_step(cfg, spec))
    if spec is not None and result.points_per_step is not None:
        need = max(m.min_points for m in spec.metrics)
        if result.points_per_step < need:
            result.warnings.append(f"--pause {cfg.pause:g}s gives {result.points_per_step} point(s) per metric and step; "
                                   f"the analysis needs {need}: every step would be inconclusive")
    if target.manifests is not None:
        result.diff = _manifest_diff(result, target)
    return result


def _manifest_diff(plan: PlanResult, target: Target) -> str:
    """Replay the planned object changes on an in-memory copy of the files and diff it (nothing is written)."""
    from mlserve.rollout.manifests import ManifestStore

    files = ManifestStore(target.manifests, default_namespace=target.namespace, write=False)
    for change in plan.changes:
        if change.kind == "Lease":
            continue  # rollout state lives in .mlserve/, not among the manifests
        if change.action == "patch" and change.ops:
            files.patch(change.kind, change.name, target.namespace, change.ops)
        elif change.action == "create" and change.object is not None:
            files.create(change.object)
        elif change.action == "delete" and change.kind:
            files.delete(change.kind, change.name, target.namespace)
    return files.diff()


def rollout_status(name: str, target: Target, *, wait: bool = False, timeout: float = 600.0) -> StatusResult:
    return _engine(target, registry=False, need_token=False).status(name, target.namespace, wait=wait, timeout=timeout)


def abort_rollout(name: str, target: Target, *, reason: str | None = None, dry_run: bool = False,
                  revert_timeout: float = 60.0) -> AbortResult:
    return _engine(target).abort(name, target.namespace, reason=reason, dry_run=dry_run, revert_timeout=revert_timeout)


def promote_rollout(name: str, target: Target, *, full: bool = False) -> CommandResult:
    return _engine(target, registry=False).promote(name, target.namespace, full=full)


def undo_rollout(name: str, target: Target, *, dry_run: bool = False, revert_timeout: float = 60.0) -> AbortResult:
    return _engine(target).undo(name, target.namespace, dry_run=dry_run, revert_timeout=revert_timeout)

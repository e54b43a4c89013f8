"""``mlserve rollout``: canary and blue-green delivery of registry versions on Kubernetes (or manifests), or on a
running ``mlserve serve`` (``--target local``: its admin endpoint's traffic split).

Options shared by several commands are declared once, in groups (:data:`TARGET`, :data:`WORKLOAD`,
...), and added to a command by :func:`with_options` (the pattern of sqlite-utils'
``insert_upsert_options``): the command receives them as one ``opts`` object. Every option value
is checked (:func:`build_config`) before a kubeconfig, cluster, file or network is touched.
"""

from __future__ import annotations

import functools
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, Callable, Optional

import typer

from mlserve import config
from mlserve.cli._options import JsonOpt, LockTimeoutOpt, RegistryOpt

rollout_app = typer.Typer(
    name="rollout",
    help="Progressive delivery on Kubernetes, or on a running `mlserve serve` (--target local): canary and blue-green, "
         "judged by metrics, with automatic rollback. Settings also come from the config file ($MLSERVE_CONFIG).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@dataclass(frozen=True)
class Opt:
    """One shared option: the parameter name, its Typer declaration, its default."""

    name: str
    annotation: Any
    default: Any = None


def _opt(name: str, kind: Any, default: Any, *flags: str, help: str, **kw: Any) -> Opt:  # noqa: A002
    return Opt(name, Annotated[kind, typer.Option(*flags, help=help, **kw)], default)


def _target(write: bool) -> list[Opt]:
    manifests_help = ("Apply the changes to the YAML files in this directory (GitOps) instead of a cluster." if write
                      else "Read the rollout state from this directory of YAML files (its .mlserve/) instead of a cluster.")
    return [
        _opt("namespace", Optional[str], None, "--namespace", "-n", envvar=config.env_var("rollout.namespace"),
             show_envvar=True, help="Kubernetes namespace of the workload (default 'default'; config key rollout.namespace)."),
        _opt("manifests", Optional[Path], None, "--manifests", help=manifests_help),
        _opt("kubeconfig", Optional[str], None, "--kubeconfig", envvar=config.env_var("rollout.kubeconfig"), show_envvar=True,
             help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then the in-cluster service account)."),
        _opt("context", Optional[str], None, "--context", help="kubeconfig context to use."),
        _opt("server", Optional[str], None, "--server", help="Kubernetes API URL, without authentication (tests, kubectl "
             "proxy); with --target local: the mlserve serve REST URL (default http://127.0.0.1:8000)."),
        _opt("target", str, "kubernetes", "--target", help="kubernetes (a cluster or --manifests) or local (a running "
             "mlserve serve, driven through its admin endpoint; the rollout state is kept in the registry)."),
        _opt("admin_url", Optional[str], None, "--admin-url", help="--target local: the server's admin endpoint "
             "(default http://127.0.0.1:8002, as --admin-host/--admin-port of mlserve serve)."),
        _opt("admin_token", Optional[str], None, "--admin-token", envvar="MLSERVE_ADMIN_TOKEN", show_envvar=True,
             help="--target local: the admin token the server was started with (prefer the environment variable: "
                  "a flag shows in ps)."),
    ]


TARGET = _target(write=True)
READ_TARGET = _target(write=False)
OUTPUT = [Opt("as_json", JsonOpt, False)]


def _registry(purpose: str) -> list[Opt]:
    return [Opt("registry", RegistryOpt, None), Opt("lock_timeout", LockTimeoutOpt, None),
            _opt("no_registry", bool, False, "--no-registry", help=purpose)]


ROLLOUT_REGISTRY = _registry("Take --to as a plain version string; do not resolve it or record anything in the registry.")
REVERT_REGISTRY = _registry("Do not touch the registry: no production rollback, no journal entry (for rollouts run with --no-registry).")
STATE_REGISTRY = [Opt("registry", RegistryOpt, None), Opt("lock_timeout", LockTimeoutOpt, None)]  # local: the state's home

WORKLOAD = [
    _opt("workload", Optional[str], None, "--workload", help="Name of the stable Deployment, Service and route at once "
         "(e.g. churn-api); --deployment, --service and --route override it. Default: NAME."),
    _opt("deployment", Optional[str], None, "--deployment", help="Stable Deployment (blue-green: the base of BASE-blue/BASE-green)."),
    _opt("service", Optional[str], None, "--service", help="Stable Service."),
    _opt("image", str, "{repository}:{version}", "--image",
         help="Image template telling the workload its version: {repository} {version} {model} {image}; '' leaves the image alone."),
    _opt("version_env", str, "MLSERVE_MODEL_VERSION", "--version-env",
         help="Environment variable set to the version in the serving container; '' sets none."),
    _opt("version_label", Optional[list[str]], None, "--version-label",
         help="Pod label that carries the version and follows it (repeatable; default app.kubernetes.io/version and "
              "version; '' for none). Labels a selector uses are left alone, with a warning."),
    _opt("container", Optional[str], None, "--container", help="Container to update (default: the first)."),
    _opt("pause", Optional[str], None, "--pause", help="Pause after each step before the judge looks (e.g. 2m, 30s, 0.1s); "
         "default: what the analysis needs (a warm-up of window + scrape interval, then min_points points), 0 with --no-analysis."),
    _opt("timeout", Optional[str], None, "--timeout", help="Deadline of the whole rollout (e.g. 30m); past it, traffic goes "
         "back to stable (exit 13). Default: the planned pauses (and --keep) plus 30m."),
]
ANALYSIS = [
    _opt("analysis", Optional[Path], None, "--analysis", help="Analysis file (PromQL checks); default: request success rate and p99 latency."),
    _opt("no_analysis", bool, False, "--no-analysis", help="Do not query Prometheus; every step passes after its pause."),
    _opt("prometheus_url", Optional[str], None, "--prometheus-url", envvar=config.env_var("rollout.prometheus_url"),
         show_envvar=True, help="Prometheus base URL for the analysis (config key rollout.prometheus_url). With --target "
         "local and none set, the judge scrapes the server's /metrics itself."),
]
RUNNING = [
    _opt("ready_timeout", str, "5m", "--ready-timeout", help="How long a Deployment may take to become ready before the "
         "rollout fails (at once when its controller reports ProgressDeadlineExceeded)."),
    _opt("lease_duration", str, "60s", "--lease-duration", help="Without a heartbeat for this long, the rollout's owner is "
         "presumed dead (abort or --resume become possible); transient API errors are retried for half of it."),
    _opt("poll", str, "1s", "--poll", help="How often to check readiness, commands from other jobs and the heartbeat."),
    _opt("on_interrupt", str, "abort", "--on-interrupt", help="On SIGINT/SIGTERM: 'abort' (traffic back to stable) or "
         "'pause' (leave traffic, resumable)."),
    _opt("on_drift", str, "fail", "--on-drift", help="When the live traffic split is not what the rollout set (someone "
         "edited it): 'fail' (revert, exit 13) or 'pause' (leave it, resumable)."),
    _opt("revert_timeout", str, "5m", "--revert-timeout", help="How long a failed rollout keeps retrying to put traffic back "
         "when the API fails."),
    _opt("gate", Optional[list[str]], None, "--gate", help="Webhook (URL) that must answer 2xx to a JSON POST before each "
         "step; retried every --gate-interval until it does (repeatable)."),
    _opt("gate_interval", str, "10s", "--gate-interval", help="How often a gate that said no is asked again."),
    _opt("notify", Optional[list[str]], None, "--notify", help="URL that gets one JSON POST per state change (phase, "
         "step, weight, outcome); failures are warnings (repeatable)."),
    _opt("dry_run", bool, False, "--dry-run", help="Server-side dry run: the API server validates every change, nothing is stored."),
    _opt("resume", bool, False, "--resume", help="Continue a rollout whose owner died or that was paused, from its recorded step."),
]
CANARY = [
    _opt("router", str, "gateway", "--router", help="Traffic router: gateway (HTTPRoute weights), nginx (canary Ingress) "
         "or istio (VirtualService)."),
    _opt("steps", str, "5,25,50,100", "--steps", help="Traffic percentages to the canary, in order."),
    _opt("route", Optional[str], None, "--route", help="HTTPRoute, stable Ingress or VirtualService holding the split."),
    _opt("canary_replicas", int, 1, "--canary-replicas", min=1, help="Replicas of the canary Deployment at the least "
         "(it grows with its share of stable's)."),
    _opt("canary_header", Optional[str], None, "--canary-header", help="NAME=VALUE: requests with this header reach the "
         "canary first, for one --pause, then whatever the weight (gateway, nginx)."),
    _opt("canary_cookie", Optional[str], None, "--canary-cookie", help="Cookie NAME: requests with NAME=always reach the "
         "canary first (nginx)."),
    _opt("baseline", bool, False, "--baseline", help="Start a fresh copy of stable beside the canary with the same share "
         "of traffic, and judge the canary against it (steps up to 50, then 100)."),
]
BLUE_GREEN = [
    _opt("selector_key", str, "slot", "--selector-key", help="Service selector label naming the colour (values blue/green)."),
    _opt("keep", str, "10m", "--keep", help="Keep the old colour running this long after the switch, so `undo` is instant."),
    _opt("smoke_url", Optional[str], None, "--smoke-url", help="URL that must answer 2xx before the switch (e.g. the idle "
         "colour's preview Service)."),
    _opt("smoke_cmd", Optional[str], None, "--smoke-cmd", help="Command that must exit 0 before the switch; gets "
         "MLSERVE_ROLLOUT_MODEL, _VERSION, _NAMESPACE and _TARGET."),
]

def with_options(*groups: list[Opt]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the options of ``groups`` to a command; it receives them as ``opts`` (one namespace, defaults included)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = inspect.signature(fn, eval_str=True)
        shared = [o for group in groups for o in group]
        params = [p for p in own.parameters.values() if p.name != "opts"]
        params += [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, annotation=o.annotation, default=o.default)
                   for o in shared]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            values = {o.name: kwargs.pop(o.name) for o in shared}
            return fn(**kwargs, opts=SimpleNamespace(**values))

        command.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
        return command

    return decorate


def _declared(name: str) -> Any:
    for group in (WORKLOAD, ANALYSIS, RUNNING, CANARY, BLUE_GREEN):
        for o in group:
            if o.name == name:
                return o.default
    raise KeyError(name)


def _value(opts: Any, name: str) -> Any:
    """The option's value, or its declared default for a command that does not have it (plan has no --poll)."""
    return getattr(opts, name) if hasattr(opts, name) else _declared(name)


def build_config(name: str, to: str, strategy: str, opts: Any) -> Any:
    """The rollout's configuration from the options; a UsageError (exit 2) for any bad value. Touches nothing outside."""
    from mlserve.errors import UsageError
    from mlserve.rollout.durations import parse_duration
    from mlserve.rollout.settings import HeaderRoute, RolloutConfig, validate
    from mlserve.rollout.workload import DEFAULT_VERSION_LABELS, VersionSpec

    def duration(option: str, flag: str, optional: bool = False) -> float | None:
        value = _value(opts, option)
        return None if (value is None and optional) else parse_duration(value, what=flag)

    labels = _value(opts, "version_label")
    version_labels = DEFAULT_VERSION_LABELS if labels is None else tuple(label for label in labels if label)
    header = _value(opts, "canary_header")
    cookie = _value(opts, "canary_cookie")
    if header is not None and cookie is not None:
        raise UsageError("give --canary-header or --canary-cookie, not both")
    route = None
    if header is not None:
        key, sep, val = header.partition("=")
        if not sep:
            raise UsageError(f"--canary-header needs NAME=VALUE, got {header!r}")
        route = HeaderRoute(header=key.strip(), value=val)
    elif cookie is not None:
        route = HeaderRoute(cookie=cookie.strip())
    local = check_target(opts)
    cfg = RolloutConfig(
        name=name, to=to, strategy=strategy, target="local" if local else "kubernetes",
        namespace=LOCAL_NAMESPACE if local else config.resolve("rollout.namespace", _value(opts, "namespace")),  # type: ignore[arg-type]
        router=_value(opts, "router"), steps=_value(opts, "steps") if strategy == "canary" else [100],
        pause=duration("pause", "--pause", optional=True), timeout=duration("timeout", "--timeout", optional=True),
        workload=_value(opts, "workload"), deployment=_value(opts, "deployment"), service=_value(opts, "service"),
        route=_value(opts, "route"), canary_replicas=_value(opts, "canary_replicas"),
        version=VersionSpec(image_template=_value(opts, "image"), env_name=_value(opts, "version_env"),
                            container=_value(opts, "container"), labels=version_labels),
        ready_timeout=duration("ready_timeout", "--ready-timeout"),  # type: ignore[arg-type]
        poll=max(0.01, duration("poll", "--poll")),  # type: ignore[type-var]
        lease_seconds=max(1.0, duration("lease_duration", "--lease-duration")),  # type: ignore[type-var]
        on_interrupt=_value(opts, "on_interrupt"), on_drift=_value(opts, "on_drift"),
        revert_timeout=duration("revert_timeout", "--revert-timeout"),  # type: ignore[arg-type]
        dry_run=_value(opts, "dry_run"), resume=_value(opts, "resume"), gates=list(_value(opts, "gate") or []),
        gate_interval=duration("gate_interval", "--gate-interval"),  # type: ignore[arg-type]
        notify=list(_value(opts, "notify") or []), header_route=route, baseline=_value(opts, "baseline"),
        selector_key=_value(opts, "selector_key"),
        keep=duration("keep", "--keep") if strategy == "blue-green" and not local else 0.0,  # type: ignore[arg-type]
        smoke_url=_value(opts, "smoke_url"), smoke_cmd=_value(opts, "smoke_cmd"),
    )
    validate(cfg)
    if _value(opts, "analysis") is not None and _value(opts, "no_analysis"):
        raise UsageError("give --analysis or --no-analysis, not both")
    url = _value(opts, "prometheus_url")
    if url is not None and not url.startswith(("http://", "https://")):
        raise UsageError(f"--prometheus-url must start with http:// or https://, got {url!r}")
    return cfg


LOCAL_NAMESPACE = "local"  # what the rollout state and messages name as the "namespace" of --target local
KUBERNETES_ONLY = [("manifests", "--manifests"), ("kubeconfig", "--kubeconfig"), ("context", "--context"),
                   ("workload", "--workload"), ("deployment", "--deployment"), ("service", "--service"),
                   ("route", "--route"), ("container", "--container"), ("version_label", "--version-label")]


def check_target(opts: Any) -> bool:
    """Whether the target is local; a UsageError for an unknown target or options that belong to the other one."""
    from mlserve.errors import UsageError

    target = getattr(opts, "target", "kubernetes")
    if target not in ("kubernetes", "local"):
        raise UsageError(f"--target must be kubernetes or local, not {target!r}")
    if target == "kubernetes":
        if getattr(opts, "admin_url", None) is not None:
            raise UsageError("--admin-url needs --target local")
        return False
    given = [flag for name, flag in KUBERNETES_ONLY if getattr(opts, name, None) not in (None, [])]
    if getattr(opts, "no_registry", False):
        given.append("--no-registry")
    if given:
        raise UsageError(f"{', '.join(given)} cannot be used with --target local: it drives the split of the model "
                         "NAME on one mlserve serve, and keeps the rollout state in the registry")
    from mlserve.rollout.local.connect import check_url

    for name, flag in (("server", "--server"), ("admin_url", "--admin-url")):
        if getattr(opts, name, None) is not None:
            check_url(getattr(opts, name), flag)
    return True


def _target_of(opts: Any, name: str | None = None) -> Any:
    from mlserve.rollout.api import Target

    local = check_target(opts)
    return Target(kind="local" if local else "kubernetes",
                  namespace=LOCAL_NAMESPACE if local else config.resolve("rollout.namespace", opts.namespace),
                  manifests=opts.manifests, kubeconfig=config.resolve("rollout.kubeconfig", opts.kubeconfig),
                  context=opts.context, server=opts.server, registry=getattr(opts, "registry", None),
                  lock_timeout=getattr(opts, "lock_timeout", None), use_registry=not getattr(opts, "no_registry", False),
                  admin_url=getattr(opts, "admin_url", None), admin_token=getattr(opts, "admin_token", None), model=name)


def _finish(kind: str, result: Any, as_json: bool, render: Any) -> None:
    from mlserve.cli._output import emit

    emit(kind, result, as_json, render)
    code = getattr(result, "exit_code", 0)
    if code:
        print(f"error: {result.message}", file=sys.stderr)
        raise typer.Exit(code)


# ------------------------------------------------------------------------------------------ rendering


def _render_rollout(console: Any, r: Any) -> None:
    from mlserve.cli._output import print_table

    console.print(f"{r.strategy} rollout of {r.model} {r.previous_version or '?'} -> {r.version} in {r.namespace} ({r.router})")
    if r.steps:
        print_table(console, ["step", "weight", "verdict", "score", "reason"],
                    [[s.index + 1, f"{s.weight}%", s.verdict or "", "" if s.score is None else f"{s.score:g}", s.reason]
                     for s in r.steps], right={"step", "weight", "score"})
    for change in r.changes:
        console.print(f"  dry-run {change.action} {change.kind}/{change.name}: {change.stage}")
    console.print(f"outcome: {r.outcome}" + (" (reverted to the snapshot)" if r.reverted else ""))
    console.print(f"message: {r.message}")


def _render_plan(console: Any, p: Any) -> None:
    import json

    console.print(f"plan: {p.strategy} rollout of {p.model} {p.previous_version or '?'} -> {p.version} in {p.namespace} ({p.router})")
    if p.points_per_step is not None:
        console.print(f"the judge gets {p.points_per_step} independent point(s) per metric and side after each pause")
    for c in p.changes:
        target = f" {c.kind}/{c.name}" if c.kind else ""
        console.print(f"- {c.stage}: {c.action}{target}" + (f" ({c.note})" if c.note else ""))
        for op in c.ops or []:
            console.print("    " + json.dumps(op, sort_keys=True, ensure_ascii=False))
    console.print("snapshot (restored by abort):")
    for s in p.snapshot:
        what = "created by the rollout (deleted on abort)" if s.created else ", ".join(f.path for f in s.fields)
        console.print(f"  {s.kind}/{s.name}: {what}")
    if p.diff:
        console.print("diff of the manifest files after the whole rollout (nothing was written):")
        console.file.write(p.diff)


def _render_status(console: Any, s: Any) -> None:
    from mlserve.cli._output import print_table

    step = f"step {s.step}/{len(s.steps)}" if s.step else "not started"
    live = "" if s.live_weight is None else f" (live: {s.live_weight}%)"
    console.print(f"{s.model}: {s.strategy} to {s.version} in {s.namespace}: {s.phase}, {step}, weight {s.weight}%{live}")
    console.print(f"owner: {s.owner or '-'}{' (stale: no heartbeat)' if s.stale else ''}; started {s.started_at:%Y-%m-%d %H:%M:%S}Z, "
                  f"deadline {s.deadline:%Y-%m-%d %H:%M:%S}Z")
    if s.objects:
        print_table(console, ["object", "role", "state"], [[f"{o.kind}/{o.name}", o.role, o.detail] for o in s.objects])
    if s.record:
        print_table(console, ["step", "weight", "verdict", "score"],
                    [[r.index + 1, f"{r.weight}%", r.verdict or "", "" if r.score is None else f"{r.score:g}"] for r in s.record],
                    right={"step", "weight", "score"})
    if s.message:
        console.print(f"message: {s.message}")


def _render_abort(console: Any, a: Any) -> None:
    if a.already_reverted:
        console.print(f"{a.model}: nothing to change, already at the snapshot ({a.phase})")
    for c in a.changes:
        console.print(f"  {c.action} {c.kind}/{c.name}")
    console.print(f"{a.model}: {a.phase_before} -> {a.phase}")


# ------------------------------------------------------------------------------------------ commands

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="Model name in the registry; also the default name of its "
                                                             "Deployment, Service and route (see --workload).")]
ToOpt = Annotated[str, typer.Option("--to", metavar="VERSION", help="Version to roll out: 3, NAME:3 or NAME@staging (a registry reference).")]


@with_options(CANARY, WORKLOAD, ANALYSIS, RUNNING, TARGET, ROLLOUT_REGISTRY, OUTPUT)
def canary(name: NameArg, to: ToOpt, opts: Any = None) -> None:
    """Canary: move traffic step by step to the version given by --to, judge each step, promote or roll back.

    Example:

    \b
      mlserve rollout canary churn --to 3 -n ml --steps 5,25,50,100
      mlserve rollout canary churn --to churn@staging --workload churn-api --router nginx --canary-header 'X-Canary=always'
      MLSERVE_ADMIN_TOKEN=... mlserve rollout canary churn --to 3 --target local --server http://127.0.0.1:8000

    With --target local the canary is a variant of the model's split on a running mlserve serve (its
    admin endpoint, --admin-url), judged on the server's variant="canary" and variant="stable" metrics.

    Exit codes: 0 promoted, 10 rolled back, 11 inconclusive, 12 infrastructure, 13 aborted.
    Environment: the Lease records the owner as user@host:pid plus $GITHUB_RUN_ID, $CI_JOB_ID or $BUILD_ID;
    $MLSERVE_NO_PROGRESS=1 turns progress off; $KUBECONFIG names the kubeconfig.
    """
    _run_strategy("canary", name, to, opts)


@with_options(BLUE_GREEN, WORKLOAD, ANALYSIS, RUNNING, TARGET, ROLLOUT_REGISTRY, OUTPUT)
def blue_green(name: NameArg, to: ToOpt, opts: Any = None) -> None:
    """Blue-green: the idle colour gets the version given by --to, is checked, then the Service switches to it.

    Example:

    \b
      mlserve rollout blue-green churn --to 3 -n ml --smoke-url http://churn-green.ml/health --keep 10m
      mlserve rollout blue-green churn --to 3 --target local --server http://127.0.0.1:8000

    With --target local the new version is loaded beside stable with no traffic, checked with one
    inference pinned to it (then --smoke-url/--smoke-cmd), and takes all traffic at once.

    Exit codes: 0 promoted, 10 rolled back, 11 inconclusive, 12 infrastructure, 13 aborted.
    Environment: the Lease records the owner as user@host:pid plus $GITHUB_RUN_ID, $CI_JOB_ID or $BUILD_ID;
    $MLSERVE_NO_PROGRESS=1 turns progress off; $KUBECONFIG names the kubeconfig.
    """
    _run_strategy("blue-green", name, to, opts)


def _run_strategy(strategy: str, name: str, to: str, opts: Any) -> None:
    cfg = build_config(name, to, strategy, opts)  # every option checked before anything outside is touched
    from mlserve.cli._output import progress_for
    from mlserve.rollout.api import run_rollout
    from mlserve.rollout.interrupts import catch_signals

    target = _target_of(opts, name)
    prometheus_url, source = config.resolve_with_source("rollout.prometheus_url", opts.prometheus_url)
    if target.local and source == "default":
        prometheus_url = None  # the judge scrapes the server's /metrics itself
    with catch_signals() as interrupt:
        result = run_rollout(cfg, target, analysis=opts.analysis, prometheus_url=prometheus_url,
                             no_analysis=opts.no_analysis, progress=progress_for(opts.as_json), interrupt=interrupt)
    _finish("rollout", result, opts.as_json, _render_rollout)


PLAN_STRATEGY = [_opt("strategy", str, "canary", "--strategy", help="canary or blue-green.")]


@with_options(PLAN_STRATEGY, CANARY, BLUE_GREEN[:2], WORKLOAD, ANALYSIS, TARGET, ROLLOUT_REGISTRY, OUTPUT)
def plan(name: NameArg, to: ToOpt, opts: Any = None) -> None:
    """Show the exact patches a rollout would apply, step by step, and how many points the judge gets; nothing is changed.

    Example:

    \b
      mlserve rollout plan churn --to 3 -n ml --steps 10,50,100
      mlserve rollout plan churn --to 3 --manifests deploy/ --json
      mlserve rollout plan churn --to 3 --target local --steps 20,100
    """
    from mlserve.errors import UsageError

    if opts.strategy not in ("canary", "blue-green"):
        raise UsageError(f"--strategy must be canary or blue-green, not {opts.strategy!r}")
    cfg = build_config(name, to, opts.strategy, opts)
    from mlserve.cli._output import emit
    from mlserve.rollout.api import plan_rollout

    emit("rollout-plan", plan_rollout(cfg, _target_of(opts, name), analysis=opts.analysis, no_analysis=opts.no_analysis),
         opts.as_json, _render_plan)


STATUS = [
    _opt("wait", bool, False, "--wait", help="Wait until the rollout ends; exit with its outcome's code."),
    _opt("timeout", str, "30m", "--timeout", help="With --wait: give up after this long (exit 11, outcome unknown yet)."),
]


@with_options(STATUS, READ_TARGET, STATE_REGISTRY, OUTPUT)
def status(name: NameArg, opts: Any = None) -> None:
    """Show the recorded state of NAME's rollout (phase, step, owner, deadline, verdicts, live objects). Read-only.

    Example:

    \b
      mlserve rollout status churn -n ml
      mlserve rollout status churn -n ml --wait --timeout 45m
      mlserve rollout status churn --target local --server http://127.0.0.1:8000
    """
    from mlserve.rollout.durations import parse_duration

    timeout = parse_duration(opts.timeout, what="--timeout")
    from mlserve.rollout.api import rollout_status

    result = rollout_status(name, _target_of(opts, name), wait=opts.wait, timeout=timeout)
    if not opts.wait:
        result.exit_code = 0
    _finish("rollout-status", result, opts.as_json, _render_status)


REVERT = [
    _opt("dry_run", bool, False, "--dry-run", help="Server-side dry run: the API server validates every change, nothing is stored."),
    _opt("revert_timeout", str, "1m", "--revert-timeout", help="How long to keep retrying when the API fails."),
]


@with_options([_opt("reason", Optional[str], None, "--reason", help="Why (recorded in the Lease and the registry journal).")],
              REVERT, TARGET, REVERT_REGISTRY, OUTPUT)
def abort(name: NameArg, opts: Any = None) -> None:
    """Put traffic back on stable and restore every field the rollout changed, then release the lock. Safe to repeat.

    Works on a running rollout (its owner stops), a paused or stranded one, and a failed one whose Lease was left behind.

    Example:

    \b
      mlserve rollout abort churn -n ml --reason 'p99 alerts in the dashboards'
      mlserve rollout abort churn --target local --admin-url http://127.0.0.1:8002
    """
    from mlserve.rollout.durations import parse_duration

    budget = parse_duration(opts.revert_timeout, what="--revert-timeout")
    from mlserve.cli._output import emit
    from mlserve.rollout.api import abort_rollout
    from mlserve.rollout.interrupts import catch_signals

    with catch_signals():  # a Ctrl-C must not leave the revert half-done
        result = abort_rollout(name, _target_of(opts, name), reason=opts.reason, dry_run=opts.dry_run, revert_timeout=budget)
    emit("rollout-abort", result, opts.as_json, _render_abort)


@with_options([_opt("full", bool, False, "--full", help="Skip every remaining pause, not only the current one.")],
              TARGET, STATE_REGISTRY, OUTPUT)
def promote(name: NameArg, opts: Any = None) -> None:
    """Tell the running rollout of NAME to skip its current pause (--full: all pauses).

    Example:

    \b
      mlserve rollout promote churn -n ml --full
      mlserve rollout promote churn --target local
    """
    from mlserve.cli._output import emit
    from mlserve.rollout.api import promote_rollout

    emit("rollout-promote", promote_rollout(name, _target_of(opts, name), full=opts.full), opts.as_json,
         lambda console, r: console.print(r.message))


@with_options(REVERT, TARGET, REVERT_REGISTRY, OUTPUT)
def undo(name: NameArg, opts: Any = None) -> None:
    """Revert NAME's last finished rollout to the previous version (blue-green: switch back).

    Example:

    \b
      mlserve rollout undo churn -n ml
      mlserve rollout undo churn --target local
    """
    from mlserve.rollout.durations import parse_duration

    budget = parse_duration(opts.revert_timeout, what="--revert-timeout")
    from mlserve.cli._output import emit
    from mlserve.rollout.api import undo_rollout
    from mlserve.rollout.interrupts import catch_signals

    with catch_signals():  # a Ctrl-C must not leave the revert half-done
        result = undo_rollout(name, _target_of(opts, name), dry_run=opts.dry_run, revert_timeout=budget)
    emit("rollout-undo", result, opts.as_json, _render_abort)


@with_options([TARGET[0]], OUTPUT)
def rbac(
    router: Annotated[Optional[list[str]], typer.Option("--router", help="Routers to allow (repeatable): gateway, nginx, istio, blue-green; default all.")] = None,
    service_account: Annotated[Optional[str], typer.Option("--service-account", help="Also print a RoleBinding for this ServiceAccount.")] = None,
    opts: Any = None,
) -> None:
    """Print the minimal Role (YAML) the rollout commands need in one namespace.

    Example:

    \b
      mlserve rollout rbac -n ml --router gateway --service-account ci | kubectl apply -f -
    """
    from mlserve.cli._output import emit
    from mlserve.rollout.rbac import minimal_role

    result = minimal_role(config.resolve("rollout.namespace", opts.namespace), routers=router, service_account=service_account)
    emit("rollout-rbac", result, opts.as_json, lambda console, r: console.print(r.yaml, end="", markup=False))


def install(app: typer.Typer) -> None:
    """Add ``mlserve rollout ...`` to the root app."""
    rollout_app.command("canary")(canary)
    rollout_app.command("blue-green")(blue_green)
    rollout_app.command("plan")(plan)
    rollout_app.command("status")(status)
    rollout_app.command("abort")(abort)
    rollout_app.command("promote")(promote)
    rollout_app.command("undo")(undo)
    rollout_app.command("rbac")(rbac)
    app.add_typer(rollout_app, name="rollout")

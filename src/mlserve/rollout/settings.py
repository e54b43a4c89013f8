"""What a rollout is asked to do (:class:`RolloutConfig`), and the checks that need nothing but the values.

:func:`validate` is called by the CLI before any kubeconfig, cluster, file or network is touched,
so a typo in an option value is a usage error (exit 2) and never "no Kubernetes configuration
found". The engine calls it again for library callers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from mlserve.errors import UsageError
from mlserve.rollout.workload import VersionSpec, sibling_name

ROUTERS = ("gateway", "nginx", "istio")
STRATEGIES = ("canary", "blue-green")
ON_INTERRUPT = ("abort", "pause")
ON_DRIFT = ("fail", "pause")
TARGETS = ("kubernetes", "local")
DEFAULT_SLACK = 1800.0  # default --timeout: the planned pauses (+ keep) plus this, for readiness and the judge
DEFAULT_REVERT_TIMEOUT = 300.0  # how long a failed rollout keeps trying to put traffic back (--revert-timeout)
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_COOKIE_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


@dataclass(frozen=True)
class HeaderRoute:
    """Requests that carry this header value (or this cookie set to ``always``) reach the canary first."""

    header: str | None = None
    value: str | None = None
    cookie: str | None = None

    def describe(self) -> str:
        if self.cookie:
            return f"requests with cookie {self.cookie}=always"
        return f"requests with header {self.header}: {self.value}"


@dataclass
class RolloutConfig:
    name: str  # the model's registry name; the default name of Deployment, Service and route
    to: str
    strategy: Literal["canary", "blue-green"] = "canary"
    namespace: str = "default"
    router: str = "gateway"
    steps: list[int] = field(default_factory=lambda: [5, 25, 50, 100])
    pause: float | None = 120.0  # None: decided by the caller (the CLI: what the analysis needs to judge a step)
    timeout: float | None = 1800.0  # None: decided by the caller (the CLI: planned waits + DEFAULT_SLACK)
    workload: str | None = None  # names Deployment, Service and route at once (each flag below overrides it)
    deployment: str | None = None
    service: str | None = None
    route: str | None = None
    canary_suffix: str = "-canary"
    canary_replicas: int = 1
    version: VersionSpec = field(default_factory=VersionSpec)
    ready_timeout: float = 300.0
    route_check_timeout: float = 30.0  # how long the router's controller may take to report on a change
    poll: float = 1.0
    lease_seconds: float = 60.0
    on_interrupt: Literal["abort", "pause"] = "abort"
    on_drift: Literal["fail", "pause"] = "fail"
    revert_timeout: float = DEFAULT_REVERT_TIMEOUT
    dry_run: bool = False
    resume: bool = False
    owner: str | None = None
    gates: list[str] = field(default_factory=list)  # URLs that must answer 2xx before each step
    gate_interval: float = 10.0
    notify: list[str] = field(default_factory=list)  # URLs that get one JSON POST per state change
    header_route: HeaderRoute | None = None
    baseline: bool = False  # a fresh copy of stable beside the canary, with the same traffic, for the judge
    target: Literal["kubernetes", "local"] = "kubernetes"  # local: a running mlserve serve (docs/rollout.md)
    # blue-green
    selector_key: str = "slot"
    colours: tuple[str, str] = ("blue", "green")
    keep: float = 0.0
    smoke_url: str | None = None
    smoke_cmd: str | None = None
    smoke_timeout: float = 60.0
    analysis_note: str = ""  # why steps are not judged when there is no judge (recorded as their reason)

    @property
    def stable_deployment(self) -> str:
        return self.deployment or self.workload or self.name

    @property
    def stable_service(self) -> str:
        return self.service or self.workload or self.name

    @property
    def canary_deployment(self) -> str:
        return sibling_name(self.stable_deployment, self.canary_suffix, 253)

    @property
    def canary_service(self) -> str:
        return sibling_name(self.stable_service, self.canary_suffix, 63)

    @property
    def baseline_deployment(self) -> str:
        return sibling_name(self.stable_deployment, "-baseline", 253)

    @property
    def baseline_service(self) -> str:
        return sibling_name(self.stable_service, "-baseline", 63)

    @property
    def route_name(self) -> str:
        return self.route or self.workload or self.name


def _choice(value: str, allowed: tuple[str, ...], option: str) -> None:
    if value not in allowed:
        raise UsageError(f"{option} must be {', '.join(allowed[:-1])} or {allowed[-1]}, not {value!r}")


def validate(cfg: RolloutConfig) -> None:
    """Refuse values that cannot work, before anything outside this process is touched."""
    from mlserve.rollout.durations import parse_steps

    _choice(cfg.strategy, STRATEGIES, "--strategy")
    _choice(cfg.on_interrupt, ON_INTERRUPT, "--on-interrupt")
    _choice(cfg.on_drift, ON_DRIFT, "--on-drift")
    if cfg.strategy == "canary":
        _choice(cfg.router, ROUTERS, "--router")
        cfg.steps = parse_steps(cfg.steps)
    if cfg.canary_replicas < 1:
        raise UsageError("--canary-replicas must be at least 1")
    for option, value in (("--pause", cfg.pause), ("--timeout", cfg.timeout), ("--ready-timeout", cfg.ready_timeout),
                          ("--lease-duration", cfg.lease_seconds), ("--poll", cfg.poll), ("--keep", cfg.keep),
                          ("--revert-timeout", cfg.revert_timeout), ("--gate-interval", cfg.gate_interval)):
        if value is not None and value < 0:
            raise UsageError(f"{option} cannot be negative")
    if not cfg.canary_suffix or not re.fullmatch(r"-?[a-z0-9]([-a-z0-9]*[a-z0-9])?", cfg.canary_suffix):
        raise UsageError(f"--canary-suffix {cfg.canary_suffix!r} must be lowercase letters, digits and '-'")
    if not _LABEL_KEY.match(cfg.selector_key) or len(cfg.selector_key.rpartition("/")[2]) > 63:
        raise UsageError(f"--selector-key {cfg.selector_key!r} is not a valid label key")
    for option, urls in (("--gate", cfg.gates), ("--notify", cfg.notify), ("--smoke-url", [cfg.smoke_url] if cfg.smoke_url else [])):
        for url in urls:
            if not re.match(r"^https?://[^/\s]+", url):
                raise UsageError(f"{option} {url!r} must be an http:// or https:// URL")
    route = cfg.header_route
    if route is not None:
        if cfg.strategy != "canary":
            raise UsageError("--canary-header and --canary-cookie are for canary rollouts")
        if cfg.router == "istio":
            raise UsageError("--canary-header and --canary-cookie are not supported with --router istio",
                             hint="use --router gateway or nginx, or route by header in the VirtualService yourself")
        if route.cookie is not None and cfg.router == "gateway":
            raise UsageError("--canary-cookie needs --router nginx (Gateway API has no cookie match); use --canary-header")
        if route.header is not None and (not _HEADER_NAME.match(route.header) or not route.value):
            raise UsageError(f"--canary-header needs NAME=VALUE with a valid header name, got {route.header!r}")
        if route.cookie is not None and not _COOKIE_NAME.match(route.cookie):
            raise UsageError(f"--canary-cookie {route.cookie!r} is not a valid cookie name")
    if cfg.baseline:
        if cfg.strategy != "canary":
            raise UsageError("--baseline is for canary rollouts")
        if cfg.router == "nginx":
            raise UsageError("--baseline needs --router gateway or istio: ingress-nginx has only one canary per Ingress")
        bad = [w for w in cfg.steps if w > 50 and w != 100]
        if bad:
            raise UsageError(f"with --baseline a step gives the same share to the canary and the baseline, so steps "
                             f"above 50 (other than a last 100) cannot be compared: {', '.join(map(str, bad))}",
                             hint="use steps such as 5,25,50,100")
    _choice(cfg.target, TARGETS, "--target")
    if cfg.target == "local":
        unsupported = [flag for flag, on in (("--baseline", cfg.baseline), ("--canary-header/--canary-cookie", cfg.header_route),
                                             ("--router", cfg.router != "gateway"), ("--dry-run", cfg.dry_run))
                       if on]
        if unsupported:
            raise UsageError(f"{', '.join(unsupported)} cannot be used with --target local: the server splits by weight "
                             "between its stable and canary variants, and its admin endpoint has no dry run",
                             hint="`mlserve rollout plan ... --target local` shows the exact admin requests, changing nothing")
    if cfg.strategy == "blue-green" and cfg.colours[0] == cfg.colours[1]:
        raise UsageError("the two colours of a blue-green rollout must differ")


def planned_wait(cfg: RolloutConfig) -> float:
    """Seconds the rollout will spend in pauses (and, blue-green, keeping the old colour) at the least."""
    pause = cfg.pause or 0.0
    if cfg.strategy == "canary":
        return (len(cfg.steps) + (1 if cfg.header_route else 0)) * pause
    return pause + cfg.keep


def check_budget(cfg: RolloutConfig) -> None:
    """Refuse up front a rollout whose pauses (+ --keep) cannot fit in --timeout: it could only be aborted."""
    needed = planned_wait(cfg)
    if cfg.timeout is None or needed < cfg.timeout or cfg.dry_run:
        return
    pause = cfg.pause or 0.0
    if cfg.strategy == "canary":
        count = len(cfg.steps) + (1 if cfg.header_route else 0)
        what = f"{count} steps x --pause {pause:g}s = {needed:g}s"
    else:
        what = f"--pause {pause:g}s + --keep {cfg.keep:g}s = {needed:g}s"
    raise UsageError(f"--timeout {cfg.timeout:g}s is too short for the planned waits: {what}, before any readiness wait",
                     hint="raise --timeout, or shorten --pause, --steps or --keep")

"""``mlserve rollout``: canary and blue-green delivery of registry versions on Kubernetes (or manifests)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from mlserve import config
from mlserve.cli._options import JsonOpt, LockTimeoutOpt, RegistryOpt

rollout_app = typer.Typer(
    name="rollout",
    help="Progressive delivery on Kubernetes: canary and blue-green, judged by metrics, with automatic rollback.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

NameArg = Annotated[str, typer.Argument(help="Model name in the registry; also the default name of its Deployment, Service and route.")]
ToOpt = Annotated[str, typer.Option("--to", help="Version to roll out: 3, NAME:3 or NAME@staging (a registry reference).")]
NamespaceOpt = Annotated[Optional[str], typer.Option(
    "--namespace", "-n", envvar=config.env_var("rollout.namespace"), show_envvar=True,
    help="Kubernetes namespace of the workload (default 'default'; config key rollout.namespace).")]
KubeconfigOpt = Annotated[Optional[str], typer.Option(
    "--kubeconfig", envvar=config.env_var("rollout.kubeconfig"), show_envvar=True,
    help="kubeconfig file (default: KUBECONFIG, ~/.kube/config, then the in-cluster service account).")]
ContextOpt = Annotated[Optional[str], typer.Option("--context", help="kubeconfig context to use.")]
ServerOpt = Annotated[Optional[str], typer.Option("--server", help="Kubernetes API URL, without authentication (tests, kubectl proxy).")]
ManifestsOpt = Annotated[Optional[Path], typer.Option(
    "--manifests", help="Apply the changes to the YAML files in this directory (GitOps) instead of a cluster.")]
NoRegistryOpt = Annotated[bool, typer.Option(
    "--no-registry", help="Take --to as a plain version string; do not resolve it or record anything in the registry.")]
TimeoutOpt = Annotated[Optional[str], typer.Option(
    "--timeout", help="Deadline of the whole rollout (e.g. 30m); past it, traffic goes back to stable (exit 13). "
                      "Default: the planned pauses (and --keep) plus 30m.")]
PauseOpt = Annotated[Optional[str], typer.Option(
    "--pause", help="Pause after each step before the judge looks (e.g. 2m, 30s, 0.1s); default: the shortest range "
                    "the analysis can judge (its min_range), 0 with --no-analysis.")]
AnalysisOpt = Annotated[Optional[Path], typer.Option(
    "--analysis", help="Analysis file (PromQL checks); default: request success rate and p99 latency.")]
NoAnalysisOpt = Annotated[bool, typer.Option("--no-analysis", help="Do not query Prometheus; every step passes after its pause.")]
PrometheusOpt = Annotated[Optional[str], typer.Option(
    "--prometheus-url", envvar=config.env_var("rollout.prometheus_url"), show_envvar=True,
    help="Prometheus base URL for the analysis (config key rollout.prometheus_url).")]
DeploymentOpt = Annotated[Optional[str], typer.Option("--deployment", help="Stable Deployment (blue-green: the base of NAME-blue/NAME-green); default NAME.")]
ServiceOpt = Annotated[Optional[str], typer.Option("--service", help="Stable Service; default NAME.")]
ImageOpt = Annotated[str, typer.Option(
    "--image", help="Image template telling the workload its version: {repository} {version} {model} {image}; '' leaves the image alone.")]
VersionEnvOpt = Annotated[str, typer.Option(
    "--version-env", help="Environment variable set to the version in the serving container; '' sets none.")]
ContainerOpt = Annotated[Optional[str], typer.Option("--container", help="Container to update (default: the first).")]
ReadyTimeoutOpt = Annotated[str, typer.Option("--ready-timeout", help="How long a Deployment may take to become ready before the rollout fails.")]
LeaseOpt = Annotated[str, typer.Option(
    "--lease-duration", help="Without a heartbeat for this long, the rollout's owner is presumed dead (abort or --resume become possible).")]
InterruptOpt = Annotated[str, typer.Option(
    "--on-interrupt", help="On SIGINT/SIGTERM: 'abort' (traffic back to stable) or 'pause' (leave traffic, resumable).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Server-side dry run: the API server validates every change, nothing is stored.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue a rollout whose owner died or that was paused, from its recorded step.")]
PollOpt = Annotated[str, typer.Option("--poll", help="How often to check readiness, commands from other jobs and the heartbeat.")]


def _target(namespace: str | None, kubeconfig: str | None, context: str | None, server: str | None,
            manifests: Path | None, registry: Path | None = None, lock_timeout: float | None = None,
            no_registry: bool = False) -> Any:
    from mlserve.rollout.api import Target

    return Target(namespace=config.resolve("rollout.namespace", namespace), manifests=manifests,
                  kubeconfig=config.resolve("rollout.kubeconfig", kubeconfig), context=context, server=server,
                  registry=registry, lock_timeout=lock_timeout, use_registry=not no_registry)


def _finish(kind: str, result: Any, as_json: bool, render: Any) -> None:
    from mlserve.cli._output import emit

    emit(kind, result, as_json, render)
    code = getattr(result, "exit_code", 0)
    if code:
        print(f"error: {result.message}", file=sys.stderr)
        raise typer.Exit(code)


# ------------------------------------------------------------------------------------------ rendering


def _render_rollout(console: Any, r: Any) -> None:
    from rich.table import Table

    console.print(f"{r.strategy} rollout of {r.model} {r.previous_version or '?'} -> {r.version} in {r.namespace} ({r.router})")
    if r.steps:
        table = Table("step", "weight", "verdict", "score", "reason")
        for s in r.steps:
            table.add_row(str(s.index + 1), f"{s.weight}%", s.verdict or "", "" if s.score is None else f"{s.score:g}", s.reason)
        console.print(table)
    for change in r.changes:
        console.print(f"  dry-run {change.action} {change.kind}/{change.name}: {change.stage}")
    console.print(f"outcome: {r.outcome}" + (" (reverted to the snapshot)" if r.reverted else ""))
    console.print(f"message: {r.message}")


def _render_plan(console: Any, p: Any) -> None:
    import json

    console.print(f"plan: {p.strategy} rollout of {p.model} {p.previous_version or '?'} -> {p.version} in {p.namespace} ({p.router})")
    for c in p.changes:
        target = f" {c.kind}/{c.name}" if c.kind else ""
        console.print(f"- {c.stage}: {c.action}{target}" + (f" ({c.note})" if c.note else ""))
        if c.ops:
            for op in c.ops:
                console.print("    " + json.dumps(op, sort_keys=True))
    console.print("snapshot (restored by abort):")
    for s in p.snapshot:
        what = "created by the rollout (deleted on abort)" if s.created else ", ".join(f.path for f in s.fields)
        console.print(f"  {s.kind}/{s.name}: {what}")
    if p.diff:
        console.print("diff of the manifest files after the whole rollout (nothing was written):")
        console.file.write(p.diff)


def _render_status(console: Any, s: Any) -> None:
    step = f"step {s.step}/{len(s.steps)}" if s.step else "not started"
    live = "" if s.live_weight is None else f" (live: {s.live_weight}%)"
    console.print(f"{s.model}: {s.strategy} to {s.version} in {s.namespace}: {s.phase}, {step}, weight {s.weight}%{live}")
    console.print(f"owner: {s.owner or '-'}{' (stale: no heartbeat)' if s.stale else ''}; started {s.started_at:%Y-%m-%d %H:%M:%S}Z, "
                  f"deadline {s.deadline:%Y-%m-%d %H:%M:%S}Z")
    for r in s.record:
        console.print(f"  step {r.index + 1} at {r.weight}%: {r.verdict}" + (f" (score {r.score:g})" if r.score is not None else ""))
    if s.message:
        console.print(f"message: {s.message}")


def _render_abort(console: Any, a: Any) -> None:
    if a.already_reverted:
        console.print(f"{a.model}: nothing to change, already at the snapshot ({a.phase})")
    for c in a.changes:
        console.print(f"  {c.action} {c.kind}/{c.name}")
    console.print(f"{a.model}: {a.phase_before} -> {a.phase}")


# ------------------------------------------------------------------------------------------ commands


def _config(name_: str, to_: str, strategy: str, namespace_: str, **kw: Any) -> Any:
    name, to, namespace = name_, to_, namespace_
    kw = {k: v for k, v in kw.items() if k not in ("name", "to", "namespace")}
    from mlserve.rollout.durations import parse_duration, parse_steps
    from mlserve.rollout.engine import RolloutConfig
    from mlserve.rollout.workload import VersionSpec

    if kw["on_interrupt"] not in ("abort", "pause"):
        from mlserve.errors import UsageError

        raise UsageError(f"--on-interrupt must be 'abort' or 'pause', not {kw['on_interrupt']!r}")
    return RolloutConfig(
        name=name, to=to, strategy=strategy, namespace=namespace, router=kw.get("router", "gateway"),
        steps=parse_steps(kw.get("steps", "100")), pause=None if kw["pause"] is None else parse_duration(kw["pause"], what="--pause"),
        timeout=None if kw["timeout"] is None else parse_duration(kw["timeout"], what="--timeout"), deployment=kw["deployment"], service=kw["service"],
        route=kw.get("route"), canary_replicas=kw.get("canary_replicas", 1),
        version=VersionSpec(image_template=kw["image"], env_name=kw["version_env"], container=kw["container"]),
        ready_timeout=parse_duration(kw["ready_timeout"], what="--ready-timeout"),
        poll=max(0.01, parse_duration(kw["poll"], what="--poll")),
        lease_seconds=max(1.0, parse_duration(kw["lease_duration"], what="--lease-duration")),
        on_interrupt=kw["on_interrupt"], dry_run=kw["dry_run"], resume=kw["resume"],
        selector_key=kw.get("selector_key", "slot"), keep=parse_duration(kw.get("keep", "0s"), what="--keep"),
        smoke_url=kw.get("smoke_url"), smoke_cmd=kw.get("smoke_cmd"),
    )


def canary(
    name: NameArg,
    to: ToOpt,
    namespace: NamespaceOpt = None,
    router: Annotated[str, typer.Option("--router", help="Traffic router: gateway (HTTPRoute weights), nginx (canary Ingress) or istio (VirtualService).")] = "gateway",
    steps: Annotated[str, typer.Option("--steps", help="Traffic percentages to the canary, in order.")] = "5,25,50,100",
    pause: PauseOpt = None,
    analysis: AnalysisOpt = None,
    no_analysis: NoAnalysisOpt = False,
    prometheus_url: PrometheusOpt = None,
    timeout: TimeoutOpt = None,
    deployment: DeploymentOpt = None,
    service: ServiceOpt = None,
    route: Annotated[Optional[str], typer.Option("--route", help="HTTPRoute, stable Ingress or VirtualService holding the split; default NAME.")] = None,
    canary_replicas: Annotated[int, typer.Option("--canary-replicas", min=1, help="Replicas of the canary Deployment.")] = 1,
    image: ImageOpt = "{repository}:{version}",
    version_env: VersionEnvOpt = "MLSERVE_MODEL_VERSION",
    container: ContainerOpt = None,
    ready_timeout: ReadyTimeoutOpt = "5m",
    lease_duration: LeaseOpt = "60s",
    poll: PollOpt = "1s",
    on_interrupt: InterruptOpt = "abort",
    dry_run: DryRunOpt = False,
    resume: ResumeOpt = False,
    manifests: ManifestsOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    server: ServerOpt = None,
    registry: RegistryOpt = None,
    lock_timeout: LockTimeoutOpt = None,
    no_registry: NoRegistryOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Canary: move traffic to VERSION step by step, judge each step, promote or roll back."""
    _run_strategy("canary", dict(locals()))


def blue_green(
    name: NameArg,
    to: ToOpt,
    namespace: NamespaceOpt = None,
    selector_key: Annotated[str, typer.Option("--selector-key", help="Service selector label naming the colour (values blue/green).")] = "slot",
    keep: Annotated[str, typer.Option("--keep", help="Keep the old colour running this long after the switch, so `undo` is instant.")] = "10m",
    smoke_url: Annotated[Optional[str], typer.Option("--smoke-url", help="URL that must answer 2xx before the switch (e.g. the idle colour's preview Service).")] = None,
    smoke_cmd: Annotated[Optional[str], typer.Option("--smoke-cmd", help="Command that must exit 0 before the switch; gets MLSERVE_ROLLOUT_* variables.")] = None,
    pause: PauseOpt = None,
    analysis: AnalysisOpt = None,
    no_analysis: NoAnalysisOpt = False,
    prometheus_url: PrometheusOpt = None,
    timeout: TimeoutOpt = None,
    deployment: DeploymentOpt = None,
    service: ServiceOpt = None,
    image: ImageOpt = "{repository}:{version}",
    version_env: VersionEnvOpt = "MLSERVE_MODEL_VERSION",
    container: ContainerOpt = None,
    ready_timeout: ReadyTimeoutOpt = "5m",
    lease_duration: LeaseOpt = "60s",
    poll: PollOpt = "1s",
    on_interrupt: InterruptOpt = "abort",
    dry_run: DryRunOpt = False,
    resume: ResumeOpt = False,
    manifests: ManifestsOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    server: ServerOpt = None,
    registry: RegistryOpt = None,
    lock_timeout: LockTimeoutOpt = None,
    no_registry: NoRegistryOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Blue-green: the idle colour gets VERSION, is checked, then the Service switches to it."""
    _run_strategy("blue-green", dict(locals()))


def _run_strategy(strategy: str, params: dict) -> None:
    from mlserve.cli._output import progress_for
    from mlserve.rollout.api import run_rollout
    from mlserve.rollout.interrupts import catch_signals

    p = params
    target = _target(p["namespace"], p["kubeconfig"], p["context"], p["server"], p["manifests"], p["registry"],
                     p["lock_timeout"], p["no_registry"])
    cfg = _config(p["name"], p["to"], strategy, target.namespace, **p)
    with catch_signals() as interrupt:
        result = run_rollout(cfg, target, analysis=p["analysis"],
                             prometheus_url=config.resolve("rollout.prometheus_url", p["prometheus_url"]),
                             no_analysis=p["no_analysis"], progress=progress_for(p["as_json"]), interrupt=interrupt)
    _finish("rollout", result, p["as_json"], _render_rollout)


def plan(
    name: NameArg,
    to: ToOpt,
    strategy: Annotated[str, typer.Option("--strategy", help="canary or blue-green.")] = "canary",
    namespace: NamespaceOpt = None,
    router: Annotated[str, typer.Option("--router", help="Traffic router (canary): gateway, nginx or istio.")] = "gateway",
    steps: Annotated[str, typer.Option("--steps", help="Traffic percentages to the canary, in order.")] = "5,25,50,100",
    pause: PauseOpt = None,
    deployment: DeploymentOpt = None,
    service: ServiceOpt = None,
    route: Annotated[Optional[str], typer.Option("--route", help="Object holding the traffic split; default NAME.")] = None,
    selector_key: Annotated[str, typer.Option("--selector-key", help="Blue-green: selector label naming the colour.")] = "slot",
    image: ImageOpt = "{repository}:{version}",
    version_env: VersionEnvOpt = "MLSERVE_MODEL_VERSION",
    container: ContainerOpt = None,
    manifests: ManifestsOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    server: ServerOpt = None,
    registry: RegistryOpt = None,
    lock_timeout: LockTimeoutOpt = None,
    no_registry: NoRegistryOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Print the exact patches a rollout would apply, step by step; nothing is changed."""
    from mlserve.cli._output import emit
    from mlserve.errors import UsageError
    from mlserve.rollout.api import plan_rollout

    if strategy not in ("canary", "blue-green"):
        raise UsageError(f"--strategy must be canary or blue-green, not {strategy!r}")
    target = _target(namespace, kubeconfig, context, server, manifests, registry, lock_timeout, no_registry)
    cfg = _config(name, to, strategy, target.namespace, router=router, steps=steps, pause=pause, timeout="30m",
                  deployment=deployment, service=service, route=route, image=image, version_env=version_env,
                  container=container, ready_timeout="5m", poll="1s", lease_duration="60s", on_interrupt="abort",
                  dry_run=False, resume=False, selector_key=selector_key)
    emit("rollout-plan", plan_rollout(cfg, target), as_json, _render_plan)


def status(
    name: NameArg,
    namespace: NamespaceOpt = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the rollout ends; exit with its outcome's code.")] = False,
    timeout: Annotated[str, typer.Option("--timeout", help="With --wait: give up after this long (exit 11, outcome unknown yet).")] = "30m",
    manifests: ManifestsOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    server: ServerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the recorded state of NAME's rollout (phase, step, owner, deadline, verdicts)."""
    from mlserve.rollout.api import rollout_status
    from mlserve.rollout.durations import parse_duration

    target = _target(namespace, kubeconfig, context, server, manifests)
    result = rollout_status(name, target, wait=wait, timeout=parse_duration(timeout, what="--timeout"))
    if not wait:
        result.exit_code = 0
    _finish("rollout-status", result, as_json, _render_status)


def abort(
    name: NameArg,
    namespace: NamespaceOpt = None,
    reason: Annotated[Optional[str], typer.Option("--reason", help="Why (recorded in the Lease and the registry journal).")] = None,
    dry_run: DryRunOpt = False,
    manifests: ManifestsOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    server: ServerOpt = None,
    registry: RegistryOpt = None,
    lock_timeout: LockTimeoutOpt = None,
    no_registry: NoRegistryOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Put traffic back on stable and restore every field the rollout changed. Safe to repeat."""
    from mlserve.cli._output import emit
    from mlserve.rollout.api import abort_rollout
    from mlserve.rollout.interrupts import catch_signals

    target = _target(namespace, kubeconfig, context, server, manifests, registry, lock_timeout, no_registry)
    with catch_signals():  # a Ctrl-C must not leave the revert half-done
        result = abort_rollout(name, target, reason=reason, dry_run=dry_run)
    emit("rollout-abort", result, as_json, _render_abort)


def promote(
    name: NameArg,
    namespace: NamespaceOpt = None,
    full: Annotated[bool, typer.Option("--full", help="Skip every remaining pause, not only the current one.")] = False,
    manifests: ManifestsOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    server: ServerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Tell the running rollout of NAME to skip its current pause (--full: all pauses)."""
    from mlserve.cli._output import emit
    from mlserve.rollout.api import promote_rollout

    target = _target(namespace, kubeconfig, context, server, manifests)
    emit("rollout-promote", promote_rollout(name, target, full=full), as_json,
         lambda console, r: console.print(r.message))


def undo(
    name: NameArg,
    namespace: NamespaceOpt = None,
    dry_run: DryRunOpt = False,
    manifests: ManifestsOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    server: ServerOpt = None,
    registry: RegistryOpt = None,
    lock_timeout: LockTimeoutOpt = None,
    no_registry: NoRegistryOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Revert NAME's last finished rollout to the previous version (blue-green: switch back)."""
    from mlserve.cli._output import emit
    from mlserve.rollout.api import undo_rollout
    from mlserve.rollout.interrupts import catch_signals

    target = _target(namespace, kubeconfig, context, server, manifests, registry, lock_timeout, no_registry)
    with catch_signals():  # a Ctrl-C must not leave the revert half-done
        result = undo_rollout(name, target, dry_run=dry_run)
    emit("rollout-undo", result, as_json, _render_abort)


def rbac(
    namespace: NamespaceOpt = None,
    router: Annotated[Optional[list[str]], typer.Option("--router", help="Routers to allow (repeatable): gateway, nginx, istio, blue-green; default all.")] = None,
    service_account: Annotated[Optional[str], typer.Option("--service-account", help="Also print a RoleBinding for this ServiceAccount.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the minimal Role (YAML) the rollout commands need in one namespace."""
    from mlserve.cli._output import emit
    from mlserve.rollout.rbac import minimal_role

    result = minimal_role(config.resolve("rollout.namespace", namespace), routers=router, service_account=service_account)
    emit("rollout-rbac", result, as_json, lambda console, r: console.print(r.yaml, end="", markup=False))


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

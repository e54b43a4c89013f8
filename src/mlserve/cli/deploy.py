"""``mlserve deploy manifests``: Kubernetes objects that run ``mlserve serve`` for a registry version."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from mlserve import config
from mlserve.cli._options import JsonOpt, RegistryOpt
from mlserve.cli._output import emit

app = typer.Typer(name="deploy", help="Deployment artifacts for serving models.", no_args_is_help=True,
                  add_completion=False, rich_markup_mode=None)


@app.command("manifests")
def manifests(
    ref: Annotated[str, typer.Argument(help="NAME@STAGE (its current version) or NAME:VERSION.", metavar="REF")],
    image: Annotated[str, typer.Option("--image", help="Serving image, may hold {version} and {model}, e.g. 'ghcr.io/acme/iris:{version}'.")],
    namespace: Annotated[Optional[str], typer.Option("--namespace", "-n", envvar=config.env_var("rollout.namespace"), show_envvar=True, help="Namespace of the objects (default 'default').")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Name of the Deployment, Service, PDB and route (default: the model's name).")] = None,
    replicas: Annotated[int, typer.Option("--replicas", help="Replicas of the Deployment.")] = 2,
    min_available: Annotated[int, typer.Option("--min-available", help="PodDisruptionBudget minAvailable (below --replicas).")] = 1,
    http_port: Annotated[int, typer.Option("--http-port", help="REST port in the container.")] = 8000,
    grpc_port: Annotated[int, typer.Option("--grpc-port", help="gRPC port in the container (0: none).")] = 8001,
    cpu: Annotated[str, typer.Option("--cpu", help="CPU request of the container.")] = "1",
    memory: Annotated[str, typer.Option("--memory", help="Memory request and limit of the container.")] = "1Gi",
    threads: Annotated[int, typer.Option("--threads", help="ONNX Runtime intra-op threads per session.")] = 1,
    registry_path: Annotated[str, typer.Option("--registry-path", help="Where the registry is inside the container.")] = "/var/lib/mlserve/registry",
    registry_claim: Annotated[Optional[str], typer.Option("--registry-claim", help="PersistentVolumeClaim holding the registry, mounted read-only (else the image holds it).")] = None,
    drain_delay: Annotated[float, typer.Option("--drain-delay", help="Seconds of serving after SIGTERM while not ready.")] = 5.0,
    drain_timeout: Annotated[float, typer.Option("--drain-timeout", help="Seconds for in-flight requests to finish.")] = 30.0,
    prestop_seconds: Annotated[int, typer.Option("--prestop-seconds", help="preStop wait while endpoints are updated.")] = 5,
    router: Annotated[str, typer.Option("--router", help="Traffic object to add: gateway (an HTTPRoute for 'rollout --router gateway') or none.")] = "gateway",
    gateway: Annotated[str, typer.Option("--gateway", help="Gateway the HTTPRoute attaches to.")] = "mlserve-gateway",
    registry: RegistryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a Deployment, Service, PodDisruptionBudget and HTTPRoute that serve REF with 'mlserve serve'.

    The objects carry the labels, the version annotation and the MLSERVE_MODEL_VERSION variable that
    'mlserve rollout' manages, and metrics labels its default analysis selects on.

    Example: mlserve deploy manifests iris@production --image 'ghcr.io/acme/iris-serve:{version}' -n ml
    """
    from mlserve.deploy import DeploySpec, build_manifests
    from mlserve.registry import Registry

    spec = DeploySpec(ref=ref, image=image, namespace=config.resolve("rollout.namespace", namespace), name=name,
                      replicas=replicas, min_available=min_available, http_port=http_port, grpc_port=grpc_port,
                      cpu=cpu, memory=memory, threads=threads, registry_path=registry_path,
                      registry_claim=registry_claim, drain_delay=drain_delay, drain_timeout=drain_timeout,
                      prestop_seconds=prestop_seconds, router=router, gateway=gateway).check()
    emit("deploy-manifests", build_manifests(spec, Registry(config.resolve("registry", registry))), as_json, _render)


def _render(out: Console, r: Any) -> None:
    out.file.write(r.yaml)
    out.file.flush()


def install(root: typer.Typer) -> None:
    """Add the deploy group to the root app."""
    root.add_typer(app, name="deploy")

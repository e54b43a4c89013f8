"""The standard gRPC health service (``grpc.health.v1.Health``), answered from the server's live state.

Kubernetes' native gRPC probes, ``grpc_health_probe`` and load balancers ask this service, not the
inference API. The messages and the service registration are grpcio-health-checking's; the answers
are computed at call time instead of being set by hand, so they can never lag the server:

* service ``""`` or ``inference.GRPCInferenceService``: SERVING while the server is ready (models
  loaded, checked and warmed up, not draining), NOT_SERVING otherwise (so a drain shows here at once);
* service ``liveness``: SERVING as long as the process answers (for a liveness probe);
* a model's name: SERVING while that model can answer and the server is ready;
* anything else: ``Check`` fails with NOT_FOUND and ``Watch`` sends SERVICE_UNKNOWN (the protocol's rules).

``List`` gives all of these with their status. ``Watch`` sends the status at once, then each change (checked every ``watch_interval`` seconds).
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from mlserve.serve.errors import NotReady, RequestError
from mlserve.serve.state import ServerState

SERVICE_NAME = "inference.GRPCInferenceService"
LIVENESS = "liveness"


class HealthService:
    def __init__(self, state: ServerState, *, watch_interval: float = 0.5) -> None:
        from grpc_health.v1 import health_pb2

        self.pb = health_pb2
        self.state = state
        self.watch_interval = watch_interval

    def status(self, service: str) -> int | None:
        """The serving status of ``service`` now; None when the server does not know it."""
        codes = self.pb.HealthCheckResponse
        if service == LIVENESS:
            return codes.SERVING
        if service in ("", SERVICE_NAME):
            return codes.SERVING if self.state.ready else codes.NOT_SERVING
        if service not in self.state.repo.models:
            return None
        try:
            self.state.repo.get(service)
        except NotReady:
            return codes.NOT_SERVING
        except RequestError:
            return None
        return codes.SERVING if self.state.ready else codes.NOT_SERVING

    async def Check(self, request: Any, context: Any) -> Any:  # noqa: N802 (the protocol's method names)
        import grpc

        status = self.status(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return self.pb.HealthCheckResponse(status=status)

    async def List(self, request: Any, context: Any) -> Any:  # noqa: N802
        """Every service this server answers for, with its status now."""
        services = ["", SERVICE_NAME, LIVENESS, *self.state.repo.models]
        out = self.pb.HealthListResponse()
        for service in services:
            out.statuses[service].status = self.status(service)
        return out

    async def Watch(self, request: Any, context: Any) -> AsyncIterator[Any]:  # noqa: N802
        last = None
        while True:
            status = self.status(request.service)
            if status is None:
                status = self.pb.HealthCheckResponse.SERVICE_UNKNOWN
            if status != last:
                yield self.pb.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(self.watch_interval)


def add_health_service(server: Any, state: ServerState) -> None:
    """Register the health service on a ``grpc.aio`` server."""
    from grpc_health.v1 import health_pb2_grpc

    health_pb2_grpc.add_HealthServicer_to_server(HealthService(state), server)

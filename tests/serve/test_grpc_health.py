"""The standard gRPC health service (grpc.health.v1), with grpcio-health-checking's own client stub,
against a real server: the answers follow readiness and the drain, unknown services are refused."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from serve.support import ServerProcess

pytestmark = pytest.mark.timeout(120)
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


def _check(stub: health_pb2_grpc.HealthStub, service: str) -> int:
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_health_check_follows_readiness_and_the_drain(tmp_path: Path, model_files) -> None:  # noqa: ANN001
    srv = ServerProcess([str(model_files["mlp"])], tmp_path, "--drain-delay", "3")
    try:
        with grpc.insecure_channel(srv.grpc_target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for service in ("", "inference.GRPCInferenceService", "mlp", "liveness"):
                assert _check(stub, service) == SERVING, service
            listed = stub.List(health_pb2.HealthListRequest(), timeout=5).statuses
            assert {k: v.status for k, v in listed.items()} == dict.fromkeys(
                ["", "inference.GRPCInferenceService", "liveness", "mlp"], SERVING)
            with pytest.raises(grpc.RpcError) as err:
                _check(stub, "no-such-model")
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            watch = stub.Watch(health_pb2.HealthCheckRequest(service="no-such-model"), timeout=5)
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            watch.cancel()

            watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
            assert next(watch).status == SERVING
            srv.proc.send_signal(signal.SIGTERM)
            assert next(watch).status == NOT_SERVING  # the drain shows at once, while requests are still served
            watch.cancel()
            t0 = time.monotonic()
            assert _check(stub, "") == NOT_SERVING and _check(stub, "mlp") == NOT_SERVING
            assert _check(stub, "liveness") == SERVING
            assert time.monotonic() - t0 < 3  # all inside --drain-delay
        assert srv.proc.wait(60) == 0
    finally:
        srv.kill()

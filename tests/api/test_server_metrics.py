"""build_server instruments every service it serves, not only vaultd's: VaultService, ClusterService, gRPC
health (unary and server stream) and reflection (bidi stream) each count with their full names and final
codes. RpcMetrics is applied at registration (vaultd.api.wrapping), so this checks that each generated
add_*_to_server call went through it. Real node and gRPC over loopback (tests/api/conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import REGISTRY

from vaultd.api.wrapping import Registrar
from vaultd.observability.rpc_metrics import RpcMetrics
from vaultd.v1 import cluster_pb2, cluster_pb2_grpc, vault_pb2, vault_pb2_grpc

pytestmark = pytest.mark.timeout(60)

CALLS = [  # (grpc_type, service, method, code)
    ("unary", "vaultd.v1.VaultService", "GetVault", "NOT_FOUND"),
    ("unary", "vaultd.v1.ClusterService", "GetStatus", "OK"),
    ("unary", "grpc.health.v1.Health", "Check", "OK"),
    ("server_stream", "grpc.health.v1.Health", "Watch", "CANCELLED"),
    ("bidi_stream", "grpc.reflection.v1alpha.ServerReflection", "ServerReflectionInfo", "OK"),
]


def _handled(grpc_type: str, service: str, method: str, code: str) -> float:
    return REGISTRY.get_sample_value("grpc_server_handled_total", {
        "grpc_type": grpc_type, "grpc_service": service, "grpc_method": method, "grpc_code": code}) or 0.0


def _started(grpc_type: str, service: str, method: str) -> float:
    return REGISTRY.get_sample_value("grpc_server_started_total", {
        "grpc_type": grpc_type, "grpc_service": service, "grpc_method": method}) or 0.0


def test_every_service_is_counted(single_node) -> None:
    addr, _ = single_node
    handled_before = {call: _handled(*call) for call in CALLS}
    started_before = {call: _started(*call[:3]) for call in CALLS}
    with grpc.insecure_channel(addr) as channel:
        with pytest.raises(grpc.RpcError) as info:
            vault_pb2_grpc.VaultServiceStub(channel).GetVault(vault_pb2.GetVaultRequest(name="absent"), timeout=5)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert cluster_pb2_grpc.ClusterServiceStub(channel).GetStatus(cluster_pb2.GetStatusRequest(), timeout=5)
        health = health_pb2_grpc.HealthStub(channel)
        # SERVING or not yet (the health loop follows readiness within 200 ms): either way a counted OK
        serving = (health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status in serving
        watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=5)
        assert next(watch).status in serving
        watch.cancel()  # a watch only ends when the client leaves
        replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        names = {s.name for reply in replies for s in reply.list_services_response.service}
        assert "vaultd.v1.VaultService" in names

    deadline = time.monotonic() + 5  # streams are recorded when the server side has finished them
    while any(_handled(*call) - handled_before[call] < 1 for call in CALLS) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert {call[:3]: _handled(*call) - handled_before[call] for call in CALLS} == {call[:3]: 1 for call in CALLS}
    assert all(_started(*call[:3]) - started_before[call] == 1 for call in CALLS)


@pytest.fixture
def two_worker_health_server() -> Iterator[str]:
    """gRPC health alone on a server with 2 worker threads, registered through Registrar with RpcMetrics."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), Registrar(server, [RpcMetrics()]))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None).wait(5)


def test_health_watch_stays_non_blocking(two_worker_health_server) -> None:
    """gRPC health's Watch sends through a callback and returns at once; wrapped, it must stay so, or each
    open Watch would hold a worker thread: with 3 Watches open on 2 workers, nothing else would be served."""
    with grpc.insecure_channel(two_worker_health_server) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        watches = [stub.Watch(health_pb2.HealthCheckRequest(), timeout=10) for _ in range(3)]
        try:
            for watch in watches:
                next(watch)
            assert stub.Check(health_pb2.HealthCheckRequest(), timeout=3).status == \
                health_pb2.HealthCheckResponse.SERVING
        finally:
            for watch in watches:
                watch.cancel()

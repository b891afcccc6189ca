"""RpcCounters exports exactly what prometheus_client's Counter and Histogram would for the same RPCs, and
loses no update under concurrent RPCs."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest

from tests.threads import run_concurrently
from vaultd.observability.rpc_counters import RpcCounters

pytestmark = pytest.mark.timeout(60)
# vaultd exports no `_created` series (vaultd.observability.metrics turns them off process-wide); the
# prometheus_client references must not either.
disable_created_metrics()

BUCKETS = (0.0005, 0.001, 0.25, 1.0, 10.0)
LABELS = ("grpc_type", "grpc_service", "grpc_method")
# (method, code, seconds): values on bucket bounds (le is inclusive), between them, and beyond the last one
RPCS = [("Get", "OK", 0.0005), ("Get", "OK", 0.0002), ("Get", "NOT_FOUND", 0.3), ("Get", "OK", 1.0),
        ("Put", "OK", 20.0), ("Put", "FAILED_PRECONDITION", 0.001), ("Put", "OK", 0.0011)]


def _reference_exposition() -> bytes:
    registry = CollectorRegistry()
    started = Counter("grpc_server_started_total", "RPCs started on the server.", LABELS, registry=registry)
    handled = Counter("grpc_server_handled_total", "RPCs completed on the server, regardless of success or failure.",
                      (*LABELS, "grpc_code"), registry=registry)
    seconds = Histogram("grpc_server_handling_seconds", "Response latency of RPCs handled by the server.", LABELS,
                        buckets=BUCKETS, registry=registry)
    for method, code, elapsed in RPCS:
        labels = ("unary", "vaultd.v1.VaultService", method)
        started.labels(*labels).inc()
        handled.labels(*labels, code).inc()
        seconds.labels(*labels).observe(elapsed)
    started.labels("server_stream", "vaultd.v1.VaultService", "ExportVault").inc()  # still in flight
    seconds.labels("server_stream", "vaultd.v1.VaultService", "ExportVault")
    return generate_latest(registry)


def _lines(exposition: bytes) -> list[str]:
    return sorted(exposition.decode().splitlines())


def test_exposition_matches_prometheus_client() -> None:
    counters = RpcCounters(BUCKETS)
    registry = CollectorRegistry()
    registry.register(counters)
    for method, code, elapsed in RPCS:
        method_counters = counters.method("unary", "vaultd.v1.VaultService", method)
        method_counters.start()
        method_counters.finish(code, elapsed)
    counters.method("server_stream", "vaultd.v1.VaultService", "ExportVault").start()
    counters.method("unary", "vaultd.v1.VaultService", "DeleteVault")  # never called: no series
    assert _lines(generate_latest(registry)) == _lines(_reference_exposition())
    assert registry.get_sample_value("grpc_server_handling_seconds_bucket", {
        "grpc_type": "unary", "grpc_service": "vaultd.v1.VaultService", "grpc_method": "Get", "le": "0.0005"}) == 2


def test_one_counter_set_per_method() -> None:
    counters = RpcCounters(BUCKETS)
    assert counters.method("unary", "s", "m") is counters.method("unary", "s", "m")
    assert counters.method("unary", "s", "m") is not counters.method("unary", "s", "n")


def test_concurrent_rpcs_lose_no_update() -> None:
    counters = RpcCounters(BUCKETS)
    method = counters.method("unary", "vaultd.v1.VaultService", "Get")
    threads, per_thread = 8, 5000

    def work() -> None:
        for i in range(per_thread):
            method.start()
            method.finish("OK" if i % 2 else "NOT_FOUND", 0.0001)

    run_concurrently(work, threads)
    started, handled, buckets, total = method.counts()
    assert started == threads * per_thread
    assert handled == {"OK": threads * per_thread // 2, "NOT_FOUND": threads * per_thread // 2}
    assert buckets[0] == threads * per_thread and sum(buckets) == threads * per_thread
    assert total == pytest.approx(threads * per_thread * 0.0001)

"""Throughput cost of metrics and access statistics: the same node served with observability on and off.

    python -m benchmarks.bench_observability [--seconds 3] [--rounds 3] [--clients 16] [--quick]
        [--workload put|get-local|get-linearizable ...] [--on interceptor|stats|scrape ...] [--json out.json]

One process runs a real single-node vaultd (StateMachine on SQLite, ReplicatedNode with pysyncobj, the gRPC
server from vaultd.api.build_server); clients run in separate processes (benchmarks.bench_replication's
load generator) so their GIL is not the one measured. The two arms differ in exactly what an operator could
switch off:

- on:  MetricsInterceptor on every RPC, AccessStats recording every key access (flushed to its own SQLite
       file each second), NodeCollector registered, and /metrics scraped every second (15x the usual rate);
- off: no interceptor, access statistics disabled (stats=None), nothing scraped.

The counters the replication layer increments per batch are in both arms (they are not switchable and cost
a few hundred nanoseconds per log entry). fsync is off so that the request path, not the disk, is the
bottleneck, which makes the relative cost of observability as large as it gets. Arms alternate within each
round (off/on, then on/off) and the median over rounds is reported.

Throughput on a shared 2-core machine is noisy (other processes, client processes on the same cores), so the
script also reports the server process's CPU time per request in each arm (less sensitive to what else
runs), and measures each part of the "on" arm in isolation: the interceptor's cost per RPC (its
intercept_service and wrapper around a do-nothing handler), one AccessStats.record(), and one full scrape. The
modelled cost is the share of the GIL-bound request path they take at the measured throughput:
(interceptor + record) x ops/s + one statistics flush and one scrape per second.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import grpc
from prometheus_client import REGISTRY, generate_latest

from benchmarks.bench_replication import VALUE, measure
from tests.cluster import free_port
from vaultd.api.server import build_server
from vaultd.client import VaultClient
from vaultd.config import NodeConfig
from vaultd.observability import MetricsInterceptor, NodeCollector, start_http_server
from vaultd.replication import ReplicatedNode
from vaultd.store.machine import StateMachine
from vaultd.store.results import Limits
from vaultd.store.stats import AccessStats
from vaultd.v1 import vault_pb2

WORKLOADS = (("put", ""), ("get", "local"), ("get", "linearizable"))
PARTS = frozenset({"interceptor", "stats", "scrape"})


class _InProcessTarget:
    """What bench_replication.measure() asks of a cluster, answered for the node running in this process."""

    def __init__(self, grpc_addr: str) -> None:
        self.grpc_addr = grpc_addr

    def endpoints(self) -> list[str]:
        return [self.grpc_addr]

    def running(self) -> list[_InProcessTarget]:
        return [self]

    def metric(self, _node: object, name: str) -> float | None:
        return REGISTRY.get_sample_value(name)


def _scrape_every_second(port: int, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            resp.read()


@contextlib.contextmanager
def serving(cfg: NodeConfig, node: Any, machine: Any, parts: frozenset[str]) -> Iterator[None]:
    """The gRPC server with the given observability parts ("interceptor", "stats", "scrape") for one run."""
    stats = AccessStats(cfg.stats_path) if "stats" in parts else None
    interceptors = [MetricsInterceptor()] if "interceptor" in parts else []
    server = build_server(node=node, machine=machine, stats=stats, cfg=cfg, interceptors=interceptors)
    server.start()
    collector = http = scraper = None
    stop = threading.Event()
    if "scrape" in parts:
        collector = NodeCollector(node, machine, db_path=cfg.db_path, node_id=cfg.node_id).register(REGISTRY)
        http = start_http_server("127.0.0.1:0", node)
        scraper = threading.Thread(target=_scrape_every_second, args=(http.port, stop), daemon=True)
        scraper.start()
    try:
        yield
    finally:
        stop.set()
        if scraper is not None:
            scraper.join(timeout=10)
        server.stop(1).wait(5)
        if http is not None:
            http.stop()
        if collector is not None:
            collector.unregister()
        if stats is not None:
            stats.close()


def run(seconds: float, rounds: int, clients: int, workloads: tuple[tuple[str, str], ...] = WORKLOADS,
        on_parts: frozenset[str] = PARTS) -> tuple[list[dict[str, Any]], dict[str, float]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vaultd-bench-obs-") as tmp:
        cfg = NodeConfig(node_id="n1", data_dir=tmp, raft_addr=f"127.0.0.1:{free_port()}",
                         grpc_addr=f"127.0.0.1:{free_port()}", cluster_secret="bench-secret", unsafe_no_fsync=True)
        # Every put adds a key to one vault: lift the per-vault key limit so long runs never hit VAULT_FULL.
        machine = StateMachine(cfg.db_path, bootstrap_limits=Limits(max_keys_per_vault=10_000_000))
        node = ReplicatedNode(cfg, machine)
        node.start()
        target = _InProcessTarget(cfg.grpc_addr)
        try:
            deadline = time.monotonic() + 30
            while not node.is_ready():
                if time.monotonic() > deadline:
                    raise RuntimeError("single node did not become ready")
                time.sleep(0.05)
            with serving(cfg, node, machine, frozenset()), VaultClient([cfg.grpc_addr]) as client:
                for i in range(200):
                    client.put("bench", f"seed-{i}", VALUE)
            for op, consistency in workloads:
                results: dict[str, list[int]] = {"off": [], "on": []}
                cpu: dict[str, list[float]] = {"off": [], "on": []}
                for r in range(rounds):
                    for arm in (("off", "on") if r % 2 == 0 else ("on", "off")):
                        with serving(cfg, node, machine, on_parts if arm == "on" else frozenset()):
                            cpu_start = time.process_time()  # this process = the server; clients are elsewhere
                            res = measure(target, clients, seconds, op, consistency)
                            cpu_s = time.process_time() - cpu_start
                        if res["errors"]:
                            raise RuntimeError(f"{res['errors']} requests failed: the measurement is void")
                        results[arm].append(res["ops_per_s"])
                        cpu[arm].append(cpu_s / res["ops"] * 1e6)
                        print(json.dumps({"op": op, "consistency": consistency, "arm": arm,
                                          "server_cpu_us_per_op": round(cpu[arm][-1], 1), **res}), flush=True)
                off, on = statistics.median(results["off"]), statistics.median(results["on"])
                cpu_off, cpu_on = statistics.median(cpu["off"]), statistics.median(cpu["on"])
                rows.append({"bench": f"{op}{'-' + consistency if consistency else ''}", "clients": clients,
                             "off_ops_per_s": round(off), "on_ops_per_s": round(on),
                             "cost_percent": round((off - on) / off * 100, 1) if off else None,
                             "cpu_us_per_op_off": round(cpu_off, 1), "cpu_us_per_op_on": round(cpu_on, 1),
                             "cpu_cost_percent": round((cpu_on - cpu_off) / cpu_off * 100, 1),
                             "rounds_off": results["off"], "rounds_on": results["on"]})
            costs = micro(node, machine, cfg, rounds)
        finally:
            node.stop()
            machine.close()
    per_op_us = costs["interceptor_us_per_rpc"] + costs["access_stats_us_per_record"]
    for row in rows:
        # Share of one core (the GIL-bound request path) that observability takes at the "off" throughput,
        # with a scrape and a statistics flush every second.
        busy = per_op_us * row["off_ops_per_s"] / 1e6 + (costs["scrape_ms"] + costs["stats_flush_ms"]) / 1e3
        row["modelled_cost_percent"] = round(100 * busy, 1)
    return rows, costs


class _LiveCallContext:
    """Answers the ServicerContext calls the interceptor makes the way a live, successful RPC does."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def code(self) -> None:
        return None

    def is_active(self) -> bool:
        return True

    def time_remaining(self) -> float:
        return 10.0


def _interceptor_seconds(calls: int) -> float:
    """Seconds per RPC that MetricsInterceptor adds: intercept_service (as grpcio calls it per RPC) plus the
    wrapped behaviour around a do-nothing handler, minus calling that handler directly."""
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    details = SimpleNamespace(method="/vaultd.v1.VaultService/Get", invocation_metadata=())
    interceptor = MetricsInterceptor()
    request, context = vault_pb2.GetRequest(vault="v", key="k"), _LiveCallContext()

    def continuation(_details: Any) -> grpc.RpcMethodHandler:
        return handler

    start = time.perf_counter()
    for _ in range(calls):
        handler.unary_unary(request, context)
    bare = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(calls):
        interceptor.intercept_service(continuation, details).unary_unary(request, context)
    return (time.perf_counter() - start - bare) / calls


def micro(node: Any, machine: Any, cfg: NodeConfig, rounds: int) -> dict[str, float]:
    """Per-operation costs that add up to the "on" arm, measured in isolation (less noisy than throughput)."""
    interceptor_s = statistics.median(_interceptor_seconds(50_000) for _ in range(rounds))
    stats = AccessStats(cfg.stats_path + ".micro", flush_interval=3600)  # flushed by hand below
    try:
        n = 200_000
        start = time.perf_counter()
        for i in range(n):
            stats.record("bench", f"key-{i % 1000}", "get", 0.0001)
        record_s = (time.perf_counter() - start) / n
        start = time.perf_counter()
        stats.flush()  # the once-a-second write of 1000 distinct keys' aggregates (a busy second)
        flush_s = time.perf_counter() - start
    finally:
        stats.close()
    collector = NodeCollector(node, machine, db_path=cfg.db_path, node_id=cfg.node_id).register(REGISTRY)
    try:
        scrapes = []
        for _ in range(50):
            start = time.perf_counter()
            generate_latest(REGISTRY)
            scrapes.append(time.perf_counter() - start)
    finally:
        collector.unregister()
    return {"interceptor_us_per_rpc": round(interceptor_s * 1e6, 2),
            "access_stats_us_per_record": round(record_s * 1e6, 2),
            "stats_flush_ms": round(flush_s * 1e3, 2), "scrape_ms": round(statistics.median(scrapes) * 1e3, 2)}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| workload | clients | ops/s off / on | throughput cost | server CPU us/op off / on | CPU cost "
             "| modelled cost | rounds ops/s off / on |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['bench']} | {r['clients']} | {r['off_ops_per_s']} / {r['on_ops_per_s']} | "
                     f"{r['cost_percent']}% | {r['cpu_us_per_op_off']} / {r['cpu_us_per_op_on']} | "
                     f"{r['cpu_cost_percent']}% | {r['modelled_cost_percent']}% | "
                     f"{r['rounds_off']} / {r['rounds_on']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measurement time per arm and round")
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs per workload (median reported)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent closed-loop clients")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s")
    parser.add_argument("--workload", action="append", choices=["put", "get-local", "get-linearizable"],
                        help="run only these workloads (repeatable; default all)")
    parser.add_argument("--on", action="append", choices=sorted(PARTS),
                        help="observability parts in the 'on' arm (repeatable; default all) to locate a cost")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    seconds, rounds = (2.0, 2) if args.quick else (args.seconds, args.rounds)
    chosen = tuple(w for w in WORKLOADS if not args.workload or "-".join(filter(None, w)) in args.workload)
    rows, costs = run(seconds, rounds, args.clients, chosen, frozenset(args.on or PARTS))
    print(table(rows))
    print(f"per RPC: interceptor {costs['interceptor_us_per_rpc']} us, access stats record "
          f"{costs['access_stats_us_per_record']} us; per second: statistics flush {costs['stats_flush_ms']} ms, "
          f"/metrics scrape {costs['scrape_ms']} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "per_operation": costs}, f, indent=2)


if __name__ == "__main__":
    main()

"""Throughput cost of metrics and access statistics: the same node served with observability on and off.

    python -m benchmarks.bench_observability [--seconds 3] [--rounds 3] [--clients 16] [--quick] [--json out.json]

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

from prometheus_client import REGISTRY

from benchmarks.bench_replication import VALUE, measure
from tests.cluster import free_port
from vaultd.api.server import build_server
from vaultd.client import VaultClient
from vaultd.config import NodeConfig
from vaultd.observability import MetricsInterceptor, NodeCollector, start_http_server
from vaultd.replication import ReplicatedNode
from vaultd.store.machine import StateMachine
from vaultd.store.stats import AccessStats

WORKLOADS = (("put", ""), ("get", "local"), ("get", "linearizable"))


def _scrape_every_second(port: int, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            resp.read()


@contextlib.contextmanager
def serving(cfg: NodeConfig, node: Any, machine: Any, observability: bool) -> Iterator[None]:
    """The gRPC server (and, when on, stats + collector + scraped metrics endpoint) for one measurement."""
    stats = AccessStats(cfg.stats_path) if observability else None
    interceptors = [MetricsInterceptor()] if observability else []
    server = build_server(node=node, machine=machine, stats=stats, cfg=cfg, interceptors=interceptors)
    server.start()
    collector = http = scraper = None
    stop = threading.Event()
    if observability:
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


def run(seconds: float, rounds: int, clients: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vaultd-bench-obs-") as tmp:
        cfg = NodeConfig(node_id="n1", data_dir=tmp, raft_addr=f"127.0.0.1:{free_port()}",
                         grpc_addr=f"127.0.0.1:{free_port()}", cluster_secret="bench-secret", unsafe_no_fsync=True)
        machine = StateMachine(cfg.db_path)
        node = ReplicatedNode(cfg, machine)
        node.start()
        target = SimpleNamespace(endpoints=lambda: [cfg.grpc_addr])
        try:
            deadline = time.monotonic() + 30
            while not node.is_ready():
                if time.monotonic() > deadline:
                    raise RuntimeError("single node did not become ready")
                time.sleep(0.05)
            with serving(cfg, node, machine, False), VaultClient([cfg.grpc_addr]) as client:
                for i in range(200):
                    client.put("bench", f"seed-{i}", VALUE)
            for op, consistency in WORKLOADS:
                results: dict[str, list[int]] = {"off": [], "on": []}
                for r in range(rounds):
                    for arm in (("off", "on") if r % 2 == 0 else ("on", "off")):
                        with serving(cfg, node, machine, arm == "on"):
                            res = measure(target, clients, seconds, op, consistency)
                        results[arm].append(res["ops_per_s"])
                        print(json.dumps({"op": op, "consistency": consistency, "arm": arm, **res}), flush=True)
                off, on = statistics.median(results["off"]), statistics.median(results["on"])
                rows.append({"bench": f"{op}{'-' + consistency if consistency else ''}", "clients": clients,
                             "off_ops_per_s": round(off), "on_ops_per_s": round(on),
                             "cost_percent": round((off - on) / off * 100, 1) if off else None,
                             "rounds_off": results["off"], "rounds_on": results["on"]})
        finally:
            node.stop()
            machine.close()
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| workload | clients | off ops/s | on ops/s | cost | rounds off / on |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['bench']} | {r['clients']} | {r['off_ops_per_s']} | {r['on_ops_per_s']} | "
                     f"{r['cost_percent']}% | {r['rounds_off']} / {r['rounds_on']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measurement time per arm and round")
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs per workload (median reported)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent closed-loop clients")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    seconds, rounds = (2.0, 2) if args.quick else (args.seconds, args.rounds)
    rows = run(seconds, rounds, args.clients)
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()

"""Replication benchmark: put throughput and p50/p99 latency through real gRPC against real node processes.

    python -m benchmarks.bench_replication [--seconds 3] [--quick] [--json out.json]

Matrix: 1 and 3 nodes x fsync on/off x 1/16/64 concurrent clients (each client one outstanding put of a
100-byte value under a unique key), then linearizable vs local gets (3 nodes, fsync on, 16 and 64 clients).
`--inprocess` instead measures the replication layer alone: ReplicatedNode.submit from threads against
nodes in this process (no gRPC; all nodes share one GIL, so 3-node figures understate separate processes).
Clusters run as `serve` does by default: TLS and a bearer token (benchmarks.bench_security measures what
that costs against plaintext without authentication). Clients run in up to 4 separate processes (threads inside each) so the Python client's GIL is not the
bottleneck being measured, and rotate over the nodes' endpoints (writes on followers are forwarded).
All processes share this machine's cores: the figures are for comparison, not capacity planning.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from typing import Any

from tests.cluster import Cluster

VALUE = b"v" * 100
MAX_PROCS = 4


def _worker(endpoints: list[str], threads: int, start_at: float, seconds: float, op: str, tag: str,
            consistency: str, result_queue: Any, client_kwargs: dict[str, Any]) -> None:
    """One client process: `threads` closed-loop clients; reports latencies (ms) and error count."""
    from vaultd.client import VaultClient, VaultError

    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def run(t: int) -> None:
        nonlocal errors
        rotated = endpoints[t % len(endpoints):] + endpoints[:t % len(endpoints)]
        client = VaultClient(rotated, timeout=10, **client_kwargs)
        mine: list[float] = []
        bad = 0
        i = 0
        while time.time() < start_at:
            time.sleep(0.001)
        end = start_at + seconds
        while time.time() < end:
            begin = time.perf_counter()
            try:
                if op == "put":
                    # A bounded key space (overwrites): unique keys filled the vault (max_keys_per_vault) after
                    # a few rounds, and every later put counted as an error.
                    client.put("bench", f"{tag}-{t}-{i % 256}", VALUE)
                else:
                    client.get("bench", f"seed-{i % 200}", consistency=consistency)
                mine.append((time.perf_counter() - begin) * 1000)
            except VaultError:
                bad += 1
            i += 1
        client.close()
        with lock:
            latencies.extend(mine)
            errors += bad

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    result_queue.put((latencies, errors))


def measure(cluster: Cluster, clients: int, seconds: float, op: str, consistency: str = "",
            start_at: float | None = None) -> dict[str, Any]:
    """Closed-loop load from `clients` threads in client processes during [start_at, start_at + seconds]
    (wall clock; default 2 s from now, as spawned interpreters need a moment to import grpc)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = min(MAX_PROCS, clients)
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    if start_at is None:
        start_at = time.time() + 2.0
    workers = [ctx.Process(target=_worker, args=(cluster.endpoints(), n, start_at, seconds, op, f"p{i}",
                                                 consistency, queue, cluster.client_kwargs()))
               for i, n in enumerate(per)]
    changes_before = _leader_changes(cluster)
    for w in workers:
        w.start()
    latencies: list[float] = []
    errors = 0
    for _ in workers:
        lat, err = queue.get(timeout=seconds + 60)
        latencies.extend(lat)
        errors += err
    for w in workers:
        w.join(timeout=30)
    return {**_summary(latencies, seconds, errors), "elections": _leader_changes(cluster) - changes_before}


def _leader_changes(cluster: Cluster) -> int:
    """Leader changes seen by the nodes (a loaded 2-core box can starve a tick thread into an election)."""
    return int(max((cluster.metric(n, "vaultd_raft_leader_changes_seen_total") or 0) for n in cluster.running()))


def _summary(latencies: list[float], seconds: float, errors: int) -> dict[str, Any]:
    latencies.sort()
    n = len(latencies)
    return {"ops": n, "ops_per_s": round(n / seconds), "errors": errors,
            "p50_ms": round(statistics.median(latencies), 2) if n else None,
            "p99_ms": round(latencies[min(n - 1, int(n * 0.99))], 2) if n else None}


def run(seconds: float, quick: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    concurrency = (1, 16) if quick else (1, 16, 64)
    with tempfile.TemporaryDirectory(prefix="vaultd-bench-") as tmp:
        for nodes in (1, 3):
            for fsync in (True, False):
                with Cluster(f"{tmp}/c{nodes}{int(fsync)}", nodes, fsync=fsync) as cluster:
                    cluster.start()
                    for clients in concurrency:
                        row = {"bench": "put", "nodes": nodes, "fsync": fsync, "clients": clients,
                               **measure(cluster, clients, seconds, "put")}
                        print(json.dumps(row), flush=True)
                        rows.append(row)
                    if nodes == 3 and fsync:
                        c = cluster.client()
                        for i in range(200):
                            c.put("bench", f"seed-{i}", VALUE)
                        for consistency in ("linearizable", "local"):
                            for clients in concurrency[1:]:
                                row = {"bench": f"get-{consistency}", "nodes": nodes, "fsync": fsync,
                                       "clients": clients, **measure(cluster, clients, seconds, "get", consistency)}
                                print(json.dumps(row), flush=True)
                                rows.append(row)
    return rows


def run_inprocess(seconds: float, quick: bool) -> list[dict[str, Any]]:
    """ReplicatedNode.submit throughput/latency without gRPC (nodes in this process, real pysyncobj + SQLite)."""
    from tests.cluster import free_port
    from vaultd.config import NodeConfig
    from vaultd.replication import ReplicatedNode
    from vaultd.store import commands
    from vaultd.store.machine import StateMachine

    rows: list[dict[str, Any]] = []
    for nodes in (1, 3):
        for fsync in (True, False):
            with tempfile.TemporaryDirectory(prefix="vaultd-bench-") as tmp:
                addrs = [f"127.0.0.1:{free_port()}" for _ in range(nodes)]
                group = []
                for i, addr in enumerate(addrs):
                    cfg = NodeConfig(node_id=f"n{i + 1}", data_dir=f"{tmp}/n{i + 1}", raft_addr=addr,
                                     peers=[a for a in addrs if a != addr], cluster_secret="bench",
                                     unsafe_no_fsync=not fsync)
                    os.makedirs(cfg.data_dir)
                    node = ReplicatedNode(cfg, StateMachine(cfg.db_path))
                    node.start()
                    group.append(node)
                deadline = time.monotonic() + 20
                while not all(n.is_ready() for n in group) and time.monotonic() < deadline:
                    time.sleep(0.05)
                for clients in ((1, 16) if quick else (1, 16, 64)):
                    latencies: list[float] = []
                    lock = threading.Lock()
                    end = time.time() + seconds

                    def client(t: int) -> None:
                        node, mine, i = group[t % nodes], [], 0
                        while time.time() < end:
                            begin = time.perf_counter()
                            node.submit([commands.Envelope(f"{t}-{i}-{clients}",
                                                           commands.Put("bench", f"{t}-{i}", VALUE))], 10)
                            mine.append((time.perf_counter() - begin) * 1000)
                            i += 1
                        with lock:
                            latencies.extend(mine)

                    threads = [threading.Thread(target=client, args=(t,)) for t in range(clients)]
                    for th in threads:
                        th.start()
                    for th in threads:
                        th.join()
                    row = {"bench": "submit-inprocess", "nodes": nodes, "fsync": fsync, "clients": clients,
                           **_summary(latencies, seconds, 0)}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
                for node in group:
                    node.stop()
                    node.machine.close()
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| bench | nodes | fsync | clients | ops/s | p50 ms | p99 ms | errors | elections |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['bench']} | {r['nodes']} | {'on' if r['fsync'] else 'off'} | {r['clients']} | "
                     f"{r['ops_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} | {r.get('elections', '-')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measurement time per row")
    parser.add_argument("--quick", action="store_true", help="1 and 16 clients only")
    parser.add_argument("--inprocess", action="store_true", help="measure ReplicatedNode.submit without gRPC")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    rows = run_inprocess(args.seconds, args.quick) if args.inprocess else run(args.seconds, args.quick)
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()

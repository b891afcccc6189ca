"""What TLS and a bearer token cost: Put and Get throughput and server CPU per request, secure vs insecure.

    python -m benchmarks.bench_security [--seconds 3] [--rounds 3] [--clients 16] [--json out.json]

Two single-node clusters (real `vaultd serve` processes, fsync off so the request path dominates) run side by
side: one as `serve` runs by default (TLS, root token file; every call carries `authorization: Bearer`), one
with --insecure-plaintext --insecure-no-auth. Each round measures every workload on both, in alternating
order, with closed-loop clients in separate processes (benchmarks.bench_replication.measure, which reuses its
channels, as real clients do: the handshake is paid once per connection, not per request). Server CPU per
request is the node process's user+system time over the window (from /proc) divided by the requests served.
Prints one JSON line per measurement and a table of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from typing import Any

from benchmarks.bench_replication import VALUE, measure
from tests.cluster import Cluster

WORKLOADS = (("put", ""), ("get", "linearizable"), ("get", "local"))


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime, stime


def _one(cluster: Cluster, arm: str, op: str, consistency: str, clients: int, seconds: float) -> dict[str, Any]:
    """One measurement; the node's CPU is sampled at the load window's start and end (measure() blocks until
    its clients report, so it runs on a helper thread while this one samples)."""
    pid = cluster.nodes[0].pid
    assert pid is not None
    start_at = time.time() + 2.0
    result: dict[str, Any] = {}
    load = threading.Thread(target=lambda: result.update(
        measure(cluster, clients, seconds, op, consistency, start_at=start_at)))
    load.start()
    time.sleep(max(start_at - time.time(), 0))
    before = _cpu_seconds(pid)
    time.sleep(seconds)
    cpu = _cpu_seconds(pid) - before
    load.join()
    ops = result["ops"]
    return {"arm": arm, "workload": op + (f"-{consistency}" if consistency else ""), "clients": clients, **result,
            "server_cpu_us_per_op": round(cpu / ops * 1e6) if ops else None}


def run(seconds: float, rounds: int, clients: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vaultd-bench-sec-") as tmp, \
            Cluster(f"{tmp}/secure", 1, fsync=False) as secure, \
            Cluster(f"{tmp}/insecure", 1, fsync=False, secure=False) as insecure:
        arms = {"tls+token": secure, "plaintext/no-auth": insecure}
        for cluster in arms.values():
            cluster.start()
            c = cluster.client()
            for i in range(200):
                c.put("bench", f"seed-{i}", VALUE)
        for r in range(rounds):
            order = list(arms) if r % 2 == 0 else list(reversed(arms))
            for op, consistency in WORKLOADS:
                for arm in order:
                    row = {"round": r, **_one(arms[arm], arm, op, consistency, clients, seconds)}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| workload | ops/s plaintext / TLS+token (medians) | throughput cost | server CPU us/op plaintext / "
           "TLS+token | CPU cost |", "|---|---|---|---|---|"]
    for workload in dict.fromkeys(r["workload"] for r in rows):
        def med(arm: str, key: str) -> float:
            return statistics.median(r[key] for r in rows if r["workload"] == workload and r["arm"] == arm)
        ops_p, ops_s = med("plaintext/no-auth", "ops_per_s"), med("tls+token", "ops_per_s")
        cpu_p, cpu_s = med("plaintext/no-auth", "server_cpu_us_per_op"), med("tls+token", "server_cpu_us_per_op")
        out.append(f"| {workload} | {ops_p:.0f} / {ops_s:.0f} | {100 * (1 - ops_s / ops_p):.1f}% | "
                   f"{cpu_p:.0f} / {cpu_s:.0f} | {100 * (cpu_s / cpu_p - 1):+.1f}% |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--json", help="also write every row to this file")
    args = parser.parse_args()
    rows = run(args.seconds, args.rounds, args.clients)
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()

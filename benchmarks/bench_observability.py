"""Throughput cost of metrics and access statistics: the same node served with observability on and off.

    python -m benchmarks.bench_observability [--seconds 3] [--rounds 8] [--clients 16] [--quick]
        [--workload put|get-local|get-linearizable ...] [--on rpc-metrics|core-metrics|stats|scrape ...]
        [--json out.json]

One process runs a real single-node vaultd (StateMachine on SQLite, ReplicatedNode with pysyncobj, the gRPC
server from vaultd.api.build_server); clients run in separate processes (benchmarks.bench_replication's
load generator) so their GIL is not the one measured. The "off" arm has no metrics and no statistics:

- rpc-metrics: RpcMetrics wrapping every RPC (grpc_server_*, request context, slow-request log);
- core-metrics: the histograms and counters the API and replication layers update per request or per log
  entry (CORE_METRICS: store latencies, batch sizes, proposals, read barriers). serve has no switch for them;
  the "off" arm swaps them for a do-nothing stand-in;
- stats: AccessStats recording every key access (flushed to its own SQLite file each second);
- scrape: NodeCollector registered and /metrics scraped every second (15x the usual rate) by a separate
  process, as Prometheus is, so the node pays only for serving the scrape.

`--on PART` (repeatable) puts only those parts in the "on" arm, to locate a cost; the default is all four.
fsync is off so that the request path, not the disk, is the bottleneck, which makes the relative cost of
observability as large as it gets.

Why the statistics look the way they do: on this 2-core machine single runs of one arm differ by 5-10%
(the same order as the effect), so a verdict needs many rounds. Each round runs both arms back to back, in
alternating order (off/on, then on/off), and its cost is that pair's difference; the row reports the mean
over rounds with a bootstrap 95% interval, which says whether the goal is met or just not refuted. Besides
throughput, the server's CPU time per request is taken inside the load window only (client start-up and
idle seconds excluded). Under this load the server is GIL-bound (about one core of Python), so CPU per
request mostly mirrors throughput; it differs where the server has idle time (linearizable reads wait on
the Raft round trip).

Finally each part of the "on" arm is timed in isolation (RpcMetrics per RPC, AccessStats.record(), a flush,
a scrape). These are lower bounds that attribute the cost, not predictions: inside a busy server the same
code runs slower than in a hot loop.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any

import grpc
from prometheus_client import REGISTRY, generate_latest

from benchmarks.bench_replication import VALUE, measure
from tests.cluster import free_port
from vaultd.api.server import build_server
from vaultd.client import VaultClient
from vaultd.config import NodeConfig
from vaultd.observability import NodeCollector, RpcMetrics, metrics, start_http_server
from vaultd.replication import ReplicatedNode
from vaultd.store.machine import StateMachine
from vaultd.store.results import Limits
from vaultd.store.stats import AccessStats
from vaultd.v1 import vault_pb2

WORKLOADS = (("put", ""), ("get", "local"), ("get", "linearizable"))
PARTS = frozenset({"rpc-metrics", "core-metrics", "stats", "scrape"})
# What the API and replication layers update per request or per log entry. serve cannot switch these off;
# the "off" arm swaps them for a stand-in that does nothing, so that "on vs off" is all metrics.
CORE_METRICS = ("store_get_seconds", "store_scan_seconds", "store_commit_seconds", "store_apply_seconds",
                "raft_apply_seconds", "raft_batch_size", "raft_proposals_committed_total",
                "raft_read_barriers_total", "raft_read_barrier_seconds", "raft_journal_fsync_seconds")


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


class _NoMetric:
    """Accepts every update the core metrics get, and does nothing."""

    def labels(self, *_labels: str) -> _NoMetric:
        return self

    def observe(self, *_args: float) -> None:
        pass

    inc = dec = set = observe


@contextlib.contextmanager
def _core_metrics_off() -> Iterator[None]:
    saved = {name: getattr(metrics, name) for name in CORE_METRICS}
    for name in saved:
        setattr(metrics, name, _NoMetric())
    try:
        yield
    finally:
        for name, metric in saved.items():
            setattr(metrics, name, metric)


def _scrape_every_second(port: int, first: ProcessEvent, stop: ProcessEvent) -> None:
    """In a process of its own, as Prometheus is: only the serving side of a scrape is charged to the node."""
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            resp.read()
        first.set()
        if stop.wait(1.0):
            return


@contextlib.contextmanager
def serving(cfg: NodeConfig, node: Any, machine: Any, parts: frozenset[str]) -> Iterator[None]:
    """The gRPC server with the given observability parts (PARTS) for one run."""
    core_off = _core_metrics_off() if "core-metrics" not in parts else contextlib.nullcontext()
    with core_off, _server(cfg, node, machine, parts):
        yield


@contextlib.contextmanager
def _server(cfg: NodeConfig, node: Any, machine: Any, parts: frozenset[str]) -> Iterator[None]:
    stats = AccessStats(cfg.stats_path) if "stats" in parts else None
    wrappers = [RpcMetrics()] if "rpc-metrics" in parts else []
    server = build_server(node=node, machine=machine, stats=stats, cfg=cfg, wrappers=wrappers)
    server.start()
    collector = http = scraper = None
    stop: ProcessEvent | None = None
    try:
        if "scrape" in parts:
            collector = NodeCollector(node, machine, db_path=cfg.db_path, node_id=cfg.node_id).register(REGISTRY)
            http = start_http_server("127.0.0.1:0", node)
            spawn = multiprocessing.get_context("spawn")
            first, stop = spawn.Event(), spawn.Event()
            scraper = spawn.Process(target=_scrape_every_second, args=(http.port, first, stop), daemon=True)
            scraper.start()
            if not first.wait(30):
                raise RuntimeError("the scraper process did not scrape: the measurement is void")
        yield
        if scraper is not None and not scraper.is_alive():
            raise RuntimeError("the scraper process died during the run: the measurement is void")
    finally:
        if scraper is not None and stop is not None:
            stop.set()
            scraper.join(timeout=10)
            if scraper.is_alive():
                scraper.kill()
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
                runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
                for r in range(rounds):
                    for arm in (("off", "on") if r % 2 == 0 else ("on", "off")):
                        with serving(cfg, node, machine, on_parts if arm == "on" else frozenset()):
                            res = _measure_with_cpu(target, clients, seconds, op, consistency)
                        if res["errors"]:
                            raise RuntimeError(f"{res['errors']} requests failed: the measurement is void")
                        runs[arm].append(res)
                        print(json.dumps({"op": op, "consistency": consistency, "arm": arm, **res}), flush=True)
                rows.append(_compare(f"{op}{'-' + consistency if consistency else ''}", clients, runs))
            costs = micro(node, machine, cfg, rounds)
        finally:
            node.stop()
            machine.close()
    return rows, costs


def _measure_with_cpu(target: _InProcessTarget, clients: int, seconds: float, op: str,
                      consistency: str) -> dict[str, Any]:
    """bench_replication.measure() plus this process's (the server's) CPU time inside the load window only:
    the client processes' start-up and the idle seconds around the window are left out. The kernel's share is
    reported too: about a third here, most of it threads handing the GIL to each other."""
    start_at = time.time() + 2.0
    marks: list[tuple[float, float]] = []

    def sample() -> None:
        for at in (start_at, start_at + seconds):
            time.sleep(max(0.0, at - time.time()))
            times = os.times()
            marks.append((times.user, times.system))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    res = measure(target, clients, seconds, op, consistency, start_at=start_at)
    sampler.join(timeout=30)
    if len(marks) != 2 or not res["ops"]:
        raise RuntimeError("the load window was not sampled: the measurement is void")
    user, system = marks[1][0] - marks[0][0], marks[1][1] - marks[0][1]
    return {**res, "server_cpu_us_per_op": round((user + system) / res["ops"] * 1e6, 1),
            "server_sys_us_per_op": round(system / res["ops"] * 1e6, 1)}


def _paired_costs(runs: dict[str, list[dict[str, Any]]], field: str, higher_is_better: bool) -> list[float]:
    """Cost in percent of each round's adjacent on/off pair."""
    costs = []
    for off, on in zip(runs["off"], runs["on"]):
        a, b = off[field], on[field]
        costs.append(100 * ((a - b) / a if higher_is_better else (b - a) / a))
    return costs


def _mean_ci(values: list[float], resamples: int = 5000) -> tuple[float, float, float]:
    """Mean and a bootstrap 95% interval of the mean (fixed seed: the same rounds give the same figures).

    The mean, not the median: rounds alternate the order of the arms (off/on, on/off, ...), so over an even
    number of rounds a steady drift (the database grows with every put) adds as much to the "off" arm of
    one pair as it takes from the next, and cancels in the mean; a median keeps whichever order dominates."""
    rng = random.Random(0)
    means = sorted(statistics.fmean(rng.choices(values, k=len(values))) for _ in range(resamples))
    return statistics.fmean(values), means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def _compare(bench: str, clients: int, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    row: dict[str, Any] = {"bench": bench, "clients": clients, "rounds": len(runs["on"])}
    for name, field, higher_is_better in (("throughput", "ops_per_s", True), ("cpu", "server_cpu_us_per_op", False)):
        mean, lo, hi = _mean_ci(_paired_costs(runs, field, higher_is_better))
        row[f"{name}_off"] = statistics.median(r[field] for r in runs["off"])
        row[f"{name}_on"] = statistics.median(r[field] for r in runs["on"])
        row[f"{name}_cost_percent"] = round(mean, 1)
        row[f"{name}_cost_ci95"] = [round(lo, 1), round(hi, 1)]
    return row


class _LiveCallContext:
    """Answers the ServicerContext calls RpcMetrics makes the way a live, successful RPC does."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def code(self) -> None:
        return None

    def is_active(self) -> bool:
        return True

    def time_remaining(self) -> float:
        return 10.0


def _rpc_metrics_seconds(calls: int) -> float:
    """Seconds per RPC that RpcMetrics adds around a do-nothing handler, minus calling that handler directly."""
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    wrapped = RpcMetrics()("/vaultd.v1.VaultService/Get", handler).unary_unary
    request, context = vault_pb2.GetRequest(vault="v", key="k"), _LiveCallContext()
    start = time.perf_counter()
    for _ in range(calls):
        handler.unary_unary(request, context)
    bare = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(calls):
        wrapped(request, context)
    return (time.perf_counter() - start - bare) / calls


def micro(node: Any, machine: Any, cfg: NodeConfig, rounds: int) -> dict[str, float]:
    """Per-operation costs that add up to the "on" arm, measured in isolation (less noisy than throughput)."""
    rpc_metrics_s = statistics.median(_rpc_metrics_seconds(50_000) for _ in range(rounds))
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
    return {"rpc_metrics_us_per_rpc": round(rpc_metrics_s * 1e6, 2),
            "access_stats_us_per_record": round(record_s * 1e6, 2),
            "stats_flush_ms": round(flush_s * 1e3, 2), "scrape_ms": round(statistics.median(scrapes) * 1e3, 2)}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| workload | clients | rounds | ops/s off / on (medians) | throughput cost (95% CI) "
             "| server CPU us/op off / on (medians) | CPU cost (95% CI) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['bench']} | {r['clients']} | {r['rounds']} | {r['throughput_off']:.0f} / "
                     f"{r['throughput_on']:.0f} | {r['throughput_cost_percent']}% {r['throughput_cost_ci95']} | "
                     f"{r['cpu_off']:.0f} / {r['cpu_on']:.0f} | {r['cpu_cost_percent']}% {r['cpu_cost_ci95']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measurement time per arm and round")
    parser.add_argument("--rounds", type=int, default=8, help="off/on pairs per workload (mean of the pairs reported)")
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
    print(f"in isolation (lower bounds): per RPC: RpcMetrics {costs['rpc_metrics_us_per_rpc']} us, access stats record "
          f"{costs['access_stats_us_per_record']} us; per second: statistics flush {costs['stats_flush_ms']} ms, "
          f"/metrics scrape {costs['scrape_ms']} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "per_operation": costs}, f, indent=2)


if __name__ == "__main__":
    main()

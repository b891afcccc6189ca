"""State machine benchmark: `python -m benchmarks.bench_store [--keys N] [--value-size B]`.

A vault of 10,000 keys with 1 KiB values (the issue's setting) on a real SQLite file. Measures apply
throughput (one command per log entry, and batches of 100 commands per entry = per SQLite transaction, both
through apply_entry so decoding and request-id bookkeeping are included), point gets, 100-key prefix scans,
access-statistics recording and the stats query, plus snapshot, state_hash and export of the whole vault.

Prints a Markdown table with wall-clock throughput and the process CPU time per operation: on a shared
machine the wall figure moves with the load, the CPU figure much less.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections.abc import Callable, Sequence

from vaultd.store import AccessStats, StateMachine, combine_stats
from vaultd.store import commands as c

Row = tuple[str, str, str, str]


def _pct(lat: Sequence[float], q: float) -> float:
    return sorted(lat)[min(len(lat) - 1, int(q * len(lat)))] * 1e6


def _measure(name: str, unit: str, calls: Sequence[Callable[[], object]], ops_per_call: int = 1) -> Row:
    lat = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for call in calls:
        t0 = time.perf_counter()
        call()
        lat.append(time.perf_counter() - t0)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    ops = len(calls) * ops_per_call
    return (name, f"{ops / wall:,.0f} {unit}/s", f"{cpu / ops * 1e6:,.1f} µs",
            f"p50 {_pct(lat, .5):,.0f} µs, p99 {_pct(lat, .99):,.0f} µs per call")


def _once(name: str, fn: Callable[[], str]) -> Row:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    note = fn()
    return (name, f"{time.perf_counter() - wall0:.3f} s", f"{(time.process_time() - cpu0) * 1e3:,.0f} ms", note)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--value-size", type=int, default=1024)
    args = parser.parse_args(argv)
    rng = random.Random(1)
    rows: list[Row] = []
    keys = [f"k{i:05}" for i in range(args.keys)]
    value = os.urandom(args.value_size)
    with tempfile.TemporaryDirectory(prefix="vaultd-bench-") as tmp:
        machine = StateMachine(os.path.join(tmp, "state.db"))
        state = {"index": 0}

        def applier(commands: list[c.Command], tag: str) -> Callable[[], object]:
            payload = c.encode_batch(c.Batch(time.time_ns(), tuple(
                c.Envelope(f"{tag}-{i}", cmd) for i, cmd in enumerate(commands))))

            def call() -> object:
                state["index"] += 1
                return machine.apply_entry(state["index"], 1, payload)
            return call

        rows.append(_measure("apply: batches of 100 puts of new keys", "puts", [
            applier([c.Put("bench", k, value) for k in keys[i:i + 100]], f"fill{i}")
            for i in range(0, len(keys), 100)], 100))
        rows.append(_measure("apply: batches of 100 updates", "puts", [
            applier([c.Put("bench", rng.choice(keys), value) for _ in range(100)], f"upd{i}") for i in range(50)], 100))
        rows.append(_measure("apply: one put per entry", "puts", [
            applier([c.Put("bench", rng.choice(keys), value)], f"one{i}") for i in range(3000)]))
        rows.append(_measure("apply: one 10-op txn per entry", "txns", [
            applier([c.Txn("bench", tuple(c.TxnPut(rng.choice(keys), value) for _ in range(10)))], f"txn{i}")
            for i in range(500)]))
        rows.append(_measure("apply: batches of 100 no-op barriers", "noops", [
            applier([c.Noop() for _ in range(100)], f"noop{i}") for i in range(50)], 100))

        reader = machine.reader()
        rows.append(_measure("read: point get", "gets", [
            (lambda k=rng.choice(keys): reader.get("bench", k)) for _ in range(20_000)]))
        prefixes = sorted({k[:4] for k in keys})            # "k012" -> k01200..k01299: 100 keys
        rows.append(_measure("read: 100-key prefix scan", "scans", [
            (lambda p=rng.choice(prefixes): reader.scan("bench", p, 100)) for _ in range(2_000)]))
        rows.append(_measure("read: 100-key prefix scan, keys only", "scans", [
            (lambda p=rng.choice(prefixes): reader.scan("bench", p, 100, keys_only=True)) for _ in range(2_000)]))
        rows.append(_measure("read: count(prefix) over 100 keys", "counts", [
            (lambda p=rng.choice(prefixes): reader.count("bench", p)) for _ in range(5_000)]))

        stats = AccessStats(os.path.join(tmp, "stats.db"))
        rows.append(_measure("stats: record()", "records", [
            (lambda k=rng.choice(keys): stats.record("bench", k, "get", 0.0001)) for _ in range(100_000)]))
        stats.flush()
        rows.append(_measure("stats: local_stats + combine_stats (10k keys accessed)", "queries", [
            lambda: combine_stats(reader.get_vault("bench"), [stats.local_stats("bench")]) for _ in range(50)]))
        stats.close()

        def snapshot() -> str:
            return f"{machine.snapshot(os.path.join(tmp, 'snap')).size / 1e6:.1f} MB file"

        def restore() -> str:
            other = StateMachine(os.path.join(tmp, "restored.db"))
            other.restore(os.path.join(tmp, "snap"))
            other.close()
            return "verify checksum + integrity_check + install"

        def export() -> str:
            return f"{sum(len(chunk) for chunk in reader.export('bench')) / 1e6:.1f} MB JSON"

        rows.append(_once("copy_vault (all keys, one entry)",
                          lambda: str(applier([c.CopyVault("bench", "copy")], "copy")()[0].value)))
        rows.append(_once("delete_vault (all keys, one entry)",
                          lambda: str(applier([c.DeleteVault("copy")], "delete")()[0].value)))
        rows.append(_once("snapshot (whole database)", snapshot))
        rows.append(_once("restore into an empty node", restore))
        rows.append(_once("state_hash", lambda: machine.state_hash()[:0]))
        rows.append(_once("export the whole vault", export))
        machine.close()

    print(f"vaultd.store benchmark: {args.keys:,} keys x {args.value_size} B values, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| operation | wall throughput / time | CPU per op / total | latency / notes |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

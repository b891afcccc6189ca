"""Node-local access statistics: buffering, background flush, retention, and combining across nodes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import apsw
import pytest

from vaultd.store import AccessStats, combine_stats
from vaultd.store.results import VaultInfo
from vaultd.store.stats import BUCKET_NS, DAY_NS, KeyAccess, LocalAccessStats


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000 * 1_000_000_000

    def __call__(self) -> int:
        return self.now


def _rows(path: Path) -> int:
    conn = apsw.Connection(str(path))
    try:
        return conn.execute("SELECT coalesce(sum(count), 0) FROM access").get
    finally:
        conn.close()


def test_local_stats_counts_and_top_keys(tmp_path: Path) -> None:
    clock = Clock()
    stats = AccessStats(str(tmp_path / "stats.db"), clock=clock)
    try:
        for _ in range(5):
            stats.record("app", "hot", "get", 0.001)
        stats.record("app", "warm", "put", 0.002)
        stats.record("app", "warm", "get", 0.002)
        stats.record("app", "", "scan", 0.003)
        stats.record("other", "hot", "get", 0.001)
        clock.now += 5 * 1_000_000_000
        stats.record("app", "cold", "delete", 0.001)
        local = stats.local_stats("app", top_n=2)
        assert local.access_count_24h == 9
        assert local.last_accessed == clock.now
        assert local.top_keys == (KeyAccess("hot", 5, clock.now - 5 * 1_000_000_000),
                                  KeyAccess("warm", 2, clock.now - 5 * 1_000_000_000))
        assert stats.local_stats("never").access_count_24h == 0
    finally:
        stats.close()


def test_background_thread_flushes_without_being_asked(tmp_path: Path) -> None:
    stats = AccessStats(str(tmp_path / "stats.db"), flush_interval=0.05)
    try:
        stats.record("app", "k", "get", 0.0)
        deadline = time.monotonic() + 10
        while _rows(tmp_path / "stats.db") < 1:
            assert time.monotonic() < deadline, "no background flush within 10 s"
            time.sleep(0.02)
    finally:
        stats.close()


def test_close_flushes_and_reopen_keeps_figures(tmp_path: Path) -> None:
    clock = Clock()
    stats = AccessStats(str(tmp_path / "stats.db"), flush_interval=3600, clock=clock)
    stats.record("app", "k", "get", 0.0)
    stats.close()
    assert _rows(tmp_path / "stats.db") == 1
    again = AccessStats(str(tmp_path / "stats.db"), clock=clock)
    try:
        again.record("app", "k", "get", 0.0)
        assert again.local_stats("app").top_keys == (KeyAccess("k", 2, clock.now),)
    finally:
        again.close()


def test_flush_keeps_any_key_text_and_exact_figures(tmp_path: Path) -> None:
    """Key text of any kind and 64-bit figures come out of a flush unchanged; a later flush merges."""
    clock = Clock()
    clock.now = 2**62 + 12_345                     # ns timestamps near the top of SQLite's integer range
    stats = AccessStats(str(tmp_path / "stats.db"), flush_interval=3600, clock=clock)
    keys = ['quote"and\\back', "ünïcødé/🔑", "tab\tnew\nline", "x" * 1024, "[1, 2]"]
    try:
        for n, key in enumerate(keys, start=1):
            for _ in range(n):
                stats.record("app", key, "get", 0.25)
        stats.flush()
        stats.record("app", keys[0], "put", 0.25)   # a second flush merges into the rows on disk
        stats.flush()
        conn = apsw.Connection(str(tmp_path / "stats.db"))
        try:
            rows = conn.execute("SELECT key, op, bucket, count, duration_ns, last_ns FROM access "
                                "WHERE vault = 'app' ORDER BY key, op").fetchall()
        finally:
            conn.close()
        bucket = clock.now // BUCKET_NS
        expected = sorted([(key, "get", bucket, n, n * 250_000_000, clock.now) for n, key in enumerate(keys, 1)]
                          + [(keys[0], "put", bucket, 1, 250_000_000, clock.now)])
        assert rows == expected
        assert stats.local_stats("app").access_count_24h == sum(range(1, len(keys) + 1)) + 1
    finally:
        stats.close()


def test_retention_drops_old_buckets(tmp_path: Path) -> None:
    clock = Clock()
    stats = AccessStats(str(tmp_path / "stats.db"), flush_interval=3600, clock=clock)
    try:
        stats.record("app", "old", "get", 0.0)
        stats.flush()
        clock.now += DAY_NS + 2 * BUCKET_NS
        stats.record("app", "new", "get", 0.0)
        local = stats.local_stats("app")
        assert [k.key for k in local.top_keys] == ["new"] and local.access_count_24h == 1
        assert _rows(tmp_path / "stats.db") == 1          # pruned from disk, not just filtered
    finally:
        stats.close()


def test_recording_from_many_threads_loses_nothing(tmp_path: Path) -> None:
    stats = AccessStats(str(tmp_path / "stats.db"), flush_interval=0.01)
    try:
        def hammer(n: int) -> None:
            for i in range(2000):
                stats.record("app", f"k{i % 7}", "get", 0.0001)

        threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        local = stats.local_stats("app")
        assert local.access_count_24h == 8000
        assert sum(k.access_count for k in local.top_keys) == 8000
    finally:
        stats.close()


def test_combine_stats_sums_nodes_and_takes_the_global_top() -> None:
    info = VaultInfo("app", "", "", (), 1, 2, key_count=4, total_bytes=100, total_key_bytes=10)
    node_a = LocalAccessStats("app", 50, 30, (KeyAccess("a", 20, 50), KeyAccess("b", 10, 40)))
    node_b = LocalAccessStats("app", 70, 25, (KeyAccess("c", 15, 70), KeyAccess("b", 10, 60)))
    combined = combine_stats(info, [node_a, node_b], top_n=2)
    assert (combined.key_count, combined.total_bytes, combined.avg_key_size, combined.avg_value_size) == (
        4, 100, 2.5, 25.0)
    assert (combined.last_accessed, combined.access_count_24h) == (70, 55)
    assert combined.top_keys == (KeyAccess("a", 20, 50), KeyAccess("b", 20, 60))   # ties by key
    empty = combine_stats(VaultInfo("e", "", "", (), 1, 1, 0, 0, 0), [])
    assert (empty.avg_key_size, empty.avg_value_size, empty.top_keys) == (0.0, 0.0, ())


def test_close_survives_a_broken_statistics_file(tmp_path: Path) -> None:
    path = tmp_path / "stats.db"
    stats = AccessStats(str(path), flush_interval=3600)
    stats.record("app", "k", "get", 0.001)
    other = apsw.Connection(str(path))
    other.execute("DROP TABLE access")      # the final flush now fails inside SQLite
    other.close()
    stats.close()                           # must not raise: serve would skip closing the state machine
    with pytest.raises(apsw.ConnectionClosedError):
        stats._conn.execute("SELECT 1")

"""Node-local access statistics (NOT replicated): who read/wrote what, when, how often.

Reads are the hot path, so record() only updates an in-memory aggregate under a lock (per vault, key, op and
one-minute bucket); a background thread flushes it into its own SQLite file about once a second and prunes
buckets older than the retention (24 h). Aggregating per minute bounds the table by distinct keys touched per
minute, not by request rate. This module may read the wall clock: nothing here feeds the replicated state.

Figures from several nodes are summed by the API (combine_stats), which is why local_stats() returns more
than the final top 10: a key can be 11th on every node and first overall.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import apsw

from vaultd.store.results import VaultInfo

BUCKET_NS = 60 * 1_000_000_000
DAY_NS = 24 * 3600 * 1_000_000_000
_MAX_BUFFERED = 50_000      # distinct (vault, key, op, bucket) rows buffered before an early flush
_PRUNE_EVERY_NS = 60 * 1_000_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS access (
    vault TEXT NOT NULL,
    key TEXT NOT NULL,           -- '' for vault-level operations (scans, exports)
    op TEXT NOT NULL,
    bucket INTEGER NOT NULL,     -- wall-clock minute
    count INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    last_ns INTEGER NOT NULL,
    PRIMARY KEY (vault, key, op, bucket)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS access_by_bucket ON access (bucket);
"""


@dataclass(frozen=True)
class KeyAccess:
    key: str
    access_count: int
    last_accessed: int      # ns since the epoch


@dataclass(frozen=True)
class LocalAccessStats:
    vault: str
    last_accessed: int      # ns since the epoch; 0 = never within the retention
    access_count_24h: int
    top_keys: tuple[KeyAccess, ...]


@dataclass(frozen=True)
class VaultStats:
    name: str
    key_count: int
    total_bytes: int
    avg_key_size: float
    avg_value_size: float
    last_accessed: int
    access_count_24h: int
    top_keys: tuple[KeyAccess, ...]


class AccessStats:
    def __init__(self, path: str, flush_interval: float = 1.0, retention_ns: int = DAY_NS,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self._clock = clock
        self._retention_ns = retention_ns
        self._flush_interval = flush_interval
        self._buffer: dict[tuple[str, str, str, int], list[int]] = {}
        self._buffer_lock = threading.Lock()
        self._db_lock = threading.Lock()
        self._conn = apsw.Connection(path)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=OFF")  # losing the last second of statistics on a crash is fine
        self._conn.execute(_SCHEMA)
        self._last_prune = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="vaultd-access-stats", daemon=True)
        self._thread.start()

    def record(self, vault: str, key: str, op: str, duration_s: float) -> None:
        """Cheap and thread-safe: one dict update under a lock. key "" for vault-level operations."""
        now = self._clock()
        slot = (vault, key, op, now // BUCKET_NS)
        duration_ns = int(duration_s * 1e9)
        with self._buffer_lock:
            agg = self._buffer.get(slot)
            if agg is None:
                self._buffer[slot] = [1, duration_ns, now]
                if len(self._buffer) >= _MAX_BUFFERED:
                    self._wake.set()
            else:
                agg[0] += 1
                agg[1] += duration_ns
                if now > agg[2]:  # the clock may step back
                    agg[2] = now

    def flush(self) -> None:
        """Write the buffered aggregate (and prune expired buckets about once a minute)."""
        # Swap and write under the database lock: a local_stats() that flushes after a concurrent background
        # flush swapped the buffer must wait for that write, or it would miss those records.
        with self._db_lock:
            with self._buffer_lock:
                pending, self._buffer = self._buffer, {}
            with self._conn:
                self._conn.executemany(
                    "INSERT INTO access (vault, key, op, bucket, count, duration_ns, last_ns) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (vault, key, op, bucket) DO UPDATE SET "
                    "count = count + excluded.count, duration_ns = duration_ns + excluded.duration_ns, "
                    "last_ns = max(last_ns, excluded.last_ns)",
                    [(*slot, *agg) for slot, agg in pending.items()])
                now = self._clock()
                if now - self._last_prune >= _PRUNE_EVERY_NS:
                    self._conn.execute("DELETE FROM access WHERE bucket < ?", (self._oldest_bucket(now),))
                    self._last_prune = now

    def local_stats(self, vault: str, top_n: int = 100) -> LocalAccessStats:
        """This node's figures for the retention window, including what is still buffered."""
        self.flush()
        oldest = self._oldest_bucket(self._clock())
        with self._db_lock:
            last, total = self._conn.execute(
                "SELECT coalesce(max(last_ns), 0), coalesce(sum(count), 0) FROM access "
                "WHERE vault = ? AND bucket >= ?", (vault, oldest)).fetchone()
            top = self._conn.execute(
                "SELECT key, sum(count) AS n, max(last_ns) FROM access WHERE vault = ? AND bucket >= ? "
                "AND key != '' GROUP BY key ORDER BY n DESC, key LIMIT ?", (vault, oldest, top_n)).fetchall()
        return LocalAccessStats(vault, last, total, tuple(KeyAccess(k, n, t) for k, n, t in top))

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=10)
        try:
            self.flush()
        except apsw.Error:
            pass  # best effort, like the background flush: a broken statistics file must not fail a shutdown
        finally:
            with self._db_lock:
                self._conn.close()

    def _oldest_bucket(self, now: int) -> int:
        return (now - self._retention_ns) // BUCKET_NS

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            if not self._stopping:
                try:
                    self.flush()
                except apsw.Error:
                    pass  # node-local and best effort: statistics must never take the node down


def combine_stats(info: VaultInfo, parts: Iterable[LocalAccessStats], top_n: int = 10) -> VaultStats:
    """Replicated sizes from the vault record plus access figures summed over the nodes that answered."""
    counts: dict[str, int] = {}
    lasts: dict[str, int] = {}
    last_accessed = total = 0
    for part in parts:
        last_accessed = max(last_accessed, part.last_accessed)
        total += part.access_count_24h
        for ka in part.top_keys:
            counts[ka.key] = counts.get(ka.key, 0) + ka.access_count
            lasts[ka.key] = max(lasts.get(ka.key, 0), ka.last_accessed)
    top = sorted(counts, key=lambda k: (-counts[k], k))[:top_n]
    n = info.key_count
    return VaultStats(info.name, n, info.total_bytes, info.total_key_bytes / n if n else 0.0,
                      info.total_bytes / n if n else 0.0, last_accessed, total,
                      tuple(KeyAccess(k, counts[k], lasts[k]) for k in top))

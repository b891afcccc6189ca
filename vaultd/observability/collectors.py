"""Gauges computed at scrape time from in-memory state: store totals, file sizes, Raft status, readiness.

Why a custom collector instead of gauges set by the other layers: the values already live in memory
(StateMachine.totals(), ReplicatedNode.status()) and reading them once per scrape costs nothing on the
write path. The only database query is the "fullest vaults" top N, cached for `top_refresh_seconds` so a
scrape storm cannot turn into table work, and its label cardinality is bounded by `top_n`.

Threading: collect() runs on the HTTP server's request threads; status()/totals() are thread-safe reads
of in-memory state; the top-N query uses the calling thread's own read connection (machine.reader()).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric

from vaultd.observability.health import NodeLike, leader_of, readiness
from vaultd.observability.metrics import collector_errors_total

log = logging.getLogger("vaultd.observability")

DEFAULT_TOP_N = 10
DEFAULT_TOP_REFRESH_SECONDS = 5.0


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


class FullestVaults:
    """Cache of (vault, keys/limit ratio) for the `top_n` vaults closest to the per-vault key limit."""

    def __init__(self, query: Callable[[int], Sequence[tuple[str, float]]], top_n: int,
                 refresh_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._query = query
        self._top_n = top_n
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._value: Sequence[tuple[str, float]] = ()

    def get(self) -> Sequence[tuple[str, float]]:
        with self._lock:
            now = self._clock()
            if now - self._at >= self._refresh_seconds:
                self._value = tuple(self._query(self._top_n))
                self._at = now
            return self._value


def store_fullest_vaults(machine: Any) -> Callable[[int], Sequence[tuple[str, float]]]:
    """Adapter over Reader.fullest_vaults(n) and Reader.limits() -> [(vault, ratio)], highest first."""

    def query(n: int) -> list[tuple[str, float]]:
        reader = machine.reader()
        max_keys = int(reader.limits().max_keys_per_vault)
        if max_keys <= 0:
            return []
        out = []
        for item in reader.fullest_vaults(n):
            name, keys = (item.name, item.key_count) if hasattr(item, "name") else (item[0], item[1])
            out.append((str(name), int(keys) / max_keys))
        return out

    return query


class NodeCollector:
    """Prometheus collector for one node. Register with `register(registry)`; `unregister()` on shutdown."""

    def __init__(self, node: NodeLike | None, machine: Any, db_path: str, node_id: str = "",
                 top_n: int = DEFAULT_TOP_N, top_refresh_seconds: float = DEFAULT_TOP_REFRESH_SECONDS,
                 fullest_query: Callable[[int], Sequence[tuple[str, float]]] | None = None) -> None:
        self.node = node
        self.machine = machine
        self.db_path = db_path
        self.node_id = node_id
        self.fullest = FullestVaults(fullest_query or store_fullest_vaults(machine), top_n, top_refresh_seconds)
        self._registry: CollectorRegistry | None = None

    def register(self, registry: CollectorRegistry) -> NodeCollector:
        registry.register(self)
        self._registry = registry
        return self

    def unregister(self) -> None:
        if self._registry is not None:
            self._registry.unregister(self)
            self._registry = None

    def describe(self) -> list[Metric]:
        # Names are produced dynamically; returning nothing keeps register() from calling collect() early.
        return []

    def collect(self) -> Iterator[Metric]:
        for section in (self._store, self._files, self._raft, self._fullest):
            try:
                yield from list(section())
            except Exception as exc:  # one broken section must not take down the whole scrape
                collector_errors_total.labels(section.__name__.lstrip("_")).inc()
                log.warning("metrics section %s failed: %s", section.__name__.lstrip("_"), type(exc).__name__)

    def _store(self) -> Iterator[Metric]:
        vaults, keys, stored = self.machine.totals()
        yield GaugeMetricFamily("vaultd_vaults", "Vaults in this replica's state machine.", value=vaults)
        yield GaugeMetricFamily("vaultd_keys", "Keys across all vaults in this replica.", value=keys)
        yield GaugeMetricFamily("vaultd_stored_bytes", "Value bytes across all vaults in this replica.",
                                value=stored)

    def _files(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("vaultd_db_size_bytes", "Size of the SQLite database file.",
                                value=_file_size(self.db_path))
        yield GaugeMetricFamily("vaultd_wal_size_bytes", "Size of the SQLite write-ahead log file.",
                                value=_file_size(self.db_path + "-wal"))

    def _raft(self) -> Iterator[Metric]:
        if self.node is None:
            return
        state = readiness(self.node)
        status = self.node.status()
        leader = leader_of(status)
        me = str(getattr(status, "node_id", "") or self.node_id)
        role = str(getattr(status, "role", "") or "")

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        yield gauge("vaultd_ready", "1 when the node has a leader and has caught up (same as /readyz).",
                    1 if state.ready else 0)
        yield gauge("vaultd_raft_is_leader", "1 when this node is the Raft leader.",
                    1 if role == "leader" or getattr(status, "leader_id", "") == me else 0)
        yield gauge("vaultd_raft_has_leader", "1 when this node knows a leader it can reach.", 1 if leader else 0)
        yield gauge("vaultd_raft_term", "Current Raft term.", int(getattr(status, "term", 0) or 0))
        yield gauge("vaultd_raft_commit_index", "Highest log index known committed.",
                    int(getattr(status, "commit_index", 0) or 0))
        yield gauge("vaultd_raft_applied_index", "Highest log index applied to the state machine.",
                    int(getattr(status, "applied_index", 0) or 0))
        yield gauge("vaultd_raft_snapshot_index", "Log index of the latest snapshot.",
                    int(getattr(status, "snapshot_index", 0) or 0))
        yield gauge("vaultd_raft_proposals_pending",
                    "Commands waiting to be proposed or for their result on this node.",
                    int(getattr(status, "pending_commands", 0) or 0))
        reach = GaugeMetricFamily("vaultd_raft_peer_reachable",
                                  "1 when this node has a working connection to the peer.", labels=["peer"])
        members = list(getattr(status, "members", ()) or ())
        for member in members:
            peer = str(getattr(member, "node_id", "") or "")
            if peer and peer != me and not getattr(member, "is_self", False):
                reach.add_metric([peer], 1 if getattr(member, "reachable", False) else 0)
        yield reach
        yield gauge("vaultd_raft_members", "Members in this node's view of the cluster configuration.",
                    len(members))

    def _fullest(self) -> Iterator[Metric]:
        ratio = GaugeMetricFamily(
            "vaultd_vault_key_limit_ratio",
            "Keys / max_keys_per_vault for the vaults closest to the limit (top N only, refreshed every "
            "few seconds).", labels=["vault"])
        for vault, value in self.fullest.get():
            ratio.add_metric([vault], value)
        yield ratio

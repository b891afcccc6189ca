"""GetVaultStats: node-local access statistics summed over every member, sizes from replicated metadata.

Access statistics are deliberately not replicated (recording a read must not cost a log entry), so each
node only knows the accesses it served. The answering node asks every member in the replicated members
table (each registered its gRPC address there) for its local numbers through the internal
ClusterService.GetLocalStats, in parallel with a short deadline, and names the members that did not answer
instead of failing the whole call.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from vaultd.api import convert
from vaultd.store.results import VaultInfo
from vaultd.v1 import cluster_pb2, cluster_pb2_grpc, vault_pb2

PEER_TIMEOUT_SECONDS = 1.0
TOP_KEYS = 10


class StatsFanout:
    def __init__(self, machine: Any, stats: Any, node_id: str) -> None:
        self.machine = machine
        self.stats = stats
        self.node_id = node_id
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="vaultd-stats")
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            channels, self._channels = self._channels, {}
        for channel in channels.values():
            channel.close()

    def local(self, vault: str) -> cluster_pb2.LocalStats:
        """This node's own access statistics for one vault, every accessed key with its count."""
        out = cluster_pb2.LocalStats(node_id=self.node_id)
        if self.stats is None:
            return out
        local = self.stats.local_stats(vault)
        out.access_count_24h = int(local.access_count_24h)
        ts = convert.timestamp(local.last_accessed)
        if ts is not None:
            out.last_accessed.CopyFrom(ts)
        for key in local.keys:
            out.keys.add(key=key.key, access_count=int(key.access_count),
                         last_accessed=convert.timestamp(key.last_accessed))
        return out

    def _channel(self, addr: str) -> grpc.Channel:
        with self._lock:
            channel = self._channels.get(addr)
            if channel is None:
                channel = self._channels[addr] = grpc.insecure_channel(
                    addr, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
            return channel

    def _remote(self, addr: str, vault: str, timeout: float) -> cluster_pb2.LocalStats:
        stub = cluster_pb2_grpc.ClusterServiceStub(self._channel(addr))
        return stub.GetLocalStats(cluster_pb2.GetLocalStatsRequest(name=vault), timeout=timeout)

    def vault_stats(self, info: VaultInfo, context: grpc.ServicerContext) -> vault_pb2.VaultStats:
        remaining = context.time_remaining()
        timeout = PEER_TIMEOUT_SECONDS if remaining is None else max(min(PEER_TIMEOUT_SECONDS, remaining / 2), 0.05)
        members = [m for m in self.machine.reader().members() if m.node_id != self.node_id]
        futures = {m.node_id: self._pool.submit(self._remote, m.grpc_addr, info.name, timeout)
                   for m in members if m.grpc_addr}
        reports = [self.local(info.name)]
        unreachable = sorted(m.node_id for m in members if not m.grpc_addr)
        for node_id, future in futures.items():
            try:
                reports.append(future.result(timeout=timeout + 0.5))
            except Exception:  # noqa: BLE001 - a member that fails to answer is reported, not fatal
                unreachable.append(node_id)
        return merge(info, reports, sorted(unreachable))


def merge(info: VaultInfo, reports: Iterable[cluster_pb2.LocalStats],
          unreachable: list[str]) -> vault_pb2.VaultStats:
    """Sum counts per key across nodes; last_accessed is the latest anywhere; top keys by count, then key."""
    counts: dict[str, int] = {}
    last: dict[str, int] = {}
    total = 0
    latest = 0
    reporting: list[str] = []
    for report in reports:
        reporting.append(report.node_id)
        total += report.access_count_24h
        latest = max(latest, report.last_accessed.ToNanoseconds() if report.HasField("last_accessed") else 0)
        for key in report.keys:
            counts[key.key] = counts.get(key.key, 0) + key.access_count
            if key.HasField("last_accessed"):
                last[key.key] = max(last.get(key.key, 0), key.last_accessed.ToNanoseconds())
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_KEYS]
    key_count = info.key_count
    return vault_pb2.VaultStats(
        name=info.name, key_count=key_count, total_bytes=info.total_bytes,
        avg_key_size=info.total_key_bytes / key_count if key_count else 0.0,
        avg_value_size=info.total_bytes / key_count if key_count else 0.0,
        last_accessed=convert.timestamp(latest), access_count_24h=total,
        top_keys=[vault_pb2.KeyAccess(key=k, access_count=c, last_accessed=convert.timestamp(last.get(k)))
                  for k, c in top],
        unreachable_members=unreachable, reporting_members=sorted(reporting))

"""GetVaultStats: node-local access statistics summed over every member, sizes from replicated metadata.

Access statistics are deliberately not replicated (recording a read must not cost a log entry), so each
node only knows the accesses it served. The answering node asks every member in the replicated members
table (each registered its gRPC address there) for its local numbers through the internal
ClusterService.GetLocalStats, in parallel with a short deadline, and names the members that did not answer
instead of failing the whole call.

Those peer calls go the way a client's would: over TLS verifying the peer's certificate against cfg.tls_ca
(else cfg.tls_client_ca, else the system roots) when this node serves TLS, presenting the node's own
certificate when client certificates are required (mTLS), and carrying the root token as bearer metadata when
authentication is on. A plaintext node (--insecure-plaintext) calls its peers in plaintext.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Sequence
from typing import Any

import grpc

from vaultd import tls
from vaultd.api import convert
from vaultd.api.auth import bearer_metadata
from vaultd.config import NodeConfig
from vaultd.store.results import VaultInfo
from vaultd.store.stats import KeyAccess, LocalAccessStats, combine_stats
from vaultd.v1 import cluster_pb2, cluster_pb2_grpc, vault_pb2

log = logging.getLogger("vaultd.api.stats")

PEER_TIMEOUT_SECONDS = 2.0
TOP_KEYS = 10


class StatsFanout:
    def __init__(self, machine: Any, stats: Any, node_id: str,
                 credentials: grpc.ChannelCredentials | None = None,
                 metadata: Sequence[tuple[str, str]] = ()) -> None:
        self.machine = machine
        self.stats = stats
        self.node_id = node_id
        self._credentials = credentials
        self._metadata = tuple(metadata)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="vaultd-stats")
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, machine: Any, stats: Any, cfg: NodeConfig) -> StatsFanout:
        """Peer-call credentials and metadata from the node's settings (see the module docstring)."""
        credentials = None
        if cfg.tls_enabled:
            mtls = bool(cfg.tls_client_ca)
            credentials = tls.channel_credentials(cfg.tls_ca or cfg.tls_client_ca or None,
                                                  cfg.tls_cert if mtls else None, cfg.tls_key if mtls else None)
        # The root token never crosses the network in plaintext: without TLS, peers see no token and answer
        # UNAUTHENTICATED, so GetVaultStats lists them as unreachable (a WARNING at start says so).
        token = cfg.read_root_token() if cfg.auth_enabled and cfg.tls_enabled else None
        if cfg.auth_enabled and not cfg.tls_enabled:
            log.warning("--insecure-plaintext with authentication: GetVaultStats reports this node's access "
                        "statistics only (the root token is not sent to other nodes without TLS)")
        metadata = bearer_metadata(token) if token else ()
        return cls(machine, stats, cfg.node_id, credentials, metadata)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            channels, self._channels = self._channels, {}
        for channel in channels.values():
            channel.close()

    def local(self, vault: str) -> cluster_pb2.LocalStats:
        """This node's own access statistics for one vault (its most accessed keys, more than the final 10)."""
        out = cluster_pb2.LocalStats(node_id=self.node_id)
        if self.stats is None:
            return out
        local = self.stats.local_stats(vault)
        out.access_count_24h = local.access_count_24h
        if local.last_accessed:
            out.last_accessed.FromNanoseconds(local.last_accessed)
        for key in local.top_keys:
            out.keys.add(key=key.key, access_count=key.access_count, last_accessed=convert.timestamp(key.last_accessed))
        return out

    def _channel(self, addr: str) -> grpc.Channel:
        with self._lock:
            channel = self._channels.get(addr)
            if channel is None:
                options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
                channel = self._channels[addr] = (
                    grpc.secure_channel(addr, self._credentials, options=options) if self._credentials is not None
                    else grpc.insecure_channel(addr, options=options))
            return channel

    def _remote(self, addr: str, vault: str, timeout: float) -> cluster_pb2.LocalStats:
        stub = cluster_pb2_grpc.ClusterServiceStub(self._channel(addr))
        return stub.GetLocalStats(cluster_pb2.GetLocalStatsRequest(name=vault), timeout=timeout,
                                  metadata=self._metadata)

    def vault_stats(self, info: VaultInfo, context: grpc.ServicerContext) -> vault_pb2.VaultStats:
        remaining = context.time_remaining()
        timeout = PEER_TIMEOUT_SECONDS if remaining is None else max(min(PEER_TIMEOUT_SECONDS, remaining / 2), 0.05)
        members = [m for m in self.machine.reader().members() if m.node_id != self.node_id]
        futures = {m.node_id: self._pool.submit(self._remote, m.grpc_addr, info.name, timeout)
                   for m in members if m.grpc_addr}
        reports = [self.local(info.name)]
        unreachable = [m.node_id for m in members if not m.grpc_addr]
        for node_id, future in futures.items():
            try:
                reports.append(future.result(timeout=timeout + 0.5))
            except Exception:  # noqa: BLE001 - a member that fails to answer is reported, not fatal
                unreachable.append(node_id)
        combined = combine_stats(info, (_from_pb(r, info.name) for r in reports), top_n=TOP_KEYS)
        return vault_pb2.VaultStats(
            name=combined.name, key_count=combined.key_count, total_bytes=combined.total_bytes,
            avg_key_size=combined.avg_key_size, avg_value_size=combined.avg_value_size,
            last_accessed=convert.timestamp(combined.last_accessed), access_count_24h=combined.access_count_24h,
            top_keys=[vault_pb2.KeyAccess(key=k.key, access_count=k.access_count,
                                          last_accessed=convert.timestamp(k.last_accessed))
                      for k in combined.top_keys],
            unreachable_members=sorted(unreachable), reporting_members=sorted(r.node_id for r in reports))


def _ns(ts: Any, present: bool) -> int:
    return ts.ToNanoseconds() if present else 0


def _from_pb(report: cluster_pb2.LocalStats, vault: str) -> LocalAccessStats:
    return LocalAccessStats(
        vault, _ns(report.last_accessed, report.HasField("last_accessed")), report.access_count_24h,
        tuple(KeyAccess(k.key, k.access_count, _ns(k.last_accessed, k.HasField("last_accessed")))
              for k in report.keys))

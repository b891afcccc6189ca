"""Store records -> vaultd.v1 messages. Store timestamps are integer nanoseconds since the epoch."""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from vaultd.store.results import Entry, Limits, TxnResult, VaultInfo
from vaultd.v1 import cluster_pb2, vault_pb2


def timestamp(ns: int | None) -> Timestamp | None:
    """None (field left unset) for 0/None: "never" rather than 1970."""
    if not ns:
        return None
    ts = Timestamp()
    ts.FromNanoseconds(int(ns))
    return ts


def vault(info: VaultInfo) -> vault_pb2.Vault:
    return vault_pb2.Vault(name=info.name, description=info.description, owner=info.owner, tags=list(info.tags),
                           created_at=timestamp(info.created_at), updated_at=timestamp(info.updated_at),
                           key_count=info.key_count, total_bytes=info.total_bytes)


def entry(e: Entry) -> vault_pb2.Entry:
    return vault_pb2.Entry(key=e.key, value=e.value, version=e.version, created_at=timestamp(e.created_at),
                           updated_at=timestamp(e.updated_at), revision=e.revision)


def txn_response(result: TxnResult) -> vault_pb2.TxnResponse:
    return vault_pb2.TxnResponse(
        results=[vault_pb2.TxnOpResult(key=r.key, version=r.version, deleted=r.deleted) for r in result.results],
        revision=result.revision)


def limits(lim: Limits) -> cluster_pb2.Limits:
    return cluster_pb2.Limits(max_vaults=lim.max_vaults, max_keys_per_vault=lim.max_keys_per_vault,
                              max_value_size=lim.max_value_size, max_scan_results=lim.max_scan_results)


def member(m: Any) -> cluster_pb2.Member:
    """From the replication layer's member status (or a store MemberRecord): missing fields stay default."""
    return cluster_pb2.Member(node_id=str(m.node_id), raft_addr=str(getattr(m, "raft_addr", "") or ""),
                              grpc_addr=str(getattr(m, "grpc_addr", "") or ""),
                              voter=bool(getattr(m, "voter", True)), reachable=bool(getattr(m, "reachable", False)),
                              match_index=int(getattr(m, "match_index", 0) or 0))

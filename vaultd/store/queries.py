"""Row-to-record conversions and lookups shared by apply (writer connection) and Reader (read connections)."""

from __future__ import annotations

import json
from typing import Any

import apsw

from vaultd.store.errors import VaultNotFound
from vaultd.store.results import Entry, Limits, MemberRecord, VaultInfo

VAULT_COLUMNS = "name, description, owner, tags, created_at, updated_at, key_count, total_bytes, total_key_bytes"
ENTRY_COLUMNS = "key, value, version, created_at, updated_at, revision"
KEYS_ONLY_COLUMNS = "key, x'', version, created_at, updated_at, revision"
MEMBER_COLUMNS = "node_id, raft_addr, grpc_addr, voter"


def vault_from_row(row: tuple[Any, ...]) -> VaultInfo:
    name, description, owner, tags, created_at, updated_at, key_count, total_bytes, total_key_bytes = row
    return VaultInfo(name, description, owner, tuple(json.loads(tags)), created_at, updated_at, key_count,
                     total_bytes, total_key_bytes)


def entry_from_row(row: tuple[Any, ...]) -> Entry:
    key, value, version, created_at, updated_at, revision = row
    return Entry(key, bytes(value), version, created_at, updated_at, revision)


def member_from_row(row: tuple[Any, ...]) -> MemberRecord:
    node_id, raft_addr, grpc_addr, voter = row
    return MemberRecord(node_id, raft_addr, grpc_addr, bool(voter))


def encode_tags(tags: tuple[str, ...]) -> str:
    return json.dumps(list(tags), separators=(",", ":"))


def find_vault(conn: apsw.Connection, name: str) -> VaultInfo | None:
    row = conn.execute(f"SELECT {VAULT_COLUMNS} FROM vaults WHERE name = ?", (name,)).fetchone()
    return vault_from_row(row) if row else None


def require_vault(conn: apsw.Connection, name: str) -> VaultInfo:
    info = find_vault(conn, name)
    if info is None:
        raise VaultNotFound(name)
    return info


def read_limits(conn: apsw.Connection) -> Limits:
    row = conn.execute(
        "SELECT max_vaults, max_keys_per_vault, max_value_size, max_scan_results FROM state").fetchone()
    return Limits(*row)


def read_applied(conn: apsw.Connection) -> tuple[int, int, int]:
    """(applied_index, applied_term, last effective timestamp)."""
    return conn.execute("SELECT applied_index, applied_term, last_ts FROM state").fetchone()


def read_totals(conn: apsw.Connection) -> tuple[int, int, int]:
    """(vaults, keys, value bytes): O(vaults) thanks to the trigger-maintained counters."""
    return conn.execute("SELECT count(*), coalesce(sum(key_count), 0), coalesce(sum(total_bytes), 0) "
                        "FROM vaults").fetchone()

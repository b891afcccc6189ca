"""Row-to-record conversions and lookups shared by apply (writer connection) and Reader (read connections)."""

from __future__ import annotations

import json
from typing import Any

import apsw

from vaultd.store.errors import PolicyNotFound, TokenNotFound, VaultNotFound
from vaultd.store.results import Entry, Limits, MemberRecord, PolicyInfo, PolicyRule, TokenInfo, VaultInfo

VAULT_COLUMNS = "name, description, owner, tags, created_at, updated_at, key_count, total_bytes, total_key_bytes"
ENTRY_COLUMNS = "key, value, version, created_at, updated_at, revision"
KEYS_ONLY_COLUMNS = "key, x'', version, created_at, updated_at, revision"
MEMBER_COLUMNS = "node_id, raft_addr, grpc_addr, voter"
POLICY_COLUMNS = "name, rules, created_at, updated_at"
TOKEN_COLUMNS = "token_id, name, policies, created_at, expires_at, revoked"


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


def encode_rules(rules: tuple[PolicyRule, ...]) -> str:
    return json.dumps([[r.vault_glob, list(r.capabilities)] for r in rules], separators=(",", ":"))


def policy_from_row(row: tuple[Any, ...]) -> PolicyInfo:
    name, rules, created_at, updated_at = row
    return PolicyInfo(name, tuple(PolicyRule(glob, tuple(caps)) for glob, caps in json.loads(rules)), created_at,
                      updated_at)


def token_from_row(row: tuple[Any, ...]) -> TokenInfo:
    token_id, name, policies, created_at, expires_at, revoked = row
    return TokenInfo(token_id, name, tuple(json.loads(policies)), created_at, expires_at, bool(revoked))


def require_policy(conn: apsw.Connection, name: str) -> PolicyInfo:
    row = conn.execute(f"SELECT {POLICY_COLUMNS} FROM policies WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise PolicyNotFound(name)
    return policy_from_row(row)


def require_token(conn: apsw.Connection, token_id: str) -> TokenInfo:
    row = conn.execute(f"SELECT {TOKEN_COLUMNS} FROM tokens WHERE token_id = ?", (token_id,)).fetchone()
    if row is None:
        raise TokenNotFound(token_id)
    return token_from_row(row)

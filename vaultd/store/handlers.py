"""One function per command: validate, check limits and preconditions, write.

Each handler runs inside its own SAVEPOINT of the batch transaction (machine.py): raising a StoreError (or any
exception) rolls the command back completely. Handlers read only the database and the context (log index,
effective timestamp, limits), so every replica computes the same outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import apsw

from vaultd.store import commands as c
from vaultd.store import policies as pol
from vaultd.store.errors import (InvalidArgument, TooManyPolicies, TooManyTokens, TooManyVaults, ValueTooLarge,
                                 VaultExists, VaultFull, VersionMismatch)
from vaultd.store.queries import (MEMBER_COLUMNS, encode_rules, encode_tags, find_vault, member_from_row,
                                  read_limits, require_policy, require_token, require_vault)
from vaultd.store.results import (CopyVaultResult, DeleteResult, DeleteVaultResult, ImportResult, ImportStaged,
                                  Limits, MemberRecord, PolicyInfo, PutResult, TokenInfo, TxnOpResult, TxnResult,
                                  VaultInfo)
from vaultd.store.validation import (MAX_DESCRIPTION_CHARS, MAX_OWNER_CHARS, validate_expected_version, validate_key,
                                     validate_tags, validate_text, validate_value, validate_vault_name)

MAX_TXN_OPS = 1_000
MAX_OPEN_IMPORTS = 64
MAX_ID_CHARS = 128            # node ids
MAX_IMPORT_ID_CHARS = 256     # import ids (the API derives them from request ids)
MAX_ADDR_CHARS = 256
# SetLimits sanity bounds: a limit beyond these is a typo, and 64 MiB values could not travel in one Raft entry.
HARD_LIMITS = Limits(max_vaults=1_000_000, max_keys_per_vault=100_000_000, max_value_size=64 << 20,
                     max_scan_results=100_000)
_INLINE_IMPORT_ID = "inline"   # staging id of a one-entry Import; client import ids are prefixed (see below)


@dataclass
class Ctx:
    conn: apsw.Connection
    index: int          # Raft index of the entry: the revision of every change it makes
    ts: int             # effective timestamp (ns) of the batch
    limits: Limits
    recorded: int = 0   # request outcomes stored so far in this batch


def _one(ctx: Ctx, sql: str, args: tuple[Any, ...] = ()) -> Any:
    row = ctx.conn.execute(sql, args).fetchone()
    return None if row is None else row[0]


def _check_vault_room(ctx: Ctx) -> None:
    if _one(ctx, "SELECT count(*) FROM vaults") >= ctx.limits.max_vaults:
        raise TooManyVaults(ctx.limits.max_vaults)


def _insert_vault(ctx: Ctx, name: str, description: str = "", owner: str = "", tags: tuple[str, ...] = ()) -> None:
    _check_vault_room(ctx)
    ctx.conn.execute("INSERT INTO vaults (name, description, owner, tags, created_at, updated_at) "
                     "VALUES (?, ?, ?, ?, ?, ?)", (name, description, owner, encode_tags(tags), ctx.ts, ctx.ts))


def _key_version(ctx: Ctx, vault: str, key: str) -> int:
    return _one(ctx, "SELECT version FROM keys WHERE vault = ? AND key = ?", (vault, key)) or 0


def _put_key(ctx: Ctx, vault: str, key: str, value: bytes, expected: int | None) -> int:
    """Write one key (creating the vault if needed) and return its new version."""
    current, key_count = ctx.conn.execute(
        "SELECT (SELECT version FROM keys WHERE vault = ? AND key = ?), (SELECT key_count FROM vaults WHERE name = ?)",
        (vault, key, vault)).fetchone()
    current = current or 0
    if expected is not None and expected != current:
        raise VersionMismatch(expected, current, key)
    if current:
        ctx.conn.execute("UPDATE keys SET value = ?, version = version + 1, updated_at = ?, revision = ? "
                         "WHERE vault = ? AND key = ?", (value, ctx.ts, ctx.index, vault, key))
        return current + 1
    if key_count is None:
        _insert_vault(ctx, vault)
        key_count = 0
    if key_count >= ctx.limits.max_keys_per_vault:
        raise VaultFull(vault, ctx.limits.max_keys_per_vault)
    ctx.conn.execute("INSERT INTO keys (vault, key, value, version, created_at, updated_at, revision) "
                     "VALUES (?, ?, ?, 1, ?, ?, ?)", (vault, key, value, ctx.ts, ctx.ts, ctx.index))
    return 1


def _delete_key(ctx: Ctx, vault: str, key: str, expected: int | None) -> bool:
    current = _key_version(ctx, vault, key)
    if expected is not None and expected != current:
        raise VersionMismatch(expected, current, key)
    if not current:
        return False
    ctx.conn.execute("DELETE FROM keys WHERE vault = ? AND key = ?", (vault, key))
    return True


def create_vault(ctx: Ctx, cmd: c.CreateVault) -> VaultInfo:
    name = validate_vault_name(cmd.name)
    description = validate_text(cmd.description, "description", MAX_DESCRIPTION_CHARS)
    owner = validate_text(cmd.owner, "owner", MAX_OWNER_CHARS)
    tags = validate_tags(cmd.tags)
    if find_vault(ctx.conn, name) is not None:
        raise VaultExists(name)
    _insert_vault(ctx, name, description, owner, tags)
    return require_vault(ctx.conn, name)


def update_vault(ctx: Ctx, cmd: c.UpdateVault) -> VaultInfo:
    name = validate_vault_name(cmd.name)
    current = require_vault(ctx.conn, name)
    description = current.description if cmd.description is None else validate_text(
        cmd.description, "description", MAX_DESCRIPTION_CHARS)
    owner = current.owner if cmd.owner is None else validate_text(cmd.owner, "owner", MAX_OWNER_CHARS)
    tags = current.tags if cmd.tags is None else validate_tags(cmd.tags)
    ctx.conn.execute("UPDATE vaults SET description = ?, owner = ?, tags = ?, updated_at = ? WHERE name = ?",
                     (description, owner, encode_tags(tags), ctx.ts, name))
    return require_vault(ctx.conn, name)


def delete_vault(ctx: Ctx, cmd: c.DeleteVault) -> DeleteVaultResult:
    name = validate_vault_name(cmd.name)
    info = require_vault(ctx.conn, name)
    ctx.conn.execute("DELETE FROM keys WHERE vault = ?", (name,))
    ctx.conn.execute("DELETE FROM vaults WHERE name = ?", (name,))
    return DeleteVaultResult(info.key_count)


def copy_vault(ctx: Ctx, cmd: c.CopyVault) -> CopyVaultResult:
    source = validate_vault_name(cmd.source)
    destination = validate_vault_name(cmd.destination)
    src = require_vault(ctx.conn, source)
    if find_vault(ctx.conn, destination) is not None:
        raise VaultExists(destination)
    if src.key_count > ctx.limits.max_keys_per_vault:
        raise VaultFull(destination, ctx.limits.max_keys_per_vault)
    # Copies are new values: like an import, they must fit the current limit even if it was lowered since
    # the source values were written (lowering a limit blocks growth).
    largest = _one(ctx, "SELECT coalesce(max(length(value)), 0) FROM keys WHERE vault = ?", (source,))
    if largest > ctx.limits.max_value_size:
        raise ValueTooLarge(largest, ctx.limits.max_value_size)
    _insert_vault(ctx, destination, src.description, src.owner, src.tags)
    ctx.conn.execute("INSERT INTO keys (vault, key, value, version, created_at, updated_at, revision) "
                     "SELECT ?, key, value, 1, ?, ?, ? FROM keys WHERE vault = ?",
                     (destination, ctx.ts, ctx.ts, ctx.index, source))
    return CopyVaultResult(src.key_count)


def put(ctx: Ctx, cmd: c.Put) -> PutResult:
    vault = validate_vault_name(cmd.vault)
    key = validate_key(cmd.key)
    value = validate_value(cmd.value, ctx.limits.max_value_size, key)
    expected = validate_expected_version(cmd.expected_version)
    return PutResult(_put_key(ctx, vault, key, value, expected), ctx.index)


def delete(ctx: Ctx, cmd: c.Delete) -> DeleteResult:
    vault = validate_vault_name(cmd.vault)
    key = validate_key(cmd.key)
    expected = validate_expected_version(cmd.expected_version)
    require_vault(ctx.conn, vault)
    return DeleteResult(_delete_key(ctx, vault, key, expected), ctx.index)


def txn(ctx: Ctx, cmd: c.Txn) -> TxnResult:
    vault = validate_vault_name(cmd.vault)
    if not cmd.ops:
        raise InvalidArgument("ops", "a transaction needs at least one op")
    if len(cmd.ops) > MAX_TXN_OPS:
        raise InvalidArgument("ops", f"at most {MAX_TXN_OPS} ops per transaction")
    for i, op in enumerate(cmd.ops):
        if not isinstance(op, (c.TxnPut, c.TxnDelete)):
            raise InvalidArgument(f"ops[{i}]", "must be a put or a delete")
        validate_key(op.key)
        validate_expected_version(op.expected_version, f"ops[{i}].expected_version")
        if isinstance(op, c.TxnPut):
            validate_value(op.value, ctx.limits.max_value_size, op.key)
    out = []
    for op in cmd.ops:
        if isinstance(op, c.TxnPut):
            out.append(TxnOpResult(op.key, _put_key(ctx, vault, op.key, bytes(op.value), op.expected_version), False))
        else:
            require_vault(ctx.conn, vault)
            out.append(TxnOpResult(op.key, 0, _delete_key(ctx, vault, op.key, op.expected_version)))
    return TxnResult(tuple(out), ctx.index)


def set_limits(ctx: Ctx, cmd: c.SetLimits) -> Limits:
    requested = {}
    for field in ("max_vaults", "max_keys_per_vault", "max_value_size", "max_scan_results"):
        value = getattr(cmd, field)
        bound = getattr(HARD_LIMITS, field)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= bound:
            raise InvalidArgument(field, f"must be between 1 and {bound} (0 keeps the current value)")
        requested[field] = value
    if cmd.only_if_unset and _one(ctx, "SELECT limits_set FROM state"):
        return ctx.limits
    merged = Limits(**{f: requested[f] or getattr(ctx.limits, f) for f in requested})
    ctx.conn.execute("UPDATE state SET limits_set = 1, max_vaults = ?, max_keys_per_vault = ?, max_value_size = ?, "
                     "max_scan_results = ?", (merged.max_vaults, merged.max_keys_per_vault, merged.max_value_size,
                                              merged.max_scan_results))
    return read_limits(ctx.conn)


def set_member(ctx: Ctx, cmd: c.SetMember) -> MemberRecord:
    node_id = _validate_id(cmd.node_id, "node_id")
    raft_addr = validate_text(cmd.raft_addr, "raft_addr", MAX_ADDR_CHARS)
    grpc_addr = validate_text(cmd.grpc_addr, "grpc_addr", MAX_ADDR_CHARS)
    ctx.conn.execute("INSERT INTO members (node_id, raft_addr, grpc_addr, voter) VALUES (?, ?, ?, ?) "
                     "ON CONFLICT (node_id) DO UPDATE SET raft_addr = excluded.raft_addr, "
                     "grpc_addr = excluded.grpc_addr, voter = excluded.voter",
                     (node_id, raft_addr, grpc_addr, int(bool(cmd.voter))))
    return member_from_row(ctx.conn.execute(f"SELECT {MEMBER_COLUMNS} FROM members WHERE node_id = ?",
                                            (node_id,)).fetchone())


def remove_member(ctx: Ctx, cmd: c.RemoveMember) -> None:
    ctx.conn.execute("DELETE FROM members WHERE node_id = ?", (_validate_id(cmd.node_id, "node_id"),))


def noop(ctx: Ctx, cmd: c.Noop) -> None:
    return None


def unknown(ctx: Ctx, cmd: c.Unknown) -> None:
    raise InvalidArgument("command", "unknown command kind (written by a newer vaultd?)")


def _validate_id(value: object, field: str, max_chars: int = MAX_ID_CHARS) -> str:
    text = validate_text(value, field, max_chars)
    if not text:
        raise InvalidArgument(field, "must not be empty")
    return text


def _staging_id(import_id: object) -> str:
    # Client ids live in their own namespace so they can never collide with the inline Import's staging id.
    return "c:" + _validate_id(import_id, "import_id", MAX_IMPORT_ID_CHARS)


def _mode(mode: object) -> c.ImportMode:
    try:
        return c.ImportMode(mode)
    except ValueError:
        raise InvalidArgument("mode", "must be fail_if_exists, overwrite or skip_existing") from None


def import_begin(ctx: Ctx, cmd: c.ImportBegin) -> ImportStaged:
    staging = _staging_id(cmd.import_id)
    vault = validate_vault_name(cmd.vault)
    mode = _mode(cmd.mode)
    if _one(ctx, "SELECT 1 FROM imports WHERE import_id = ?", (staging,)):
        raise InvalidArgument("import_id", "an import with this id is already in progress")
    excess = _one(ctx, "SELECT count(*) FROM imports") - MAX_OPEN_IMPORTS + 1
    if excess > 0:   # the least recently touched staged imports make room, deterministically
        for (old,) in ctx.conn.execute("SELECT import_id FROM imports ORDER BY touched_index, import_id LIMIT ?",
                                       (excess,)).fetchall():
            drop_import(ctx.conn, old)
    ctx.conn.execute("INSERT INTO imports (import_id, vault, mode, touched_index, chunks) VALUES (?, ?, ?, ?, 0)",
                     (staging, vault, mode.value, ctx.index))
    return ImportStaged(0, 0)


def _open_import(ctx: Ctx, staging: str) -> tuple[str, c.ImportMode, int]:
    row = ctx.conn.execute("SELECT vault, mode, chunks FROM imports WHERE import_id = ?", (staging,)).fetchone()
    if row is None:
        raise InvalidArgument("import_id", "unknown import (never begun, committed, or expired)")
    return row[0], c.ImportMode(row[1]), row[2]


def _stage(ctx: Ctx, staging: str, vault: str, entries: tuple[c.ImportEntry, ...]) -> int:
    for entry in entries:
        validate_key(entry.key)
        validate_value(entry.value, ctx.limits.max_value_size, entry.key)
    ctx.conn.executemany("INSERT OR REPLACE INTO import_entries (import_id, key, value) VALUES (?, ?, ?)",
                         [(staging, e.key, bytes(e.value)) for e in entries])
    staged = _one(ctx, "SELECT count(*) FROM import_entries WHERE import_id = ?", (staging,))
    if staged > ctx.limits.max_keys_per_vault:
        raise VaultFull(vault, ctx.limits.max_keys_per_vault)
    return staged


def import_chunk(ctx: Ctx, cmd: c.ImportChunk) -> ImportStaged:
    staging = _staging_id(cmd.import_id)
    vault, _, chunks = _open_import(ctx, staging)
    if cmd.seq is not None and cmd.seq != chunks:
        raise InvalidArgument("seq", f"expected chunk {chunks}")
    staged = _stage(ctx, staging, vault, cmd.entries)
    ctx.conn.execute("UPDATE imports SET chunks = chunks + 1, touched_index = ? WHERE import_id = ?",
                     (ctx.index, staging))
    return ImportStaged(staged, chunks + 1)


def import_commit(ctx: Ctx, cmd: c.ImportCommit) -> ImportResult:
    staging = _staging_id(cmd.import_id)
    vault, mode, chunks = _open_import(ctx, staging)
    if cmd.chunk_count is not None and cmd.chunk_count != chunks:
        raise InvalidArgument("chunk_count", f"{chunks} chunks were staged")
    result = _commit_staged(ctx, staging, vault, mode)
    drop_import(ctx.conn, staging)
    return result


def import_inline(ctx: Ctx, cmd: c.Import) -> ImportResult:
    vault = validate_vault_name(cmd.vault)
    mode = _mode(cmd.mode)
    _stage(ctx, _INLINE_IMPORT_ID, vault, cmd.entries)
    result = _commit_staged(ctx, _INLINE_IMPORT_ID, vault, mode)
    drop_import(ctx.conn, _INLINE_IMPORT_ID)
    return result


def _commit_staged(ctx: Ctx, staging: str, vault: str, mode: c.ImportMode) -> ImportResult:
    """All staged entries or none: every check runs before the first write."""
    total, existing, identical, largest = ctx.conn.execute(
        "SELECT count(*), coalesce(sum(k.key IS NOT NULL), 0), coalesce(sum(k.value IS e.value), 0), "
        "coalesce(max(length(e.value)), 0) "
        "FROM import_entries e LEFT JOIN keys k ON k.vault = ? AND k.key = e.key WHERE e.import_id = ?",
        (vault, staging)).fetchone()
    if largest > ctx.limits.max_value_size:   # the limit may have been lowered since the chunk was staged
        raise ValueTooLarge(largest, ctx.limits.max_value_size)
    if mode is c.ImportMode.FAIL_IF_EXISTS and existing:
        key, version = ctx.conn.execute(
            "SELECT k.key, k.version FROM import_entries e JOIN keys k ON k.vault = ? AND k.key = e.key "
            "WHERE e.import_id = ? ORDER BY k.key LIMIT 1", (vault, staging)).fetchone()
        raise VersionMismatch(0, version, key)
    key_count = _one(ctx, "SELECT key_count FROM vaults WHERE name = ?", (vault,))
    if key_count is None:
        _insert_vault(ctx, vault)
        key_count = 0
    new = total - existing
    if key_count + new > ctx.limits.max_keys_per_vault:
        raise VaultFull(vault, ctx.limits.max_keys_per_vault)
    overwritten = 0
    if mode is c.ImportMode.OVERWRITE:
        overwritten = existing - identical
        ctx.conn.execute(
            "UPDATE keys SET value = e.value, version = keys.version + 1, updated_at = ?, revision = ? "
            "FROM import_entries e WHERE e.import_id = ? AND keys.vault = ? AND keys.key = e.key "
            "AND keys.value IS NOT e.value", (ctx.ts, ctx.index, staging, vault))
    ctx.conn.execute(
        "INSERT INTO keys (vault, key, value, version, created_at, updated_at, revision) "
        "SELECT ?, e.key, e.value, 1, ?, ?, ? FROM import_entries e WHERE e.import_id = ? "
        "AND NOT EXISTS (SELECT 1 FROM keys k WHERE k.vault = ? AND k.key = e.key)",
        (vault, ctx.ts, ctx.ts, ctx.index, staging, vault))
    return ImportResult(imported=new, skipped=existing - overwritten, overwritten=overwritten)


def drop_import(conn: apsw.Connection, staging: str) -> None:
    conn.execute("DELETE FROM import_entries WHERE import_id = ?", (staging,))
    conn.execute("DELETE FROM imports WHERE import_id = ?", (staging,))


# --- authorization ----------------------------------------------------------------------------------------

def put_policy(ctx: Ctx, cmd: c.PutPolicy) -> PolicyInfo:
    name = pol.validate_policy_name(cmd.name)
    rules = pol.validate_rules(cmd.rules)
    created = _one(ctx, "SELECT created_at FROM policies WHERE name = ?", (name,))
    if created is None and _one(ctx, "SELECT count(*) FROM policies") >= pol.MAX_POLICIES:
        raise TooManyPolicies(pol.MAX_POLICIES)
    ctx.conn.execute("INSERT INTO policies (name, rules, created_at, updated_at) VALUES (?, ?, ?, ?) "
                     "ON CONFLICT (name) DO UPDATE SET rules = excluded.rules, updated_at = excluded.updated_at",
                     (name, encode_rules(rules), ctx.ts, ctx.ts))
    return require_policy(ctx.conn, name)


def delete_policy(ctx: Ctx, cmd: c.DeletePolicy) -> PolicyInfo:
    """Tokens naming the policy keep the name: an unknown policy grants nothing, and a policy created again
    under the name applies to them again."""
    info = require_policy(ctx.conn, pol.validate_policy_name(cmd.name))
    ctx.conn.execute("DELETE FROM policies WHERE name = ?", (info.name,))
    return info


def create_token(ctx: Ctx, cmd: c.CreateToken) -> TokenInfo:
    token_id = pol.validate_token_id(cmd.token_id)
    name = pol.validate_token_name(cmd.name)
    policies = pol.validate_token_policies(cmd.policies)
    digest = pol.validate_secret_hash(cmd.secret_sha256)
    ttl = pol.validate_ttl(cmd.ttl_seconds)
    for policy in policies:   # a typo would silently grant nothing: every policy must exist now
        require_policy(ctx.conn, policy)
    # Revoked and expired tokens are forgotten here (by the batch time, so alike on every replica).
    ctx.conn.execute("DELETE FROM tokens WHERE revoked = 1 OR (expires_at > 0 AND expires_at <= ?)", (ctx.ts,))
    if _one(ctx, "SELECT 1 FROM tokens WHERE token_id = ?", (token_id,)):
        raise InvalidArgument("token_id", "a token with this id exists")
    if _one(ctx, "SELECT count(*) FROM tokens") >= pol.MAX_LIVE_TOKENS:
        raise TooManyTokens(pol.MAX_LIVE_TOKENS)
    expires_at = ctx.ts + ttl * 1_000_000_000 if ttl else 0
    ctx.conn.execute("INSERT INTO tokens (token_id, name, policies, secret_sha256, created_at, expires_at, revoked) "
                     "VALUES (?, ?, ?, ?, ?, ?, 0)", (token_id, name, encode_tags(policies), digest, ctx.ts,
                                                      expires_at))
    return require_token(ctx.conn, token_id)


def revoke_token(ctx: Ctx, cmd: c.RevokeToken) -> TokenInfo:
    """Idempotent: revoking a revoked token succeeds (a retry without a request id must not fail)."""
    token_id = pol.validate_token_id(cmd.token_id)
    require_token(ctx.conn, token_id)
    ctx.conn.execute("UPDATE tokens SET revoked = 1 WHERE token_id = ?", (token_id,))
    return require_token(ctx.conn, token_id)


HANDLERS: dict[type, Callable[[Ctx, Any], Any]] = {
    c.CreateVault: create_vault, c.UpdateVault: update_vault, c.DeleteVault: delete_vault,
    c.CopyVault: copy_vault, c.Put: put, c.Delete: delete, c.Txn: txn, c.SetLimits: set_limits,
    c.SetMember: set_member, c.RemoveMember: remove_member, c.Noop: noop, c.ImportBegin: import_begin,
    c.ImportChunk: import_chunk, c.ImportCommit: import_commit, c.Import: import_inline, c.PutPolicy: put_policy,
    c.DeletePolicy: delete_policy, c.CreateToken: create_token, c.RevokeToken: revoke_token, c.Unknown: unknown,
}

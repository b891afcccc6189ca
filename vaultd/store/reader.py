"""Reader: reads from the replicated database on per-thread connections, each call one read transaction.

WAL mode lets these run concurrently with apply without waiting. A thread's connection is created on first use
and reused; restore() replaces the content inside SQLite (one write transaction), so these connections stay
valid across restores. Export holds a private connection for its whole stream so that a consumer interleaving
other reads on the same thread cannot collide with its long read transaction.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import apsw

from vaultd.store import exchange
from vaultd.store.errors import InvalidArgument, KeyNotFound
from vaultd.store.queries import (ENTRY_COLUMNS, KEYS_ONLY_COLUMNS, MEMBER_COLUMNS, POLICY_COLUMNS, TOKEN_COLUMNS,
                                  VAULT_COLUMNS, entry_from_row, member_from_row, policy_from_row, read_applied,
                                  read_limits, require_policy, require_token, require_vault, token_from_row,
                                  vault_from_row)
from vaultd.store.results import Entry, Limits, MemberRecord, PolicyInfo, TokenInfo, VaultInfo
from vaultd.store.schema import open_reader
from vaultd.store.validation import prefix_successor, validate_key, validate_prefix, validate_vault_name

_TOKEN_TAG = b"v1\x00"
# Every replicated table in a fixed order with its full primary-key ordering (state_hash's canonical order).
_HASHED_TABLES = (
    ("state", "id"),
    ("vaults", "name"),
    ("keys", "vault, key"),
    ("members", "node_id"),
    ("requests", "request_id"),
    ("imports", "import_id"),
    ("import_entries", "import_id, key"),
    ("policies", "name"),
    ("tokens", "token_id"),
)


class Reader:
    def __init__(self, path: str) -> None:
        self._path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        # Weak: when a pool thread exits, its thread-local connection is collected (and closed) with it.
        self._all: weakref.WeakSet[apsw.Connection] = weakref.WeakSet()
        self._closed = False

    @contextmanager
    def _txn(self) -> Iterator[apsw.Connection]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the store is closed")
                conn = open_reader(self._path)
                self._all.add(conn)
            self._local.conn = conn
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for conn in list(self._all):
                conn.close()
            self._all.clear()

    # --- keys ---------------------------------------------------------------------------------------------

    def get(self, vault: str, key: str) -> Entry:
        validate_vault_name(vault)
        validate_key(key)
        with self._txn() as conn:
            row = conn.execute(f"SELECT {ENTRY_COLUMNS} FROM keys WHERE vault = ? AND key = ?",
                               (vault, key)).fetchone()
            if row is None:
                require_vault(conn, vault)
                raise KeyNotFound(vault, key)
        return entry_from_row(row)

    def scan(self, vault: str, prefix: str = "", page_size: int = 0, page_token: str = "",
             keys_only: bool = False) -> tuple[list[Entry], str]:
        """Keys starting with prefix in key (UTF-8 byte) order; next_token is "" on the last page."""
        validate_vault_name(vault)
        validate_prefix(prefix)
        after = _decode_token(page_token)
        if after is not None and not after.startswith(prefix):
            raise InvalidArgument("page_token", "does not belong to this prefix")
        where, args = _key_range(vault, prefix, after)
        columns = KEYS_ONLY_COLUMNS if keys_only else ENTRY_COLUMNS
        with self._txn() as conn:
            size = _page_size(page_size, read_limits(conn))
            require_vault(conn, vault)
            rows = conn.execute(f"SELECT {columns} FROM keys WHERE {where} ORDER BY key LIMIT ?",
                                (*args, size + 1)).fetchall()
        entries = [entry_from_row(r) for r in rows[:size]]
        return entries, (_encode_token(entries[-1].key) if len(rows) > size else "")

    def count(self, vault: str, prefix: str = "") -> int:
        validate_vault_name(vault)
        validate_prefix(prefix)
        with self._txn() as conn:
            info = require_vault(conn, vault)
            if not prefix:
                return info.key_count
            where, args = _key_range(vault, prefix, None)
            return conn.execute(f"SELECT count(*) FROM keys WHERE {where}", args).get

    # --- vaults -------------------------------------------------------------------------------------------

    def get_vault(self, name: str) -> VaultInfo:
        validate_vault_name(name)
        with self._txn() as conn:
            return require_vault(conn, name)

    def list_vaults(self, page_size: int = 0, page_token: str = "",
                    visible: Callable[[str], bool] | None = None) -> tuple[list[VaultInfo], str]:
        """A page of vaults in name order. With `visible`, only the vaults it accepts count and appear, and
        the page token names the last vault shown: a caller never learns a name it may not see, not even
        from the token (the scan is bounded by the replicated vault limit)."""
        after = _decode_token(page_token)
        with self._txn() as conn:
            size = _page_size(page_size, read_limits(conn))
            if visible is None:
                rows = conn.execute(f"SELECT {VAULT_COLUMNS} FROM vaults WHERE name > ? ORDER BY name LIMIT ?",
                                    (after or "", size + 1)).fetchall()
            else:
                rows = []
                for row in conn.execute(f"SELECT {VAULT_COLUMNS} FROM vaults WHERE name > ? ORDER BY name",
                                        (after or "",)):
                    if visible(vault_from_row(row).name):
                        rows.append(row)
                        if len(rows) > size:
                            break
        vaults = [vault_from_row(r) for r in rows[:size]]
        return vaults, (_encode_token(vaults[-1].name) if len(rows) > size else "")

    def fullest_vaults(self, n: int) -> list[tuple[str, int]]:
        """The n vaults with the most keys (closest to the per-vault key limit), ties by name."""
        with self._txn() as conn:
            return [tuple(r) for r in conn.execute(  # type: ignore[misc]
                "SELECT name, key_count FROM vaults ORDER BY key_count DESC, name LIMIT ?", (max(0, n),))]

    # --- settings and cluster -----------------------------------------------------------------------------

    def limits(self) -> Limits:
        with self._txn() as conn:
            return read_limits(conn)

    def members(self) -> list[MemberRecord]:
        with self._txn() as conn:
            return [member_from_row(r) for r in conn.execute(f"SELECT {MEMBER_COLUMNS} FROM members "
                                                             "ORDER BY node_id")]

    # --- authorization ------------------------------------------------------------------------------------

    def policy(self, name: str) -> PolicyInfo:
        with self._txn() as conn:
            return require_policy(conn, name)

    def policies(self) -> list[PolicyInfo]:
        with self._txn() as conn:
            return [policy_from_row(r) for r in conn.execute(f"SELECT {POLICY_COLUMNS} FROM policies ORDER BY name")]

    def tokens(self) -> list[TokenInfo]:
        """Every stored token (revoked and expired ones until the next CreateToken forgets them); no hashes."""
        with self._txn() as conn:
            return [token_from_row(r) for r in conn.execute(f"SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY token_id")]

    def token_with_hash(self, token_id: str) -> tuple[TokenInfo, str]:
        """A token and the sha256 (hex) of its secret, for verifying a presented token; TokenNotFound."""
        with self._txn() as conn:
            info = require_token(conn, token_id)
            return info, conn.execute("SELECT secret_sha256 FROM tokens WHERE token_id = ?", (token_id,)).get

    def applied(self) -> tuple[int, int]:
        """(applied_index, applied_term) as committed in the database."""
        with self._txn() as conn:
            index, term, _ = read_applied(conn)
            return index, term

    def state_hash(self) -> str:
        return self.hashed_state()[1]

    def hashed_state(self) -> tuple[int, str]:
        """(applied_index, sha256 over every replicated table in primary-key order), from one read transaction
        so the hash belongs to exactly that index. Node-local data (access stats, connections, WAL layout) is
        not in this database, so equal logs give equal hashes."""
        digest = hashlib.sha256()
        with self._txn() as conn:
            index, _, _ = read_applied(conn)
            for table, order in _HASHED_TABLES:
                _feed(digest, table)
                for row in conn.execute(f"SELECT * FROM {table} ORDER BY {order}"):
                    digest.update(b"R")
                    for value in row:
                        _feed(digest, value)
        return index, digest.hexdigest()

    # --- export -------------------------------------------------------------------------------------------

    def export(self, vault: str, chunk_size: int = exchange.EXPORT_CHUNK_SIZE) -> Iterator[bytes]:
        """The vault as one native JSON document in chunks of about chunk_size bytes, from one read
        transaction. VaultNotFound is raised here, before the first chunk; memory stays at about one chunk."""
        validate_vault_name(vault)
        conn = open_reader(self._path)
        try:
            conn.execute("BEGIN")
            info = require_vault(conn, vault)
        except BaseException:
            conn.close()
            raise
        rows = conn.execute(f"SELECT {ENTRY_COLUMNS} FROM keys WHERE vault = ? ORDER BY key", (vault,))
        return _closing_stream(conn, exchange.render_export(info, (entry_from_row(r) for r in rows), chunk_size))


def _closing_stream(conn: apsw.Connection, chunks: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from chunks
    finally:
        conn.close()


def _key_range(vault: str, prefix: str, after: str | None) -> tuple[str, tuple[Any, ...]]:
    """WHERE clause for keys of `vault` starting with `prefix` (after `after`): always a primary-key range."""
    clauses, args = ["vault = ?"], [vault]
    if after is not None:
        clauses.append("key > ?")
        args.append(after)
    elif prefix:
        clauses.append("key >= ?")
        args.append(prefix)
    upper = prefix_successor(prefix)
    if upper is not None:
        clauses.append("key < ?")
        args.append(upper)
    return " AND ".join(clauses), tuple(args)


def _page_size(requested: int, limits: Limits) -> int:
    if not isinstance(requested, int) or requested < 0:
        raise InvalidArgument("page_size", "must be a non-negative integer")
    return min(requested or limits.max_scan_results, limits.max_scan_results)


def _encode_token(last: str) -> str:
    return base64.urlsafe_b64encode(_TOKEN_TAG + last.encode()).decode("ascii")


def _decode_token(token: str) -> str | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
        if not raw.startswith(_TOKEN_TAG):
            raise ValueError("tag")
        return raw[len(_TOKEN_TAG):].decode()
    except (ValueError, UnicodeError):
        raise InvalidArgument("page_token", "not a token this server issued") from None


def _feed(digest: Any, value: Any) -> None:
    """Type-tagged, length-prefixed encoding so that different row contents can never hash alike."""
    if value is None:
        digest.update(b"N")
        return
    if isinstance(value, int):
        tag, data = b"I", str(value).encode()
    elif isinstance(value, str):
        tag, data = b"T", value.encode()
    elif isinstance(value, (bytes, memoryview)):
        tag, data = b"B", bytes(value)
    else:
        tag, data = b"F", repr(value).encode()
    digest.update(tag + len(data).to_bytes(8, "big") + data)

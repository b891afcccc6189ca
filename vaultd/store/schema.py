"""The replicated database's schema, its forward migrations, and how connections are opened.

Layout decisions (see DESIGN.md):
- `keys` is a WITHOUT ROWID table clustered on PRIMARY KEY (vault, key): a get is one b-tree descent, and a
  prefix scan, prefix count, vault delete and vault copy are range scans `vault = ? AND key >= ? AND key < ?`.
- `vaults.key_count/total_bytes/total_key_bytes` are kept by three triggers on `keys`, so listing vaults and
  enforcing the key limit never count rows.
- `state` is a single row: applied index/term, the last effective timestamp, the replicated limits and the
  request-table size; it is written in the same transaction as every batch (idempotent replay).
- No column has a clock default: every timestamp is bound from the command's batch timestamp.
"""

from __future__ import annotations

import apsw

from vaultd.store.errors import StorageFailure
from vaultd.store.results import DEFAULT_LIMITS

_V1 = f"""
CREATE TABLE state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    applied_index INTEGER NOT NULL,
    applied_term INTEGER NOT NULL,
    last_ts INTEGER NOT NULL,
    limits_set INTEGER NOT NULL,
    max_vaults INTEGER NOT NULL,
    max_keys_per_vault INTEGER NOT NULL,
    max_value_size INTEGER NOT NULL,
    max_scan_results INTEGER NOT NULL,
    request_count INTEGER NOT NULL
);
INSERT INTO state VALUES (1, 0, 0, 0, 0, {DEFAULT_LIMITS.max_vaults}, {DEFAULT_LIMITS.max_keys_per_vault},
                          {DEFAULT_LIMITS.max_value_size}, {DEFAULT_LIMITS.max_scan_results}, 0);

CREATE TABLE vaults (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    owner TEXT NOT NULL,
    tags TEXT NOT NULL,                       -- JSON array of strings
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    key_count INTEGER NOT NULL DEFAULT 0,
    total_bytes INTEGER NOT NULL DEFAULT 0,
    total_key_bytes INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE keys (
    vault TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (vault, key)
) WITHOUT ROWID;

CREATE TRIGGER keys_after_insert AFTER INSERT ON keys BEGIN
    UPDATE vaults SET key_count = key_count + 1,
                      total_bytes = total_bytes + length(NEW.value),
                      total_key_bytes = total_key_bytes + length(CAST(NEW.key AS BLOB))
    WHERE name = NEW.vault;
END;
CREATE TRIGGER keys_after_update AFTER UPDATE OF value ON keys BEGIN
    UPDATE vaults SET total_bytes = total_bytes + length(NEW.value) - length(OLD.value)
    WHERE name = NEW.vault;
END;
CREATE TRIGGER keys_after_delete AFTER DELETE ON keys BEGIN
    UPDATE vaults SET key_count = key_count - 1,
                      total_bytes = total_bytes - length(OLD.value),
                      total_key_bytes = total_key_bytes - length(CAST(OLD.key AS BLOB))
    WHERE name = OLD.vault;
END;

CREATE TABLE members (
    node_id TEXT PRIMARY KEY,
    raft_addr TEXT NOT NULL,
    grpc_addr TEXT NOT NULL,
    voter INTEGER NOT NULL
) WITHOUT ROWID;

-- Outcomes of commands that carried a request id, for exactly-once retries; evicted by log position.
CREATE TABLE requests (
    request_id TEXT PRIMARY KEY,
    log_index INTEGER NOT NULL,
    position INTEGER NOT NULL,
    result BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX requests_by_position ON requests (log_index, position);

-- Staged imports (ImportBegin/ImportChunk), applied by ImportCommit; abandoned ones evicted by log position.
CREATE TABLE imports (
    import_id TEXT PRIMARY KEY,
    vault TEXT NOT NULL,
    mode TEXT NOT NULL,
    touched_index INTEGER NOT NULL,
    chunks INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX imports_by_touch ON imports (touched_index, import_id);
CREATE TABLE import_entries (
    import_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (import_id, key)
) WITHOUT ROWID;
"""

# Authorization (issue 10): policies, and tokens stored only as the sha256 of their secret.
_V2 = """
CREATE TABLE policies (
    name TEXT PRIMARY KEY,
    rules TEXT NOT NULL,                      -- JSON [[vault_glob, [capability, ...]], ...]
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE tokens (
    token_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    policies TEXT NOT NULL,                   -- JSON array of policy names
    secret_sha256 TEXT NOT NULL,              -- hex; the secret itself is never stored
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,              -- 0 = never
    revoked INTEGER NOT NULL
) WITHOUT ROWID;
"""

# (version, script): each runs once, in order, in one transaction with the user_version bump.
MIGRATIONS: tuple[tuple[int, str], ...] = ((1, _V1), (2, _V2))
SCHEMA_VERSION = MIGRATIONS[-1][0]

# Environmental SQLite failures: never a command result (replicas would diverge); the node must stop.
ENVIRONMENTAL_ERRORS: tuple[type[BaseException], ...] = (
    apsw.IOError, apsw.FullError, apsw.CorruptError, apsw.CantOpenError, apsw.NotADBError, apsw.ReadOnlyError,
    apsw.PermissionsError, apsw.NoMemError, apsw.ProtocolError, apsw.BusyError, apsw.LockedError,
    apsw.AuthError, apsw.InterruptError, apsw.ConnectionClosedError, apsw.ThreadingViolationError,
    MemoryError,
)
_BUSY_TIMEOUT_MS = 10_000
# With 4 KiB pages a WITHOUT ROWID row holds at most ~1000 bytes inline, so every 1 KiB secret spilled to an
# overflow page (3.5x the file size, 3-4x slower scans). 8 KiB pages keep rows up to ~2000 bytes inline while
# keeping the pages a small update rewrites small (16 KiB pages measured slower for single-key updates).
PAGE_SIZE = 8192


def migrate(conn: apsw.Connection) -> int:
    """Bring the schema to SCHEMA_VERSION; idempotent. Returns the version found before migrating."""
    found = conn.execute("PRAGMA user_version").get
    if found > SCHEMA_VERSION:
        raise StorageFailure(f"database schema version {found} is newer than this vaultd ({SCHEMA_VERSION})")
    for version, script in MIGRATIONS:
        if version > found:
            with conn:
                if conn.execute("PRAGMA user_version").get < version:
                    conn.execute(script)
                    conn.execute(f"PRAGMA user_version = {version}")
    return found


def open_writer(path: str) -> apsw.Connection:
    """The single writer: WAL (readers never wait for apply), synchronous=NORMAL (the Raft journal, not SQLite,
    is the durability point: a lost last transaction is re-applied from the log since applied_index commits
    with it), integrity-checked when the file already holds a database."""
    conn = _connect(path)
    conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # only takes effect while the file is still empty
    conn.execute("PRAGMA journal_mode=WAL")   # alone: it returns a row, which would stop a multi-statement string
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA cache_size=-65536")  # up to 64 MiB of hot pages for apply (the default is 2 MiB)
    if conn.execute("PRAGMA user_version").get > 0:
        check = conn.execute("PRAGMA quick_check").get
        if check != "ok":
            conn.close()
            raise StorageFailure("database failed PRAGMA quick_check")
    migrate(conn)
    return conn


def open_reader(path: str) -> apsw.Connection:
    conn = _connect(path)
    conn.execute("PRAGMA query_only=ON")
    return conn


def _connect(path: str) -> apsw.Connection:
    try:
        conn = apsw.Connection(path)
        conn.setbusytimeout(_BUSY_TIMEOUT_MS)
    except ENVIRONMENTAL_ERRORS as exc:
        raise StorageFailure(f"cannot open database: {type(exc).__name__}") from exc
    return conn

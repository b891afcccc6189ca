"""StateMachine: applies log entries to the replicated SQLite database; snapshots and restores it.

Threading: apply/apply_entry/restore/close run on ONE thread (the replication layer's apply thread), which
owns the writer connection. snapshot(), state_hash(), totals() and every Reader method are safe from any
thread: they use their own connections (WAL: readers never wait for apply, apply never waits for readers).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
import apsw

from vaultd.store import commands as c
from vaultd.store import handlers, snapshotfile
from vaultd.store.errors import AlreadyApplied, Internal, InvalidArgument, SnapshotInvalid, StorageFailure, StoreError
from vaultd.store.queries import read_applied, read_limits, read_totals
from vaultd.store.reader import Reader
from vaultd.store.resultcodec import decode_result, encode_result
from vaultd.store.results import Err, Limits, Ok, Result, SnapshotInfo
from vaultd.store.schema import ENVIRONMENTAL_ERRORS, SCHEMA_VERSION, migrate, open_reader, open_writer

# Exactly-once window: request ids are remembered for this many log positions, and at most this many ids.
REQUEST_WINDOW = 100_000
MAX_REQUESTS = 100_000
# A staged import untouched for this many log positions is abandoned and dropped.
IMPORT_TTL = 20_000
# Window-based eviction runs when the applied index crosses a multiple of this (cheap entries in between).
EVICT_EVERY = 64
MAX_REQUEST_ID_CHARS = 512   # room for ids the API derives from a client id ("<id>/chunk/<n>")


class StateMachine:
    def __init__(self, path: str, bootstrap_limits: Limits | None = None) -> None:
        self.path = os.path.abspath(path)
        # Not written locally (nodes' configs may differ): the replication layer proposes bootstrap_envelope()
        # once it leads, and SetLimits(only_if_unset=True) makes the first such proposal win everywhere.
        self.bootstrap_limits = bootstrap_limits
        try:
            self._conn = open_writer(self.path)
            self._refresh()
        except ENVIRONMENTAL_ERRORS as exc:
            raise StorageFailure(f"cannot open {self.path}: {type(exc).__name__}") from exc
        self._reader = Reader(self.path)
        # Node-local, in memory: bumped after every applied change to policies or tokens (and every restore),
        # so caches of verified tokens and compiled policies know when to reload. Never part of the state.
        self.auth_revision = 0

    # --- apply -------------------------------------------------------------------------------------------

    def apply_entry(self, index: int, term: int, payload: bytes) -> list[Result]:
        """Decode and apply one log entry. Never raises for anything the payload can cause (an undecodable
        entry consumes its index and yields one Err); only StorageFailure escapes."""
        try:
            batch = c.decode_batch(payload)
        except c.CodecError as exc:
            if index <= self.applied_index:
                return [Err(AlreadyApplied(index))]
            self.apply(index, term, c.Batch(0, ()))
            return [Err(exc)]
        return self.apply(index, term, batch)

    def apply(self, index: int, term: int, batch: c.Batch) -> list[Result]:
        """Apply every command of the batch in order, each all-or-nothing, in one transaction that also
        records (index, term). An index at or below the applied index changes nothing and returns the
        recorded outcome for commands with a request id (AlreadyApplied for the others)."""
        if index <= self.applied_index:
            return [self._recorded(env, index) for env in batch.commands]
        try:
            return self._storage_guard(index, lambda: self._apply(index, term, batch))
        except StorageFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug outside any one command: same outcome on every replica
            self._rollback()
            failure = Internal(f"batch failed with {type(exc).__name__}")
            self._storage_guard(index, lambda: self._apply(index, term, c.Batch(0, ())))
            return [Err(failure) for _ in batch.commands]
        except BaseException:   # KeyboardInterrupt, SystemExit: leave no open transaction behind
            self._rollback()
            raise

    def _storage_guard(self, index: int, step: Callable[[], list[Result]]) -> list[Result]:
        try:
            return step()
        except ENVIRONMENTAL_ERRORS as exc:
            self._rollback()
            raise StorageFailure(f"database failure while applying index {index}: {type(exc).__name__}") from exc
        except StorageFailure:
            self._rollback()
            raise

    def _apply(self, index: int, term: int, batch: c.Batch) -> list[Result]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        _, _, last_ts = read_applied(conn)
        ts = max(int(batch.timestamp_ns), last_ts)
        ctx = handlers.Ctx(conn, index, ts, read_limits(conn))
        results = [self._apply_one(ctx, position, env) for position, env in enumerate(batch.commands)]
        request_count = conn.execute(
            "UPDATE state SET applied_index = ?, applied_term = ?, last_ts = ?, request_count = request_count + ? "
            "RETURNING request_count", (index, term, ts, ctx.recorded)).get
        if request_count > MAX_REQUESTS or index // EVICT_EVERY != self.applied_index // EVICT_EVERY:
            self._evict(index)
        conn.execute("COMMIT")
        self.applied_index, self.applied_term = index, term
        if not all(isinstance(env.command, c.Noop) for env in batch.commands):   # barriers change no totals
            self._totals = read_totals(conn)
        if any(isinstance(env.command, c.AUTH_COMMANDS) for env in batch.commands):
            self.auth_revision += 1   # after COMMIT: a reader that sees the new number sees the new rows
        return results

    def _apply_one(self, ctx: handlers.Ctx, position: int, env: c.Envelope) -> Result:
        conn = ctx.conn
        rid = env.request_id
        if rid:
            if not isinstance(rid, str) or len(rid) > MAX_REQUEST_ID_CHARS:
                return Err(InvalidArgument("request_id", f"must be at most {MAX_REQUEST_ID_CHARS} characters"))
            row = conn.execute("SELECT result FROM requests WHERE request_id = ?", (rid,)).fetchone()
            if row is not None:
                return decode_result(row[0])
        command = env.command
        handler = handlers.HANDLERS.get(type(command), handlers.unknown)
        conn.execute("SAVEPOINT command")
        try:
            result: Result = Ok(handler(ctx, command))
        except ENVIRONMENTAL_ERRORS:
            raise
        except StoreError as exc:
            conn.execute("ROLLBACK TO command")
            result = Err(exc)
        except Exception as exc:  # noqa: BLE001 - a bug in one command must not wedge the log
            conn.execute("ROLLBACK TO command")
            result = Err(Internal(f"{type(command).__name__} failed with {type(exc).__name__}"))
        conn.execute("RELEASE command")
        if isinstance(command, c.SetLimits):
            ctx.limits = read_limits(conn)
        if rid:
            conn.execute("INSERT INTO requests (request_id, log_index, position, result) VALUES (?, ?, ?, ?)",
                         (rid, ctx.index, position, encode_result(result)))
            ctx.recorded += 1
        return result

    def _evict(self, index: int) -> None:
        """Deterministic forgetting of request outcomes and abandoned imports. It depends only on the log
        (the index and the previously applied index), so every replica evicts the same rows at the same entry."""
        conn = self._conn
        conn.execute("DELETE FROM requests WHERE log_index < ?", (index - REQUEST_WINDOW,))
        count = conn.execute("UPDATE state SET request_count = request_count - ? RETURNING request_count",
                             (conn.changes(),)).get
        if count > MAX_REQUESTS:
            conn.execute("DELETE FROM requests WHERE request_id IN (SELECT request_id FROM requests "
                         "ORDER BY log_index, position LIMIT ?)", (count - MAX_REQUESTS,))
            conn.execute("UPDATE state SET request_count = ?", (MAX_REQUESTS,))
        for (staging,) in conn.execute("SELECT import_id FROM imports WHERE touched_index < ?",
                                       (index - IMPORT_TTL,)).fetchall():
            handlers.drop_import(conn, staging)

    def _recorded(self, env: c.Envelope, index: int) -> Result:
        if env.request_id:
            row = self._conn.execute("SELECT result FROM requests WHERE request_id = ?",
                                     (env.request_id,)).fetchone()
            if row is not None:
                return decode_result(row[0])
        return Err(AlreadyApplied(index))

    def _rollback(self) -> None:
        try:
            if not self._conn.getautocommit():
                self._conn.execute("ROLLBACK")
        except apsw.Error:
            pass  # the node is stopping anyway; SQLite rolls back an open transaction on close/reopen

    def _refresh(self) -> None:
        self.applied_index, self.applied_term, _ = read_applied(self._conn)
        self._totals = read_totals(self._conn)

    # --- bootstrap, reads, totals ------------------------------------------------------------------------

    def bootstrap_envelope(self) -> c.Envelope | None:
        """The SetLimits the replication layer proposes at cluster bootstrap (None: keep the defaults)."""
        if self.bootstrap_limits is None:
            return None
        lim = self.bootstrap_limits
        return c.Envelope("", c.SetLimits(lim.max_vaults, lim.max_keys_per_vault, lim.max_value_size,
                                          lim.max_scan_results, only_if_unset=True))

    def reader(self) -> Reader:
        return self._reader

    def totals(self) -> tuple[int, int, int]:
        """(vaults, keys, value bytes) as of the last apply; in memory, so metrics scrapes cost nothing."""
        return self._totals

    def state_hash(self) -> str:
        return self._reader.state_hash()

    def hashed_state(self) -> tuple[int, str]:
        """(applied_index, state_hash) read together: the hash belongs to exactly that index."""
        return self._reader.hashed_state()

    # --- snapshot / restore ------------------------------------------------------------------------------

    def snapshot(self, path: str) -> SnapshotInfo:
        """Consistent snapshot while apply continues: an online backup in one read transaction on a private
        connection, so it may run on a background thread."""
        image = f"{path}.{os.getpid()}.{threading.get_ident()}.image"
        try:
            source = open_reader(self.path)
            try:
                target = apsw.Connection(image)
                try:
                    with target.backup("main", source, "main") as backup:
                        backup.step(-1)
                    target.execute("PRAGMA journal_mode=DELETE")
                    index, term, _ = read_applied(target)
                finally:
                    target.close()
            finally:
                source.close()
            return snapshotfile.write(path, image, index, term)
        except ENVIRONMENTAL_ERRORS as exc:
            raise StorageFailure(f"snapshot failed: {type(exc).__name__}") from exc
        finally:
            _remove(image, image + "-journal")

    @staticmethod
    def read_snapshot_info(path: str) -> SnapshotInfo:
        """(index, term, size, checksum) of a snapshot file without restoring it; SnapshotInvalid if the
        header is bad or the file is truncated (the image checksum is verified by restore)."""
        return snapshotfile.read_header(path)

    def restore(self, path: str) -> None:
        """Replace the whole replicated state with the snapshot's. Verified first (checksum, integrity_check,
        schema) on a private copy; on any problem SnapshotInvalid and the current database is untouched. The
        replacement is one SQLite write transaction (backup into the live database), so readers keep their
        connections and see either the old or the new state. Apply thread only."""
        image = self.path + ".restore"
        try:
            snapshotfile.extract(path, image)
            candidate = _open_candidate(image, self._conn.execute("PRAGMA page_size").get)
            try:
                with self._conn.backup("main", candidate, "main") as backup:
                    backup.step(-1)
            finally:
                candidate.close()
            self._refresh()
            self.auth_revision += 1
        except ENVIRONMENTAL_ERRORS as exc:
            raise StorageFailure(f"restore failed: {type(exc).__name__}") from exc
        finally:
            _remove(image, image + "-journal", image + "-wal", image + "-shm")

    def close(self) -> None:
        self._reader.close()
        self._conn.close()


def _open_candidate(image: str, page_size: int) -> apsw.Connection:
    """Open an extracted snapshot image and prove it is a sound vaultd database at our schema version."""
    try:
        conn = apsw.Connection(image)
    except apsw.Error as exc:
        raise SnapshotInvalid(f"image does not open ({type(exc).__name__})") from None
    try:
        if conn.execute("PRAGMA integrity_check").get != "ok":
            raise SnapshotInvalid("integrity_check failed")
        found = conn.execute("PRAGMA user_version").get
        if not 1 <= found <= SCHEMA_VERSION:
            raise SnapshotInvalid(f"unsupported schema version {found}")
        migrate(conn)
        read_applied(conn)
        conn.execute("PRAGMA journal_mode=DELETE")
        if conn.execute("PRAGMA page_size").get != page_size:
            # a backup into a WAL database cannot change its page size: rewrite the copy to match
            conn.execute(f"PRAGMA page_size={page_size}")
            conn.execute("VACUUM")
    except SnapshotInvalid:
        conn.close()
        raise
    except (apsw.Error, StorageFailure) as exc:
        conn.close()
        raise SnapshotInvalid(f"not a vaultd database ({type(exc).__name__})") from None
    return conn


def _remove(*paths: str) -> None:
    for p in paths:
        try:
            os.remove(p)
        except FileNotFoundError:
            pass

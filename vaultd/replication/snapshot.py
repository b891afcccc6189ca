"""Snapshots for pysyncobj: a container around the state machine's SQLite backup, built in the background.

Why a container: pysyncobj ships exactly one file (fullDumpFile) to followers behind the log start, and on
load it needs the Raft entries at the snapshot point (lastEntry, prevEntry) and the cluster configuration
back from the deserializer; those must compare equal to the journal's first two entries after compaction or
pysyncobj throws the journal away. So the file is `MAGIC | u32 header length | JSON header | body`, where the
body is the store's own snapshot file (checksummed; verified by StateMachine.restore) and the header holds
the Raft entries (command bytes base64) and member addresses.

Why in the background: the serializer runs on the tick thread, and a multi-second backup there stops
heartbeats and causes elections. `serialize()` only starts a thread and returns; `check()` (pysyncobj's
serializeChecker, polled every tick) reports SERIALIZING until the thread is done, then SUCCESS or FAILED
exactly once. pysyncobj renames the file name it passed us over fullDumpFile as soon as serialize()
returns; we never create that file (the rename fails harmlessly) and rename our finished file ourselves.
The database image may be newer than the Raft index recorded in the header (applies continue while the
backup runs); that is safe because the state machine skips indexes at or below its applied index.

On load (`deserialize()`: node restart, or a snapshot received from the leader) the body is restored only
when the local database is behind the snapshot; a restart with an up-to-date database only reads the header.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.node import TCPNode

from vaultd.observability import metrics
from vaultd.observability.logs import log_snapshot
from vaultd.replication.journal import fsync_dir
from vaultd.store.errors import StorageFailure

log = logging.getLogger("vaultd.raft")

MAGIC = b"VAULTDS1"
_LEN = struct.Struct("<I")
FAILURE_BACKOFF_SECONDS = 5.0


def _entry_to_json(entry: Any) -> list[Any]:
    command, idx, term = entry
    return [int(idx), int(term), base64.b64encode(bytes(command)).decode()]


def _entry_from_json(doc: list[Any]) -> tuple[bytes, int, int]:
    idx, term, command = doc
    return (base64.b64decode(command), int(idx), int(term))


def read_header(path: str) -> tuple[dict[str, Any], int]:
    """(header, body offset) of a snapshot container; ValueError when the file is not one."""
    with open(path, "rb") as f:
        head = f.read(len(MAGIC) + _LEN.size)
        if len(head) != len(MAGIC) + _LEN.size or head[:len(MAGIC)] != MAGIC:
            raise ValueError(f"{path} is not a vaultd snapshot")
        (length,) = _LEN.unpack(head[len(MAGIC):])
        header = json.loads(f.read(length))
    return header, len(MAGIC) + _LEN.size + length


class Snapshotter:
    """pysyncobj serializer / serializeChecker / deserializer over `machine.snapshot()` / `restore()`."""

    def __init__(self, machine: Any, dump_path: str, fsync: bool = True,
                 fatal: Callable[[str], None] | None = None, journal: Any = None) -> None:
        self.machine = machine
        self._fatal = fatal
        self._journal = journal
        self.dump_path = dump_path
        self.fsync = fsync
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._outcome: int | None = None          # SUCCESS/FAILED waiting to be reported once
        self._retry_at = 0.0
        self.last_index = 0                       # Raft index of the latest snapshot on disk
        self.last_size = 0
        for stale in (dump_path + ".tmp", dump_path + ".building", dump_path + ".body", dump_path + ".restore"):
            if os.path.exists(stale):
                os.unlink(stale)
        if os.path.exists(dump_path):
            try:
                header, _ = read_header(dump_path)
                self.last_index = int(header["last"][0])
                self.last_size = os.path.getsize(dump_path)
            except (OSError, ValueError, KeyError):
                log.warning("existing snapshot file unreadable; it will be replaced by the next snapshot")

    # --- serializer (tick thread) ---------------------------------------------------------------------------
    def serialize(self, file_name: str, raft_data: Any) -> None:
        last, prev, cluster = raft_data
        with self._lock:
            if self._thread is not None:
                return
            if time.monotonic() < self._retry_at:   # back off after a failure: stay "SERIALIZING" meanwhile
                self._thread = threading.Thread(target=self._wait_backoff, daemon=True, name="vaultd-snapshot")
            else:
                header = {"last": _entry_to_json(last), "prev": _entry_to_json(prev),
                          "cluster": sorted(str(getattr(n, "address", n)) for n in cluster)}
                self._thread = threading.Thread(target=self._build, args=(header,), daemon=True,
                                                name="vaultd-snapshot")
            self._thread.start()

    def _wait_backoff(self) -> None:
        time.sleep(max(0.0, self._retry_at - time.monotonic()))
        with self._lock:
            self._outcome = SERIALIZER_STATE.FAILED
            self._thread = None

    def _build(self, header: dict[str, Any]) -> None:
        start = time.perf_counter()
        body = self.dump_path + ".body"
        building = self.dump_path + ".building"
        index = int(header["last"][0])
        try:
            info = self.machine.snapshot(body)
            header["machine_index"] = int(info.index)
            header["machine_term"] = int(info.term)
            blob = json.dumps(header).encode()
            with open(building, "wb") as out, open(body, "rb") as src:
                out.write(MAGIC + _LEN.pack(len(blob)) + blob)
                shutil.copyfileobj(src, out, 1 << 20)
                out.flush()
                if self.fsync:
                    os.fsync(out.fileno())
            os.replace(building, self.dump_path)
            if self.fsync:
                fsync_dir(os.path.dirname(os.path.abspath(self.dump_path)))
            size = os.path.getsize(self.dump_path)
            seconds = time.perf_counter() - start
            metrics.raft_snapshot_seconds.observe(seconds)
            metrics.raft_snapshot_size_bytes.set(size)
            log_snapshot(index, size, seconds, kind="taken")
            outcome = SERIALIZER_STATE.SUCCESS
            self.last_index, self.last_size = index, size
        except Exception as exc:  # a failed snapshot keeps the old one and the journal; retried after a pause
            metrics.raft_snapshots_failed_total.inc()
            log_snapshot(index, 0, time.perf_counter() - start, ok=False, error=type(exc).__name__)
            self._retry_at = time.monotonic() + FAILURE_BACKOFF_SECONDS
            outcome = SERIALIZER_STATE.FAILED
        finally:
            for leftover in (body, building):
                if os.path.exists(leftover):
                    os.unlink(leftover)
        with self._lock:
            self._outcome = outcome
            self._thread = None

    def check(self) -> int:
        """pysyncobj serializeChecker: SERIALIZING while building; SUCCESS/FAILED reported exactly once."""
        with self._lock:
            if self._thread is not None:
                return SERIALIZER_STATE.SERIALIZING
            outcome, self._outcome = self._outcome, None
            return SERIALIZER_STATE.NOT_SERIALIZING if outcome is None else outcome

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._thread is not None

    def _align_journal(self, prev: tuple[bytes, int, int], last: tuple[bytes, int, int]) -> None:
        """After a crash between installing a new snapshot file and compacting the journal, the journal still
        starts before the snapshot point; pysyncobj would then CLEAR it (losing entries after the snapshot).
        Compact it to start at the snapshot's prevEntry first, which is what pysyncobj expects."""
        j = self._journal
        if j is None or len(j) < 2:
            return
        pos = prev[1] - j[0][1]
        if 0 < pos < len(j) - 1 and j[pos] == prev and j[pos + 1] == last:
            j.deleteEntriesTo(pos)

    # --- deserializer (tick thread) -------------------------------------------------------------------------
    def deserialize(self, file_name: str) -> tuple[Any, Any, list[TCPNode]]:
        start = time.perf_counter()
        header, offset = read_header(file_name)
        last, prev = _entry_from_json(header["last"]), _entry_from_json(header["prev"])
        machine_index = int(header.get("machine_index", last[1]))
        kind = "restored"
        if self.machine.applied_index < machine_index:
            tmp = self.dump_path + ".restore"
            with open(file_name, "rb") as src, open(tmp, "wb") as out:
                src.seek(offset)
                shutil.copyfileobj(src, out, 1 << 20)
            try:
                self.machine.restore(tmp)
            except StorageFailure as exc:   # the local database is broken: stop rather than run on it
                if self._fatal is not None:
                    self._fatal(f"storage failure restoring snapshot {last[1]}: {type(exc).__name__}")
                raise
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            kind = "installed"
            if self.fsync:   # pysyncobj wrote the received file without fsync; the journal will point past it
                with open(file_name, "rb") as f:
                    os.fsync(f.fileno())
                fsync_dir(os.path.dirname(os.path.abspath(file_name)))
        self._align_journal(prev, last)
        self.last_index = last[1]
        self.last_size = os.path.getsize(file_name)
        log_snapshot(last[1], self.last_size, time.perf_counter() - start, kind=kind)
        return last, prev, [TCPNode(addr) for addr in header["cluster"]]

"""A durable Raft journal for pysyncobj: append-only file with checksummed records and group fsync.

Why our own journal: pysyncobj 0.3.17's FileJournal writes through mmap without msync, stores term/vote and
commit index without fsync, and compacts by rewriting the file in place (a crash mid-rewrite loses the tail).
This class keeps the pysyncobj Journal interface (it is what `SyncObj.__raftLog` calls) and changes only
how bytes reach the disk:

- `add()` appends a record `<len u32><crc32 u32><idx u64><term u64><command>` with os.write and marks the
  file dirty; `sync()` makes everything written so far durable with one fdatasync. The node calls `sync()`
  before a follower's ack (next_node_idx) or a vote leaves, and at the end of every tick (a leader's own
  entries: Raft §10.2.1, see node.py), so one fsync covers every entry appended since the last one (group
  commit) and nothing is acknowledged, voted on or counted toward a commit before it is on disk.
- a failed write or fsync calls `on_failure` (the node stops): after a failed fsync the kernel may have
  dropped the dirty pages, so retrying it could report success for data that is gone.
- term and vote (`setCurrentTerm`) are written to the meta file and fsynced before returning, i.e. before the
  vote message that depends on them is sent (Raft §5.1). The commit index is persisted about once a second:
  a stale commit index is safe (it only bounds what is replayed before a leader is known), a too-high one is
  impossible because entries are fsynced before they can commit.
- compaction (`deleteEntriesTo`) writes the surviving records to a new file, fsyncs it and renames it over
  the old one, so a crash leaves either the old or the new journal, never half of one.
- a torn or corrupted tail (crash mid-append) is detected by length/CRC at load and cut off; those entries
  were never acknowledged because the fsync that would have covered them did not complete.

With `fsync=False` (`--unsafe-no-fsync`) the same writes happen without fdatasync: entries survive a process
crash (they are in the page cache) but not a power failure.

Threading: every method is called from the pysyncobj tick thread only (status readers use len()).
"""

from __future__ import annotations

import errno
import json
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from vaultd.observability import metrics

MAGIC = b"VAULTDJ1"
_REC = struct.Struct("<IIQQ")  # command length, crc32(idx, term, command), idx, term

Entry = tuple[bytes, int, int]  # (command, index, term), the tuple shape pysyncobj compares and slices


def fsync_dir(path: str) -> None:
    """Make a rename/creation inside `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_durably(path: str, data: bytes, fsync: bool = True) -> None:
    """Replace `path` atomically with `data` (tmp + fsync + rename + dir fsync)."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if fsync:
        fsync_dir(os.path.dirname(os.path.abspath(path)))


def _record(command: bytes, idx: int, term: int) -> bytes:
    body = struct.pack("<QQ", idx, term) + command
    return _REC.pack(len(command), zlib.crc32(body), idx, term) + command


class DurableJournal:
    """pysyncobj Journal implementation (duck-typed: add/clear/deleteEntriesFrom/deleteEntriesTo/...)."""

    def __init__(self, path: str, fsync: bool = True, on_failure: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.meta_path = path + ".meta"
        self.fsync_enabled = fsync
        # Called (then the OSError re-raised) when a write or fsync fails after load: pysyncobj would log the
        # error and carry on, and after a failed fsync the page cache cannot be trusted (the kernel may have
        # dropped the dirty pages), so the node must stop rather than acknowledge what may not be on disk.
        self._on_failure = on_failure
        self._entries: list[Entry] = []
        self._offsets: list[int] = []      # file offset of each entry's record
        self._dirty = False
        self._meta: dict[str, Any] = self._load_meta()
        self._meta_dirty = False
        self.truncated_tail_bytes = 0       # bytes cut off a torn tail at load (reported in logs by the node)
        self._fd = self._open_and_load()

    # --- loading ----------------------------------------------------------------------------------------
    def _load_meta(self) -> dict[str, Any]:
        try:
            with open(self.meta_path, "rb") as f:
                meta = json.loads(f.read())
            return meta if isinstance(meta, dict) else {}
        except (OSError, ValueError):
            return {}

    def _open_and_load(self) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        size = os.fstat(fd).st_size
        if size < len(MAGIC):
            os.ftruncate(fd, 0)
            os.pwrite(fd, MAGIC, 0)
            self._sync_fd(fd)
            fsync_dir(os.path.dirname(os.path.abspath(self.path))) if self.fsync_enabled else None
            return fd
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read()
        if data[:len(MAGIC)] != MAGIC:
            os.close(fd)
            raise RuntimeError(f"{self.path} is not a vaultd journal")
        pos = len(MAGIC)
        while pos + _REC.size <= len(data):
            length, crc, idx, term = _REC.unpack_from(data, pos)
            end = pos + _REC.size + length
            if end > len(data):
                break
            command = data[pos + _REC.size:end]
            if zlib.crc32(struct.pack("<QQ", idx, term) + command) != crc:
                break
            self._entries.append((command, idx, term))
            self._offsets.append(pos)
            pos = end
        if pos != len(data):
            self.truncated_tail_bytes = len(data) - pos
            os.ftruncate(fd, pos)
            self._sync_fd(fd)
        return fd

    def _sync_fd(self, fd: int) -> None:
        if self.fsync_enabled:
            start = time.perf_counter()
            os.fdatasync(fd)
            metrics.raft_journal_fsync_seconds.observe(time.perf_counter() - start)

    # --- durability ---------------------------------------------------------------------------------------
    def sync(self) -> None:
        """Flush everything appended/truncated since the last sync (one fdatasync for the whole group).
        The journal stays dirty unless the fdatasync succeeded."""
        if self._dirty:
            with self._failing("fsync"):
                self._sync_fd(self._fd)
            self._dirty = False

    @contextmanager
    def _failing(self, what: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            if self._on_failure is not None:
                self._on_failure(f"journal {what} failed: {type(exc).__name__} errno {exc.errno}")
            raise

    @property
    def dirty(self) -> bool:
        return self._dirty

    @property
    def size_bytes(self) -> int:
        return self._end_offset()

    def _end_offset(self) -> int:
        if not self._offsets:
            return len(MAGIC)
        command, _, _ = self._entries[-1]
        return self._offsets[-1] + _REC.size + len(command)

    # --- pysyncobj Journal interface ---------------------------------------------------------------------
    def add(self, command: bytes, idx: int, term: int) -> None:
        command = bytes(command)
        offset = self._end_offset()
        record = _record(command, idx, term)
        with self._failing("append"):
            written = os.pwrite(self._fd, record, offset)
            if written != len(record):   # disk full part-way: a short count, not an exception
                raise OSError(errno.ENOSPC, f"short journal write ({written} of {len(record)} bytes)")
        self._entries.append((command, idx, term))
        self._offsets.append(offset)
        self._dirty = True

    def clear(self) -> None:
        self._entries = []
        self._offsets = []
        with self._failing("truncate"):
            os.ftruncate(self._fd, len(MAGIC))
        self._dirty = True

    def deleteEntriesFrom(self, entryFrom: int) -> None:  # noqa: N802 (pysyncobj interface)
        """Drop entries at list positions >= entryFrom (conflicting tail replaced by the leader)."""
        if entryFrom >= len(self._entries):
            return
        cut = self._offsets[entryFrom]
        del self._entries[entryFrom:]
        del self._offsets[entryFrom:]
        with self._failing("truncate"):
            os.ftruncate(self._fd, cut)
        self._dirty = True

    def deleteEntriesTo(self, entryTo: int) -> None:  # noqa: N802 (pysyncobj interface)
        """Drop entries at list positions < entryTo (compaction after a snapshot): atomic file rewrite."""
        if entryTo <= 0:
            return
        keep = self._entries[entryTo:]
        tmp = self.path + ".compact"
        offsets = []
        parts = [MAGIC]
        pos = len(MAGIC)
        for command, idx, term in keep:
            rec = _record(command, idx, term)
            offsets.append(pos)
            parts.append(rec)
            pos += len(rec)
        data = b"".join(parts)
        with self._failing("compaction"):
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                if os.write(fd, data) != len(data):
                    raise OSError(errno.ENOSPC, "short write of the compacted journal")
                self._sync_fd(fd)
            except BaseException:
                os.close(fd)
                raise
            os.replace(tmp, self.path)
            if self.fsync_enabled:
                fsync_dir(os.path.dirname(os.path.abspath(self.path)))
        os.close(self._fd)
        self._fd = fd
        self._entries = keep
        self._offsets = offsets
        self._dirty = False

    def __getitem__(self, item: int | slice) -> Any:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def _destroy(self) -> None:
        if self._fd < 0:
            return
        self.sync()
        self._store_meta()
        os.close(self._fd)
        self._fd = -1

    def flush(self) -> None:
        self.sync()

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:  # noqa: N802
        if self._meta.get("commit_index") != raftCommitIndex:
            self._meta["commit_index"] = raftCommitIndex
            self._meta_dirty = True

    def getRaftCommitIndex(self) -> int:  # noqa: N802
        return int(self._meta.get("commit_index", 1))

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:  # noqa: N802
        self._meta["term"] = term
        self._meta["voted_for"] = None if votedForNodeId is None else str(votedForNodeId)
        self._store_meta()

    def getCurrentTerm(self) -> int:  # noqa: N802
        return int(self._meta.get("term", 0))

    def getVotedForNodeId(self) -> Any:  # noqa: N802
        return self._meta.get("voted_for")

    def onOneSecondTimer(self) -> None:  # noqa: N802
        if self._meta_dirty:
            self._store_meta()

    def _store_meta(self) -> None:
        # Entries first: a persisted commit index must never point past durable entries.
        self.sync()
        with self._failing("meta write"):
            write_file_durably(self.meta_path, json.dumps(self._meta).encode(), self.fsync_enabled)
        self._meta_dirty = False

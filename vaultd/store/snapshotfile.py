"""The snapshot file: one self-contained file (pysyncobj ships exactly one file to a lagging follower).

Layout: a 72-byte header followed by the SQLite database image (an online backup converted to a
rollback-journal database, so the image is complete without -wal/-shm files):

    magic b"VLTSNAP1" | format u32 | reserved u32 | index u64 | term u64 | image size u64 | sha256(image) 32B

The header carries the image size (a truncated file is refused before hashing) and its sha256 (bit rot or a
partial transfer is refused before anything touches the live database). Index and term are readable without
restoring, which the replication layer needs to decide whether a snapshot is newer than its state.
A file we cannot read or trust is SnapshotInvalid; failing to write our own files (disk full) is StorageFailure.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from pathlib import Path
from typing import BinaryIO

from vaultd.store.errors import SnapshotInvalid, StorageFailure
from vaultd.store.results import SnapshotInfo

MAGIC = b"VLTSNAP1"
FORMAT = 1
_HEADER = struct.Struct(">8sIIQQQ32s")
HEADER_SIZE = _HEADER.size
_COPY_CHUNK = 1 << 20


def write(path: str, image_path: str, index: int, term: int) -> SnapshotInfo:
    """Write header + image to a temporary name beside `path`, fsync, then rename over `path` atomically."""
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.partial"
    digest = hashlib.sha256()
    try:
        with open(image_path, "rb") as src, open(tmp, "wb") as out:
            out.write(b"\0" * HEADER_SIZE)
            _copy_hashing(src, out, digest)
            size = out.tell() - HEADER_SIZE
            out.seek(0)
            out.write(_HEADER.pack(MAGIC, FORMAT, 0, index, term, size, digest.digest()))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise StorageFailure(f"cannot write snapshot ({type(exc).__name__})") from exc
    _fsync_dir(path)
    return SnapshotInfo(path, index, term, HEADER_SIZE + size, digest.hexdigest())


def read_header(path: str) -> SnapshotInfo:
    """Index, term, size and checksum from the header; checks magic, format and the file's length."""
    try:
        with open(path, "rb") as f:
            index, term, size, digest = _parse(f.read(HEADER_SIZE))
        actual = os.path.getsize(path)
    except OSError as exc:
        raise SnapshotInvalid(f"cannot read snapshot file ({type(exc).__name__})") from None
    if actual != HEADER_SIZE + size:
        raise SnapshotInvalid(f"file is {actual} bytes, header says {HEADER_SIZE + size} (truncated or padded)")
    return SnapshotInfo(path, index, term, actual, digest.hex())


def extract(path: str, image_path: str) -> SnapshotInfo:
    """Copy the image out to `image_path`, verifying size and checksum; SnapshotInvalid on any mismatch."""
    info = read_header(path)
    digest = hashlib.sha256()
    try:
        src = open(path, "rb")
    except OSError as exc:
        raise SnapshotInvalid(f"cannot read snapshot file ({type(exc).__name__})") from None
    with src:
        src.seek(HEADER_SIZE)
        try:   # failing to write our own copy is this node's problem, not the snapshot's
            with open(image_path, "wb") as out:
                _copy_hashing(src, out, digest)
        except OSError as exc:
            raise StorageFailure(f"cannot write the snapshot image ({type(exc).__name__})") from exc
    if digest.hexdigest() != info.checksum:
        raise SnapshotInvalid("checksum mismatch")
    return info


def _parse(header: bytes) -> tuple[int, int, int, bytes]:
    if len(header) != HEADER_SIZE:
        raise SnapshotInvalid("file is shorter than the snapshot header")
    magic, fmt, _, index, term, size, digest = _HEADER.unpack(header)
    if magic != MAGIC:
        raise SnapshotInvalid("not a vaultd snapshot (bad magic)")
    if fmt != FORMAT:
        raise SnapshotInvalid(f"unsupported snapshot format {fmt}")
    return index, term, size, digest


def _copy_hashing(src: BinaryIO, out: BinaryIO, digest: hashlib._Hash) -> None:
    while chunk := src.read(_COPY_CHUNK):
        digest.update(chunk)
        out.write(chunk)


def _fsync_dir(path: str) -> None:
    fd = os.open(Path(path).resolve().parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

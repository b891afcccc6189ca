"""pysyncobj's peer wire format, bounded: one frame = 4-byte length | Fernet(zlib(pickle(message))).

Why a module of its own: the hardened connection (transport.py) and the blocking peer client (peer_client.py)
must agree byte for byte with pysyncobj 0.3.17's TcpConnection, and every cap that protects the Raft port
lives here with its reason.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import pysyncobj.pickle as pickle

# A frame from a peer that has not proved the cluster secret yet holds a 32-byte random key, a node address
# or a utility command: a few hundred bytes once encrypted. 64 KiB is generous and caps what an anonymous
# client can make this node buffer per connection.
HANDSHAKE_FRAME_MAX_BYTES = 64 * 1024
# A connection must prove the secret (and finish TLS) within this time, else it is closed:
# a peer answers in milliseconds; a slowloris client would otherwise hold a slot forever.
HANDSHAKE_TIMEOUT_SECONDS = 5.0
# Accepted connections not yet trusted (see connection.py), at most. A cluster has a handful of members that
# reconnect at most every connectionRetryTime; beyond the cap new connections are closed at accept, and an
# untrusted connection buffers at most one handshake frame plus one receive chunk, so memory held for
# anonymous clients stays below MAX_PENDING_HANDSHAKES * (64 + 64) KiB = 8 MiB.
MAX_PENDING_HANDSHAKES = 64
# Bytes read from one connection per poll event: the tick thread also runs elections and heartbeats, so a fast
# sender must not keep it in one read loop (the poll is level-triggered: the rest is read on the next round).
READ_BUDGET_PER_EVENT = 1024 * 1024
# Kernel listen backlog (pysyncobj uses 5, so a burst of connections made real peers' SYNs wait).
LISTEN_BACKLOG = 128
# Connections accepted per poll event, so a connection flood cannot monopolise the tick thread either.
ACCEPT_BATCH = 64
LENGTH = struct.Struct("i")     # pysyncobj packs the length with native 'i' (little-endian on x86/ARM)


def frame_max_bytes(entry_max_bytes: int) -> int:
    """Largest frame an authenticated peer may send.

    An append_entries message carries entries until their sum reaches appendEntriesBatchSizeBytes (2 x
    entry_max_bytes, see node.py) plus the entry that crossed it: under 3 x entry_max_bytes pickled; zlib
    barely grows incompressible data and Fernet's base64 adds a third: ~4.1 x. Snapshot chunks are 64 KiB.
    8 x leaves room for pickling overhead without letting a frame claim 2 GiB.
    """
    return 8 * entry_max_bytes


class FrameError(Exception):
    """A frame that must close the connection; `reason` is the metric label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def frame_length(header: bytes | bytearray | memoryview, limit: int) -> int:
    """The announced length, checked against `limit` before a single byte of the body is buffered."""
    length = LENGTH.unpack(bytes(header[:4]))[0]
    if length < 0 or length > limit:
        raise FrameError("frame_too_large")
    return length


def encode(message: Any, encryptor: Any, send_rand_key: bytes | None, timestamp: int) -> bytes:
    """One frame, exactly as pysyncobj's TcpConnection.send builds it."""
    if send_rand_key:
        message = (send_rand_key, message)
    data = zlib.compress(pickle.dumps(message), 3)
    if encryptor is not None:
        data = encryptor.encrypt_at_time(data, timestamp)
    return LENGTH.pack(len(data)) + data


def decode(data: bytes, encryptor: Any, last_timestamp: int, recv_rand_key: bytes | None,
           max_plain: int) -> tuple[Any, int]:
    """(message, its timestamp). Decrypts (authenticates) BEFORE decompressing or unpickling anything, and
    decompresses at most `max_plain` bytes (a small authenticated frame must not inflate to gigabytes)."""
    timestamp = last_timestamp
    if encryptor is not None:
        try:
            timestamp = encryptor.extract_timestamp(data)
            data = encryptor.decrypt(data)
        except Exception:
            raise FrameError("bad_frame") from None
        if timestamp < last_timestamp:
            raise FrameError("bad_frame")
    inflater = zlib.decompressobj()
    try:
        plain = inflater.decompress(data, max_plain)
    except zlib.error:
        raise FrameError("bad_frame") from None
    if inflater.unconsumed_tail:
        raise FrameError("frame_too_large")
    try:
        message = pickle.loads(plain)
    except Exception:
        raise FrameError("bad_frame") from None
    if recv_rand_key:
        if not (isinstance(message, tuple) and len(message) == 2 and message[0] == recv_rand_key):
            raise FrameError("bad_frame")
        message = message[1]
    return message, timestamp

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
# An accepted connection that sends nothing at all within this time is closed: a peer sends its first frame
# (or its TLS ClientHello) the moment it is connected; an idle connection only holds a slot.
FIRST_BYTE_TIMEOUT_SECONDS = 1.0
# Accepted connections not yet trusted (see connection.py), at most. A cluster has a handful of members that
# reconnect at most every connectionRetryTime; beyond the cap a new connection evicts a lower-ranked pending
# one or is refused (admission.py). An untrusted connection buffers at most one handshake frame plus one
# receive chunk, so memory held for anonymous clients stays below MAX_PENDING_HANDSHAKES * (64 + 64) KiB = 8 MiB.
MAX_PENDING_HANDSHAKES = 64
# Pending connections one non-member source IP may hold: a member dials each node over one link at a time
# (plus a probe or utility call now and then), so 8 is plenty for a legitimate host and leaves the other 56
# slots to everyone else.
MAX_PENDING_PER_SOURCE = 8
# Handshakes a non-member source IP may start: tokens per second and bucket size. Each accepted connection
# may cost a TLS 1.3 server handshake on the tick thread (about a millisecond of CPU); 10/s from one source and
# 50/s from all non-member sources together keep that to a few percent of the tick thread. Member IPs are
# exempt: a member's reconnects must never wait.
HANDSHAKE_RATE_PER_SOURCE = 10.0
HANDSHAKE_BURST_PER_SOURCE = 20.0
NON_MEMBER_HANDSHAKE_RATE = 50.0
NON_MEMBER_HANDSHAKE_BURST = 100.0
# Per-source buckets remembered at most (memory bound under a spread-out flood; the shared bucket still holds).
RATE_LIMITED_SOURCES_MAX = 4096
# How often the set of member IPs is recomputed from the configuration (membership changes at runtime).
MEMBER_IPS_REFRESH_SECONDS = 1.0
# Bytes read from one connection per poll event: the tick thread also runs elections and heartbeats, so a fast
# sender must not keep it in one read loop (the poll is level-triggered: the rest is read on the next round).
READ_BUDGET_PER_EVENT = 1024 * 1024
# Kernel listen backlog (pysyncobj uses 5, so a burst of connections made real peers' SYNs wait).
LISTEN_BACKLOG = 128
# Connections accepted per poll event, so a connection flood cannot monopolise the tick thread either. A
# quarter of MAX_PENDING_HANDSHAKES: under a flood a new connection is the last to be evicted, so it survives at
# least three poll rounds, in which a peer's first frame (sent at connect) is read and outranks the flood.
ACCEPT_BATCH = 16
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

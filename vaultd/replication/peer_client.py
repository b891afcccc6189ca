"""A blocking client for another node's Raft port: pysyncobj's key exchange, then one utility command.

Why not pysyncobj's TcpUtility: it cannot speak TLS, and vaultd needs two things from a peer's port that it
does not offer together: a probe ("does this address answer with the cluster's credentials?", run before a
member is added) and the utility commands (`remove`, `transfer`) over the same mutually authenticated link.
The key exchange proves the peer holds the cluster secret: its random key comes back Fernet-encrypted with
the key derived from it; with peer TLS the handshake also proves a certificate from the peer CA that names
the host we dialled.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from typing import Any

from vaultd.config import parse_hostport
from vaultd.replication import wire
from vaultd.replication.peer_tls import PeerTls


class PeerUnreachable(Exception):
    """The peer did not answer as a member would; `why` is a short value-free label for ErrorInfo metadata."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def call(addr: str, encryptor: Any, tls: PeerTls | None, timeout: float, command: list[Any] | None = None,
         frame_max: int = wire.HANDSHAKE_FRAME_MAX_BYTES) -> Any:
    """Authenticate to `addr`; with `command`, run it and return pysyncobj's answer (e.g. "SUCCESS remove ...")."""
    host, port = parse_hostport(addr)
    deadline = time.monotonic() + timeout
    try:
        raw = socket.create_connection((host, port), timeout=max(0.05, timeout))
    except TimeoutError:
        raise PeerUnreachable("connect_timeout") from None
    except ConnectionRefusedError:
        raise PeerUnreachable("connection_refused") from None
    except OSError:
        raise PeerUnreachable("connect_failed") from None
    sock: Any = raw
    try:
        if tls is not None:
            try:
                sock = tls.client.wrap_socket(raw, server_hostname=host)
            except ssl.SSLCertVerificationError:
                raise PeerUnreachable("tls_identity") from None
            except (ssl.SSLError, OSError):
                raise PeerUnreachable("tls_handshake") from None
        my_key = os.urandom(32)
        _send(sock, wire.encode(my_key, encryptor, None, int(time.monotonic())), deadline)
        their_key, stamp = _receive(sock, encryptor, 0, my_key, deadline, wire.HANDSHAKE_FRAME_MAX_BYTES)
        if command is None:
            return None
        _send(sock, wire.encode(list(command), encryptor, their_key, int(time.monotonic())), deadline)
        return _receive(sock, encryptor, stamp, my_key, deadline, frame_max)[0]
    finally:
        sock.close()


def _send(sock: Any, frame: bytes, deadline: float) -> None:
    sock.settimeout(max(0.05, deadline - time.monotonic()))
    try:
        sock.sendall(frame)
    except TimeoutError:
        raise PeerUnreachable("timeout") from None
    except OSError:
        raise PeerUnreachable("closed") from None


def _receive(sock: Any, encryptor: Any, stamp: int, my_key: bytes, deadline: float,
             frame_max: int) -> tuple[Any, int]:
    header = _read_exactly(sock, 4, deadline)
    try:
        length = wire.frame_length(header, frame_max)
        return wire.decode(_read_exactly(sock, length, deadline), encryptor, stamp, my_key, frame_max)
    except wire.FrameError:
        raise PeerUnreachable("bad_credentials") from None


def _read_exactly(sock: Any, n: int, deadline: float) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PeerUnreachable("timeout")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(n - len(buf))
        except TimeoutError:
            raise PeerUnreachable("timeout") from None
        except OSError:
            chunk = b""
        if not chunk:
            # A node with another secret closes the connection on our first frame.
            raise PeerUnreachable("closed_during_handshake")
        buf += chunk
    return bytes(buf)

"""PeerConnection: a drop-in for pysyncobj's TcpConnection that an anonymous client cannot exhaust.

Why not subclass TcpConnection: its buffers and state are name-mangled privates, the flaws are in the middle
of its read path (it trusts the 4-byte length up to 2 GiB, re-copies its whole receive buffer on every read,
reads until EAGAIN however fast the sender is), and it has no place for a TLS handshake. This class keeps its
public surface (what pysyncobj's TCPTransport calls: connect, send, disconnect, state, the three callbacks and
the sendRandKey / recvRandKey / recvLastTimestamp / encryptor attributes; nothing else in pysyncobj touches a
connection) and the same bytes on the wire.

Differences that matter:
- frames are capped before they are buffered: `wire.HANDSHAKE_FRAME_MAX_BYTES` until the connection is
  `trusted`, the authenticated cap after; a frame over the cap closes the connection;
- the receive buffer is a bytearray consumed from the front (amortised O(1) in CPython), not re-built per
  read; the send buffer likewise;
- at most `wire.READ_BUDGET_PER_EVENT` bytes per poll event;
- optional TLS (`ssl.SSLContext`), handshaken without blocking: SSLWantRead/SSLWantWrite just wait for the
  next poll event;
- `trusted` / `started_at` let the transport close connections that do not authenticate in time.

`trusted` means the peer proved the cluster secret in a way that cannot be replayed: on an outgoing connection,
its first answer decrypted and carried the random key we just sent; on an incoming one, the transport sets it
when the peer's second frame (its address or a utility command, bound to the key this side just sent) was
accepted. A first frame alone proves nothing: someone who recorded a peer's first frame could replay it.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.tcp_connection import CONNECTION_STATE, set_keepalive

from vaultd.replication import wire

# Bytes handed to one send()/recv() call: a send copies at most this much out of the buffer (so a large
# append_entries is not copied whole per partial write), a recv matches the kernel's usual socket buffer.
_SEND_CHUNK = 256 * 1024
_RECV_CHUNK = 64 * 1024
_IN, _OUT, _ERR = POLL_EVENT_TYPE.READ, POLL_EVENT_TYPE.WRITE, POLL_EVENT_TYPE.ERROR

Reject = Callable[[str, str], None]   # (remote address, reason)


class PeerConnection:
    def __init__(self, poller: Any, *, timeout: float, frame_max: int, reject: Reject,
                 tls: ssl.SSLContext | None = None, sock: socket.socket | None = None,
                 keepalive: tuple[int, int, int] | None = None) -> None:
        self.sendRandKey: bytes | None = None     # noqa: N815 (pysyncobj's attribute names)
        self.recvRandKey: bytes | None = None     # noqa: N815
        self.recvLastTimestamp = 0                # noqa: N815
        self.encryptor: Any = None
        self.trusted = False
        self.started_at = time.monotonic()
        self.remote = ""
        # Accepted connections only (admission.py): the source IP, whether it is a member's, and whether any
        # byte has arrived yet (the transport closes silent ones after wire.FIRST_BYTE_TIMEOUT_SECONDS).
        self.source_ip = ""
        self.member_source = False
        self.got_data = False
        self._poller = poller
        self._timeout = timeout
        self._frame_max = frame_max
        self._reject = reject
        self._tls = tls
        self._keepalive = keepalive
        # The name an outgoing TLS connection checks the server certificate against: the host as configured
        # (pysyncobj hands connect() the resolved IP, which a certificate naming a DNS host would not match).
        self.tls_name: str | None = None
        self._handshaking = False
        self._outgoing = sock is None
        self._read_buf = bytearray()
        self._write_buf = bytearray()
        self._last_read = time.monotonic()
        self._on_message: Callable[[Any], None] | None = None
        self._on_connected: Callable[[], None] | None = None
        self._on_disconnected: Callable[[], None] | None = None
        self._sock: Any = None
        self._fileno: int | None = None
        self._state = CONNECTION_STATE.DISCONNECTED
        if sock is not None:   # accepted by the server
            try:
                host, port = sock.getpeername()[:2]
                self.remote = f"{host}:{port}"
                self.source_ip = host
            except OSError:
                pass
            self._sock = sock
            self._fileno = sock.fileno()
            self._state = CONNECTION_STATE.CONNECTED
            self._set_keepalive()
            if tls is not None:
                self._sock = tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                self._handshaking = True
            self._subscribe()

    # --- pysyncobj's TcpConnection surface --------------------------------------------------------------------
    @property
    def state(self) -> int:
        return self._state

    def setOnConnectedCallback(self, callback: Callable[[], None]) -> None:  # noqa: N802
        self._on_connected = callback

    def setOnMessageReceivedCallback(self, callback: Callable[[Any], None]) -> None:  # noqa: N802
        self._on_message = callback

    def setOnDisconnectedCallback(self, callback: Callable[[], None]) -> None:  # noqa: N802
        self._on_disconnected = callback

    def connect(self, host: str, port: int) -> bool:
        if host is None:
            return False
        self._reset()
        self.started_at = self._last_read = time.monotonic()
        self.remote = f"{host}:{port}"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._set_keepalive()
        sock.setblocking(False)
        try:
            sock.connect((host, port))
        except BlockingIOError:
            pass
        except OSError:
            sock.close()
            self._sock = None
            return False
        self._fileno = sock.fileno()
        self._state = CONNECTION_STATE.CONNECTING
        self._subscribe()
        return True

    def send(self, message: Any) -> None:
        if self._state == CONNECTION_STATE.DISCONNECTED:
            return
        if time.monotonic() - self._last_read > self._timeout:
            # As pysyncobj does: a peer silent for `timeout` is gone (e.g. stopped); reconnect instead of
            # queueing heartbeats behind a full socket buffer forever.
            self.disconnect()
            return
        self._write_buf += wire.encode(message, self.encryptor, self.sendRandKey, int(time.monotonic()))
        self._flush()

    def disconnect(self) -> None:
        notify = self._on_disconnected is not None and self._state != CONNECTION_STATE.DISCONNECTED
        self._reset()
        if notify and self._on_disconnected is not None:
            self._on_disconnected()

    @property
    def outgoing(self) -> bool:
        return self._outgoing

    @property
    def progressed(self) -> bool:
        """Whether the peer proved something already: a TLS handshake with a certificate from the peer CA, or a
        first frame that decrypted with the cluster secret. Ranks the connection above idle ones (admission.py)."""
        if self._state == CONNECTION_STATE.DISCONNECTED:
            return False
        return self.sendRandKey is not None or (self._tls is not None and not self._handshaking)

    def peer_certificate(self) -> bytes | None:
        """The peer's TLS certificate (DER), None without TLS or before the handshake completed."""
        if self._tls is None or self._sock is None or self._handshaking:
            return None
        try:
            return self._sock.getpeercert(binary_form=True)
        except (ValueError, OSError):
            return None

    # --- internals --------------------------------------------------------------------------------------------
    def _reset(self) -> None:
        self.sendRandKey = self.recvRandKey = None
        self.recvLastTimestamp = 0
        self.trusted = False
        self._handshaking = False
        if self._fileno is not None:
            self._poller.unsubscribe(self._fileno)
            self._fileno = None
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None
        self._read_buf = bytearray()
        self._write_buf = bytearray()
        self._state = CONNECTION_STATE.DISCONNECTED

    def _set_keepalive(self) -> None:
        if self._keepalive is not None and self._sock is not None:
            set_keepalive(self._sock, *self._keepalive)

    def _subscribe(self, want_write: bool = False) -> None:
        if self._fileno is None:
            return
        mask = _IN | _ERR
        # Waiting for the TCP connect needs a write event; a TLS handshake waiting for the peer must not ask
        # for one (the socket is writable at once, so the poll would spin on the tick thread).
        connecting = self._state == CONNECTION_STATE.CONNECTING and not self._handshaking
        if want_write or connecting or (self._write_buf and not self._handshaking):
            mask |= _OUT
        self._poller.subscribe(self._fileno, self._on_event, mask)

    def close_rejected(self, reason: str) -> None:
        """Close a connection the hardening refuses; the transport counts and logs it under `reason`."""
        self._reject(self.remote, reason)
        if self._state != CONNECTION_STATE.DISCONNECTED:
            self.disconnect()

    def _on_event(self, descr: int, event: int) -> None:
        if descr != self._fileno:
            self._poller.unsubscribe(descr)
            return
        if event & _ERR:
            self.disconnect()
            return
        if event & _IN:
            self.got_data = True
        if time.monotonic() - self._last_read > self._timeout:
            self.disconnect()
            return
        if self._state == CONNECTION_STATE.CONNECTING:
            if self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self.disconnect()
                return
            if self._tls is not None and not self._handshaking:
                self._sock = self._tls.wrap_socket(self._sock, server_side=False, do_handshake_on_connect=False,
                                                   server_hostname=self.tls_name or self.remote.rsplit(":", 1)[0])
                self._handshaking = True
            if not self._handshaking:
                self._connected()
                return
        if self._handshaking:
            if not self._handshake():
                return
            if self._state == CONNECTION_STATE.CONNECTING:
                self._connected()
                if self._state == CONNECTION_STATE.DISCONNECTED:
                    return
            event |= _IN   # application data may have arrived with the last handshake record
        if event & _OUT:
            self._flush()
            if self._state == CONNECTION_STATE.DISCONNECTED:
                return
        if event & _IN:
            self._read()

    def _connected(self) -> None:
        self._state = CONNECTION_STATE.CONNECTED
        self._last_read = time.monotonic()
        if self._on_connected is not None:
            self._on_connected()
        if self._state != CONNECTION_STATE.DISCONNECTED:
            self._subscribe()

    def _handshake(self) -> bool:
        """Advance the TLS handshake; True once it is complete."""
        try:
            self._sock.do_handshake()
        except ssl.SSLWantReadError:
            self._subscribe()
            return False
        except ssl.SSLWantWriteError:
            self._subscribe(want_write=True)
            return False
        except ssl.SSLCertVerificationError:
            self.close_rejected("tls_identity")
            return False
        except (ssl.SSLError, OSError):
            self.close_rejected("tls_handshake")
            return False
        self._handshaking = False
        self._last_read = time.monotonic()
        self._subscribe()
        return True

    def _flush(self) -> None:
        if self._handshaking or self._state != CONNECTION_STATE.CONNECTED:
            self._subscribe()
            return
        want_write = False
        while self._write_buf:
            try:
                sent = self._sock.send(self._write_buf[:_SEND_CHUNK])
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                want_write = True
                break
            except OSError:
                self.disconnect()
                return
            if sent <= 0:
                want_write = True
                break
            del self._write_buf[:sent]
        self._subscribe(want_write)

    def _read(self) -> None:
        budget = wire.READ_BUDGET_PER_EVENT
        buf = self._read_buf
        while budget > 0 or (self._tls is not None and self._sock.pending()):
            try:
                chunk = self._sock.recv(_RECV_CHUNK)
            except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                break
            except ssl.SSLWantWriteError:
                self._subscribe(want_write=True)
                break
            except OSError:
                self.disconnect()
                return
            if not chunk:
                self.disconnect()
                return
            buf += chunk
            budget -= len(chunk)
            if len(buf) >= 4:
                length = self._checked_length(buf)
                if length < 0:
                    return
                if not self.trusted and len(buf) >= 4 + length:
                    break   # a whole handshake frame: judge it before buffering more from this peer
        self._last_read = time.monotonic()
        self._parse(buf)

    def _limit(self) -> int:
        return self._frame_max if self.trusted else wire.HANDSHAKE_FRAME_MAX_BYTES

    def _checked_length(self, header: bytearray) -> int:
        """The announced length of the frame at the start of the buffer; -1 (connection closed) over the cap."""
        try:
            return wire.frame_length(header, self._limit())
        except wire.FrameError as exc:
            self.close_rejected(exc.reason)
            return -1

    def _parse(self, buf: bytearray) -> None:
        pos = 0
        try:
            while len(buf) - pos >= 4:
                length = wire.frame_length(buf[pos:pos + 4], self._limit())
                if len(buf) - pos - 4 < length:
                    break
                data = bytes(buf[pos + 4:pos + 4 + length])
                pos += 4 + length
                message, self.recvLastTimestamp = wire.decode(
                    data, self.encryptor, self.recvLastTimestamp, self.recvRandKey, self._frame_max)
                if self._outgoing:
                    self.trusted = True   # decode() checked it carries our fresh key (recvRandKey)
                if self._on_message is not None:
                    self._on_message(message)
                if self._state == CONNECTION_STATE.DISCONNECTED or buf is not self._read_buf:
                    return
        except wire.FrameError as exc:
            self.close_rejected(exc.reason)
            return
        del buf[:pos]

"""RaftTransport: pysyncobj's TCPTransport with a hardened Raft port, peer TLS and the journal's durability hooks.

What it changes in pysyncobj 0.3.17 (see DESIGN.md for why):
- binds the host of this node's Raft address only (pysyncobj binds 0.0.0.0 unless bindAddress is set);
- every connection is a `PeerConnection` (frame caps, no quadratic buffers, optional TLS);
- accepted connections that have not proved the cluster secret are admitted by `admission.Admission` (rate
  limits and per-source caps for non-member IPs, evict-the-lowest-ranked instead of refusing when the
  `MAX_PENDING_HANDSHAKES` slots are full), closed when silent for `FIRST_BYTE_TIMEOUT_SECONDS` and closed after
  `HANDSHAKE_TIMEOUT_SECONDS`; so are outgoing connections whose peer never answers (the latter deadline);
- with peer TLS, a peer announcing itself as a member must hold a certificate naming that member's host;
- before a follower's ack or a vote leaves, the journal is made durable; incoming append_entries are trimmed
  of the prefix this follower already holds (`trim_append_entries`).
Every connection it closes is logged (address and reason only) and counted in
vaultd_raft_connections_rejected_total{reason}.
"""

from __future__ import annotations

import functools
import logging
import socket
import time
from typing import Any

from pysyncobj.dns_resolver import globalDnsResolver
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.tcp_connection import CONNECTION_STATE
from pysyncobj.transport import TCPTransport

from vaultd.observability import metrics
from vaultd.replication import wire
from vaultd.replication.admission import Admission
from vaultd.replication.connection import PeerConnection
from vaultd.replication.peer_tls import PeerTls, cert_names_host

log = logging.getLogger("vaultd.raft")

# Messages after which a peer relies on this node's log or vote: the journal must be durable before they
# leave (a follower's ack, votes). A leader's append_entries is NOT in the list: Raft lets the leader write
# its log in parallel with replication as long as it does not count itself toward a commit before its own
# fsync, and the end-of-tick sync always runs before the poll that can deliver the acks for those entries
# (pysyncobj computes commits at the start of the next tick).
_DURABLE_BEFORE = frozenset({"next_node_idx", "request_vote", "response_vote"})
# pysyncobj utility commands vaultd uses (membership.py): a node removing itself asks the leader to `remove` it,
# and leadership is moved with `transfer`. The others (`add`, `set_version`, `status`) are refused: `add`
# would skip the strict reconfiguration checks.
UTILITY_COMMANDS = frozenset({"remove", "transfer"})
# One warning per reason per interval at most: a flood of junk connections must not flood the log too
# (the counter still counts every one).
_REJECT_LOG_INTERVAL_SECONDS = 5.0


class _RejectLog:
    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, remote: str, reason: str) -> None:
        metrics.raft_connections_rejected_total.labels(reason).inc()
        now = time.monotonic()
        if now - self._last.get(reason, float("-inf")) < _REJECT_LOG_INTERVAL_SECONDS:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return
        self._last[reason] = now
        log.warning("raft connection closed", extra={"fields": {
            "reason": reason, "remote": remote, "suppressed_since_last": self._suppressed.pop(reason, 0)}})


class _PeerServer:
    """pysyncobj's TcpServer surface (bind/unbind) over a listening socket bound to one host."""

    def __init__(self, transport: RaftTransport, host: str, port: int) -> None:
        self._transport = transport
        self._host, self._port = host, port
        self._sock: socket.socket | None = None

    def bind(self) -> None:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setblocking(False)
            sock.bind((self._host, self._port))
            sock.listen(wire.LISTEN_BACKLOG)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._transport._syncObj._poller.subscribe(sock.fileno(), self._on_accept,
                                                   POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.ERROR)

    def unbind(self) -> None:
        if self._sock is not None:
            self._transport._syncObj._poller.unsubscribe(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def _on_accept(self, _descr: int, event: int) -> None:
        if self._sock is None:
            return
        for _ in range(wire.ACCEPT_BATCH):
            try:
                sock, _addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:   # e.g. EMFILE: try again on the next event rather than unbinding for good
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            self._transport.accept(sock)


class RaftTransport(TCPTransport):
    """Constructed by pysyncobj as `transportClass(syncObj, selfNode, otherNodes)`; bind the vaultd settings
    with functools.partial (see `transport_class`)."""

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any, *,   # noqa: N803 (pysyncobj's names)
                 frame_max: int, tls: PeerTls | None, journal: Any) -> None:
        self._frame_max = frame_max
        self._tls = tls
        self._journal = journal
        self._reject = _RejectLog()
        self._admission = Admission(self._member_ips)
        super().__init__(syncObj, selfNode, otherNodes)

    # --- the port ---------------------------------------------------------------------------------------------
    def _createServer(self) -> None:  # noqa: N802
        host, port = self._selfNode.address.rsplit(":", 1)
        host = host.strip("[]")
        resolved = host if _is_ip(host) else globalDnsResolver().resolve(host)
        if resolved is None:
            raise RuntimeError(f"cannot resolve the Raft host {host}")
        self._server = _PeerServer(self, resolved, int(port))

    def _new_connection(self, sock: socket.socket | None = None) -> PeerConnection:
        conf = self._syncObj.conf
        conn = PeerConnection(self._syncObj._poller, timeout=conf.connectionTimeout, frame_max=self._frame_max,
                              reject=self._reject, tls=(self._tls.server if sock is not None else self._tls.client)
                              if self._tls is not None else None, sock=sock, keepalive=conf.tcp_keepalive)
        conn.encryptor = self._syncObj.encryptor
        return conn

    def accept(self, sock: socket.socket) -> None:
        try:
            ip, port = sock.getpeername()[:2]
        except OSError:
            sock.close()
            return
        pending = [c for c in self._unknownConnections if not c.trusted and c.state != CONNECTION_STATE.DISCONNECTED]
        refusal, victim = self._admission.decide(ip, pending)
        if refusal is not None:
            sock.close()
            self._reject(f"{ip}:{port}", refusal)
            return
        if victim is not None:
            self._unknownConnections.discard(victim)
            victim.close_rejected("evicted")
        conn = self._new_connection(sock)
        conn.member_source = self._admission.is_member_ip(ip)
        self._onNewIncomingConnection(conn)

    def _member_ips(self) -> set[str]:
        nodes = [*self._nodes, self._selfNode]
        return {ip for ip in (getattr(n, "ip", None) for n in nodes) if ip}

    def addNode(self, node: Any) -> None:  # noqa: N802 (same as TCPTransport.addNode, with our connection)
        self._nodes.add(node)
        self._nodeAddrToNode[node.address] = node
        if self._shouldConnect(node):
            conn = self._new_connection()
            conn.tls_name = node.host
            conn.setOnConnectedCallback(functools.partial(self._onOutgoingConnected, conn))
            conn.setOnMessageReceivedCallback(functools.partial(self._onMessageReceived, node))
            conn.setOnDisconnectedCallback(functools.partial(self._onDisconnected, conn))
            self._connections[node] = conn

    def _onTick(self) -> None:  # noqa: N802
        super()._onTick()
        now = time.monotonic()
        for conn in list(self._unknownConnections) + list(self._connections.values()):
            if conn.trusted or conn.state == CONNECTION_STATE.DISCONNECTED:
                continue
            if now - conn.started_at > wire.HANDSHAKE_TIMEOUT_SECONDS:
                conn.close_rejected("handshake_timeout")
            elif not conn.outgoing and not conn.got_data and now - conn.started_at > wire.FIRST_BYTE_TIMEOUT_SECONDS:
                conn.close_rejected("first_byte_timeout")

    def _onIncomingMessageReceived(self, conn: PeerConnection, message: Any) -> None:  # noqa: N802
        """Before pysyncobj sees an incoming connection's handshake frames: refuse what it would raise on (on the
        tick thread), what would bypass vaultd's checks, and, with peer TLS, identities the certificate does not
        back. Every refusal closes the connection."""
        if self._syncObj.encryptor is not None and not conn.sendRandKey:
            # The first frame: pysyncobj's key exchange, a 32-byte random key (anything else is not a peer).
            reason = None if isinstance(message, bytes) and len(message) == 32 else "bad_frame"
        else:
            reason = self._second_frame_refusal(conn, message)
        if reason is not None:
            self._unknownConnections.discard(conn)
            conn.close_rejected(reason)
            return
        second_frame = bool(conn.sendRandKey)
        super()._onIncomingMessageReceived(conn, message)
        if second_frame and conn.state != CONNECTION_STATE.DISCONNECTED:
            # Bound to the key this side just sent: a live secret holder, not a replay (see connection.py).
            conn.trusted = True

    def _second_frame_refusal(self, conn: PeerConnection, message: Any) -> str | None:
        """Why the frame after the key exchange (a member's address or a utility command) is refused, if it is."""
        if isinstance(message, list):
            if not (message and isinstance(message[0], str) and message[0] in UTILITY_COMMANDS):
                # pysyncobj's own `add` would bypass the membership checks; an unknown command would reach
                # `message in dict` with a list, and an unhashable command name `command in dict`: both raise.
                return "utility_refused"
            if message[0] == "remove":
                target = message[1] if len(message) == 2 and isinstance(message[1], str) else None
                if target is None or target not in self._nodeAddrToNode:
                    return "utility_refused"
                if self._tls is not None and not cert_names_host(conn.peer_certificate(), _host(target)):
                    # vaultd sends `remove` only for a node removing itself (membership.py); any other removal
                    # goes through RemoveMember (admin policy, quorum checks). Without peer TLS the cluster
                    # secret is the only identity, and its holder is a full peer anyway.
                    return "utility_refused"
            elif self._tls is not None and not any(
                    cert_names_host(conn.peer_certificate(), _host(addr))
                    for addr in [*self._nodeAddrToNode, self._selfNode.address]):
                return "tls_identity"   # `transfer`: any member may move leadership (it does before a removal)
            return None
        if not isinstance(message, str):
            return "bad_frame"   # pysyncobj would look it up in a dict: unhashable ones raise on the tick thread
        if message not in self._nodeAddrToNode:
            # Not a member (vaultd has no read-only nodes): pysyncobj would drop it too, but uncounted.
            return "tls_identity" if self._tls is not None else "unknown_peer"
        if self._tls is not None and not cert_names_host(conn.peer_certificate(), _host(message)):
            return "tls_identity"
        return None

    # --- durability -------------------------------------------------------------------------------------------
    def send(self, node: Any, message: Any) -> bool:
        if isinstance(message, dict) and message.get("type") in _DURABLE_BEFORE:
            self._journal.sync()
        return super().send(node, message)

    def _onMessageReceived(self, node: Any, message: Any) -> None:  # noqa: N802 (pysyncobj naming)
        if isinstance(message, dict):
            trim_append_entries(message, self._journal)
        super()._onMessageReceived(node, message)


def transport_class(*, frame_max: int, tls: PeerTls | None, journal: Any) -> Any:
    """What SyncObj's transportClass parameter receives: RaftTransport with vaultd's settings bound."""
    return functools.partial(RaftTransport, frame_max=frame_max, tls=tls, journal=journal)


def _host(addr: str) -> str:
    return addr.rsplit(":", 1)[0].strip("[]")


def _is_ip(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except OSError:
            pass
    return False


def trim_append_entries(message: dict[str, Any], journal: Any) -> None:
    """Rewrite an append_entries so pysyncobj does not truncate entries this follower already holds.

    Why: pysyncobj pipelines append_entries and moves a follower's nextIndex back on every late ack, so a
    follower keeps receiving entries it already has; pysyncobj then truncates its log after prevLogIdx and
    re-appends (logging CRITICAL "state machine may have diverged", rewriting the journal). Raft truncates
    only on conflict. By the log matching property an entry with the same index and term is the same entry
    with the same prefix, so: skip leading entries we hold with the same term, and when nothing new remains
    and our last entry carries the leader's current term (it came from this leader), acknowledge up to it.
    A real conflict (different term) is left to pysyncobj.
    """
    if message.get("type") != "append_entries" or "prevLogIdx" not in message or "transmission" in message:
        return
    if len(journal) == 0:
        return
    first, last = journal[0][1], journal[-1][1]

    def term_at(index: int) -> int | None:
        return journal[index - first][2] if first <= index <= last else None

    prev, prev_term = message["prevLogIdx"], message["prevLogTerm"]
    if prev is None or term_at(prev) != prev_term:
        return
    entries = list(message.get("entries") or ())
    skip = 0
    while skip < len(entries) and term_at(entries[skip][1]) == entries[skip][2]:
        skip += 1
    if skip:
        prev, prev_term = entries[skip - 1][1], entries[skip - 1][2]
        entries = entries[skip:]
    if not entries and prev < last and term_at(last) == message.get("term"):
        prev, prev_term = last, term_at(last)
    message["prevLogIdx"], message["prevLogTerm"], message["entries"] = prev, prev_term, entries

"""PeerConnection against real loopback sockets and real TLS, driven by pysyncobj's own poller."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

from pysyncobj.poller import createPoller
from pysyncobj.tcp_connection import CONNECTION_STATE

from tests.replication.peer_certs import CA
from vaultd.replication.connection import PeerConnection

POLL_TIMEOUT = 0.05


def test_a_tls_handshake_waiting_for_a_silent_peer_does_not_spin_the_poller(tmp_path: Path) -> None:
    """The peer accepts TCP but never answers the ClientHello (e.g. a SIGSTOPped node). The connection must
    wait for a read event: asking for write events would make every poll return at once and burn the tick
    thread until the handshake deadline."""
    ca = CA(tmp_path, "cluster")
    cert, key = ca.issue("n1", ["127.0.0.1"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=ca.path)
    rejected: list[str] = []
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        poller = createPoller("auto")
        conn = PeerConnection(poller, timeout=30.0, frame_max=1 << 20, tls=ctx,
                              reject=lambda _remote, why: rejected.append(why))
        conn.tls_name = "127.0.0.1"
        assert conn.connect("127.0.0.1", silent.getsockname()[1])
        try:
            polls = 0
            end = time.monotonic() + 1.0
            while time.monotonic() < end and polls < 10_000:
                poller.poll(POLL_TIMEOUT)
                polls += 1
            # Idle polls each wait POLL_TIMEOUT: about 20 in a second; a spinning poll returns thousands.
            assert polls <= 2 * 1.0 / POLL_TIMEOUT + 5, f"{polls} polls in one second"
            assert conn.state == CONNECTION_STATE.CONNECTING
            assert rejected == []
        finally:
            conn.disconnect()

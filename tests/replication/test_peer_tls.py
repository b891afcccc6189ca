"""Mutual TLS on the Raft links of real node processes (--peer-tls-cert/--peer-tls-key/--peer-tls-ca)."""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pysyncobj.encryptor import getEncryptor

from tests.cluster import Cluster, NodeProc
from tests.replication.peer_certs import CA
from tests.replication.sniff import tcp_payloads
from vaultd.client import FailedPrecondition
from vaultd.config import ConfigError, NodeConfig
from vaultd.replication import peer_client, peer_tls, wire

pytestmark = pytest.mark.timeout(180)


def _tls_cluster(cluster_factory: Callable[..., Cluster], ca: CA, size: int = 3) -> Cluster:
    cluster = cluster_factory(size, start=False, fsync=False)
    for node in cluster.nodes:
        node.extra_args += ca.peer_args(node.node_id, ["127.0.0.1"])
    return cluster.start()


def _addr(node: NodeProc) -> tuple[str, int]:
    host, port = node.raft_addr.rsplit(":", 1)
    return host, int(port)


def _rejected(cluster: Cluster, node: NodeProc, reason: str) -> float:
    return cluster.metric(node, "vaultd_raft_connections_rejected_total", f'reason="{reason}"') or 0.0


def _client_context(ca: CA, name: str, hosts: list[str], trust: CA | None = None) -> ssl.SSLContext:
    cert, key = ca.issue(name, hosts)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=(trust or ca).path)
    return ctx


def _closed(sock: socket.socket, timeout: float = 10.0) -> bool:
    """True once the server closed the connection (EOF, reset or a TLS alert) within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            return False
        except (ssl.SSLError, ConnectionError):
            return True
    return False


def _raft_wire(cluster: Cluster) -> list[bytes]:
    """Raft-port payloads on the wire while writes commit (each one travels to both followers)."""
    ports = {_addr(n)[1] for n in cluster.nodes}
    client = cluster.client(timeout=20)
    result: list[bytes] = []
    for i in range(5):
        client.put("wire", f"k{i}", b"v")
        result += tcp_payloads(ports, 0.3)
    return result


# Every pysyncobj frame encrypted with the cluster secret is a Fernet token: base64 of 0x80 and a timestamp
# whose high bytes are zero.
FERNET_PREFIX = b"gAAAAA"


def _wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


def test_a_peer_tls_cluster_replicates_and_its_raft_port_speaks_only_tls(
        cluster_factory: Callable[..., Cluster], tmp_path: Path) -> None:
    ca = CA(tmp_path / "pki", "cluster")
    cluster = _tls_cluster(cluster_factory, ca)
    client = cluster.client(timeout=20)
    assert client.put("tls", "k", b"v").version == 1
    for node in cluster.nodes:
        assert all(m.reachable for m in client.status(endpoint=node.grpc_addr).members)
    leader = cluster.wait_leader()
    # The members connected to each other over TLS: no peer connection was refused anywhere.
    for node in cluster.nodes:
        assert _rejected(cluster, node, "tls_handshake") == 0
        assert _rejected(cluster, node, "tls_identity") == 0

    # On the wire: TLS application-data records (type 0x17, legacy version 0x0303), and never a Fernet frame,
    # which is what every message between members looks like without peer TLS (see the control test below).
    wire_bytes = _raft_wire(cluster)
    assert wire_bytes
    assert not any(FERNET_PREFIX in p for p in wire_bytes)
    assert any(p.startswith(b"\x17\x03\x03") for p in wire_bytes)

    # The port completes a TLS 1.3 handshake with a client certificate from the cluster CA and presents a
    # certificate naming its host.
    with socket.create_connection(_addr(leader), timeout=5) as raw:
        with _client_context(ca, "probe", ["127.0.0.1"]).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() == "TLSv1.3"

    # A plaintext pysyncobj frame (what a node without peer TLS sends first) is refused.
    before = _rejected(cluster, leader, "tls_handshake")
    frame = wire.encode(os.urandom(32), getEncryptor(cluster.secret), None, int(time.monotonic()))
    with socket.create_connection(_addr(leader), timeout=5) as raw:
        raw.sendall(frame)
        assert _closed(raw)
    assert _rejected(cluster, leader, "tls_handshake") > before


def test_control_without_peer_tls_the_sniffer_sees_fernet_frames(cluster_factory: Callable[..., Cluster]) -> None:
    """Proves the capture above would see member traffic if it were not TLS."""
    wire_bytes = _raft_wire(cluster_factory(3, fsync=False))
    assert any(FERNET_PREFIX in p for p in wire_bytes)
    assert not any(p.startswith(b"\x17\x03\x03") for p in wire_bytes)


def test_a_node_with_a_certificate_from_another_ca_cannot_join(
        cluster_factory: Callable[..., Cluster], tmp_path: Path) -> None:
    ca = CA(tmp_path / "pki", "cluster")
    rogue = CA(tmp_path / "rogue", "rogue")
    cluster = _tls_cluster(cluster_factory, ca)
    client = cluster.client(timeout=20)
    n4 = cluster.add_node(extra_args=rogue.peer_args("n4", ["127.0.0.1"], ca=ca))
    with pytest.raises(FailedPrecondition) as info:
        client.add_member(n4.node_id, n4.raft_addr, n4.grpc_addr)
    assert info.value.reason == "MEMBERSHIP_CHANGE_REJECTED"
    assert info.value.metadata["check"] == "member_unreachable"
    assert info.value.metadata["detail"] == "tls_identity"
    assert sorted(m.node_id for m in client.status().members) == ["n1", "n2", "n3"]

    # Its certificate is refused as a client too: connecting with it to the leader's port fails.
    leader = cluster.wait_leader()
    before = _rejected(cluster, leader, "tls_handshake") + _rejected(cluster, leader, "tls_identity")
    ctx = _client_context(rogue, "rogue-client", ["127.0.0.1"], trust=ca)
    with socket.create_connection(_addr(leader), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"\0\0\0\0")
                assert _closed(tls)
        except (ssl.SSLError, ConnectionError):
            pass   # refused during the handshake itself
    _wait_for(lambda: _rejected(cluster, leader, "tls_handshake") + _rejected(cluster, leader, "tls_identity")
              > before, 10, "the rogue client counted as rejected")
    assert client.put("tls", "after-rogue", b"v").version == 1


def test_a_member_certificate_must_name_the_members_host(
        cluster_factory: Callable[..., Cluster], tmp_path: Path) -> None:
    """A certificate from the right CA for another host is no member's identity, in either direction."""
    ca = CA(tmp_path / "pki", "cluster")
    cluster = _tls_cluster(cluster_factory, ca)
    client = cluster.client(timeout=20)

    # Outgoing check: the new member's server certificate does not name 127.0.0.1.
    n4 = cluster.add_node(extra_args=ca.peer_args("n4", ["10.11.12.13"]))
    with pytest.raises(FailedPrecondition) as info:
        client.add_member(n4.node_id, n4.raft_addr, n4.grpc_addr)
    assert info.value.metadata["detail"] == "tls_identity"

    # Incoming check: a client holding the secret and a CA certificate for another host claims to be n2.
    leader = cluster.wait_leader()
    claimed = next(n for n in cluster.nodes[:3] if n is not leader)
    before = _rejected(cluster, leader, "tls_identity")
    encryptor = getEncryptor(cluster.secret)
    ctx = _client_context(ca, "impostor", ["10.11.12.13"])
    with socket.create_connection(_addr(leader), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            my_key = os.urandom(32)
            tls.sendall(wire.encode(my_key, encryptor, None, int(time.monotonic())))
            header = tls.recv(4)
            body = b""
            length = wire.frame_length(header, wire.HANDSHAKE_FRAME_MAX_BYTES)
            while len(body) < length:
                body += tls.recv(length - len(body))
            their_key, _ = wire.decode(body, encryptor, 0, my_key, wire.HANDSHAKE_FRAME_MAX_BYTES)
            tls.sendall(wire.encode(claimed.raft_addr, encryptor, their_key, int(time.monotonic())))
            assert _closed(tls)
    assert _rejected(cluster, leader, "tls_identity") > before
    assert sorted(m.node_id for m in client.status().members) == ["n1", "n2", "n3"]
    assert client.put("tls", "after-impostor", b"v").version == 1


def test_peer_tls_settings_that_cannot_be_used_are_configuration_errors(tmp_path: Path) -> None:
    ca = CA(tmp_path / "pki", "cluster")
    cert, key = ca.issue("n1", ["127.0.0.1"])
    cfg = NodeConfig(peer_tls_cert=str(cert), peer_tls_key=str(key), peer_tls_ca=str(ca.path))
    assert peer_tls.load(cfg) is not None
    assert peer_tls.load(NodeConfig()) is None
    key.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        peer_tls.load(cfg)
    key.chmod(0o600)
    with pytest.raises(ConfigError, match="--peer-tls-ca"):
        peer_tls.load(NodeConfig(peer_tls_cert=str(cert), peer_tls_key=str(key),
                                 peer_tls_ca=str(tmp_path / "missing-ca.crt")))
    with pytest.raises(ConfigError, match="--peer-tls-cert/--peer-tls-key"):
        peer_tls.load(NodeConfig(peer_tls_cert=str(ca.path), peer_tls_key=str(key), peer_tls_ca=str(ca.path)))


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "secret-only"])
def test_a_paused_member_is_dropped_and_reconnects_after_it_resumes(
        cluster_factory: Callable[..., Cluster], tmp_path: Path, tls: bool) -> None:
    """While a member is stopped the leader drops its silent link (and any new handshake to it times out);
    once it resumes the links come back and it catches up."""
    cluster = (_tls_cluster(cluster_factory, CA(tmp_path / "pki", "cluster")) if tls
               else cluster_factory(3, fsync=False))
    leader = cluster.wait_leader()
    follower = next(n for n in cluster.nodes if n is not leader)
    client = cluster.client([leader], timeout=20)
    cluster.pause(follower)
    try:
        for i in range(20):
            client.put("paused", f"k{i}", b"v")
        _wait_for(lambda: not {m.node_id: m.reachable for m in client.status().members}[follower.node_id], 20,
                  "the leader dropped its link to the stopped member")
    finally:
        cluster.resume(follower)
    cluster.wait_ready([follower], timeout=30)
    local = cluster.client([follower], timeout=10)
    _wait_for(lambda: local.get("paused", "k19", consistency="local").value == b"v", 20, "the follower caught up")


def test_with_peer_tls_a_member_certificate_may_remove_only_its_own_node(
        cluster_factory: Callable[..., Cluster], tmp_path: Path) -> None:
    """The utility `remove` skips RemoveMember's admin policy and quorum checks, so it is served only for the node
    the presenting certificate names (a node removing itself). n1 gets the Raft host `localhost` so that its
    identity differs from the others' (127.0.0.1) on one machine."""
    ca = CA(tmp_path / "pki", "cluster")
    cluster = cluster_factory(3, start=False, fsync=False)
    n1 = cluster.nodes[0]
    n1.raft_addr = f"localhost:{_addr(n1)[1]}"
    for node in cluster.nodes:
        node.peers = [n.peer_spec for n in cluster.nodes if n is not node]
        node.extra_args += ca.peer_args(node.node_id, ["localhost"] if node is n1 else ["127.0.0.1"])
    cluster.start()
    leader = cluster.wait_leader()
    encryptor = getEncryptor(cluster.secret)

    # A certificate naming 127.0.0.1 (n2's and n3's host) cannot remove n1, whoever leads.
    cert, key = ca.issue("other-member", ["127.0.0.1"])
    other = peer_tls.load(NodeConfig(peer_tls_cert=str(cert), peer_tls_key=str(key), peer_tls_ca=str(ca.path)))
    before = _rejected(cluster, leader, "utility_refused")
    with pytest.raises(peer_client.PeerUnreachable):
        peer_client.call(leader.raft_addr, encryptor, other, 10, ["remove", n1.raft_addr])
    assert _rejected(cluster, leader, "utility_refused") > before
    client = cluster.client(timeout=20)
    assert sorted(m.node_id for m in client.status().members) == ["n1", "n2", "n3"]
    assert all(m.reachable for m in client.status(endpoint=leader.grpc_addr).members)

    # n1 removing itself (its own certificate names localhost) goes through, leader or not.
    cluster.client([n1], timeout=30).remove_member(n1.node_id)
    rest = [n for n in cluster.nodes if n is not n1]
    survivor = cluster.client(rest, timeout=20)
    _wait_for(lambda: sorted(m.node_id for m in survivor.status().members) == ["n2", "n3"], 20,
              "the leader applied n1's removal")
    assert survivor.put("tls", "after-self-removal", b"v").version == 1


def _tls_attempt(ctx: ssl.SSLContext, addr: tuple[str, int], source: str) -> bool:
    """One TLS handshake from `source`; True if the server took part in it (it answered the ClientHello)."""
    raw = socket.socket()
    try:
        raw.bind((source, 0))
        raw.settimeout(3)
        raw.connect(addr)
        with ctx.wrap_socket(raw, server_hostname=addr[0]) as tls:
            return tls.version() is not None
    except (ssl.SSLError, OSError):
        return False
    finally:
        raw.close()


def test_tls_handshakes_from_a_non_member_ip_are_rate_limited_and_members_are_not(
        cluster_factory: Callable[..., Cluster], tmp_path: Path) -> None:
    """Each accepted connection may cost a TLS 1.3 server handshake on the tick thread: a source that is not a
    member's IP (127.0.0.2 here; every member is on 127.0.0.1) gets a bucket of them, counted not timed."""
    ca = CA(tmp_path / "pki", "cluster")
    cluster = _tls_cluster(cluster_factory, ca)
    leader = cluster.wait_leader()
    addr = _addr(leader)
    ctx = _client_context(ca, "stranger", ["127.0.0.2"])
    before = _rejected(cluster, leader, "rate_limited")
    attempts = 200
    start = time.monotonic()
    served = sum(_tls_attempt(ctx, addr, "127.0.0.2") for _ in range(attempts))
    elapsed = time.monotonic() - start
    allowed = wire.HANDSHAKE_BURST_PER_SOURCE + wire.HANDSHAKE_RATE_PER_SOURCE * elapsed
    assert 1 <= served <= allowed + 1, f"{served} handshakes served in {elapsed:.2f}s (bucket allows {allowed:.0f})"
    refused_at_least = attempts - served - wire.MAX_PENDING_PER_SOURCE   # the rest may meet the per-source cap
    _wait_for(lambda: _rejected(cluster, leader, "rate_limited") - before >= refused_at_least, 10,
              "the refusals were counted")
    # A member's IP is not limited: handshakes from 127.0.0.1 right after are all served.
    assert all(_tls_attempt(ctx, addr, "127.0.0.1") for _ in range(30))
    assert cluster.client(timeout=20).put("tls", "after-handshake-flood", b"v").version == 1

"""Client-facing TLS end to end through real node processes: verification, mTLS, SIGHUP certificate reload,
an independent (Node.js) client, insecure-mode reporting and disabled core dumps."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.cluster import REPO, Cluster
from vaultd import client as vc
from vaultd.tls import CertificateAuthority, TLSFileError, write_private

pytestmark = pytest.mark.timeout(120)

NODE_MODULES = REPO / ".venv" / "node" / "node_modules"


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("tls"), 1, fsync=False)
    try:
        c.start()
        yield c
    finally:
        c.close()


def _served_certificate(addr: str, ca_file: str) -> bytes:
    """DER of the certificate a fresh handshake gets, verified against ca_file (Python's ssl, not grpc)."""
    host, port = addr.rsplit(":", 1)
    context = ssl.create_default_context(cafile=ca_file)
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((host, int(port)), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls_sock:
        assert tls_sock.selected_alpn_protocol() == "h2"
        der = tls_sock.getpeercert(binary_form=True)
    assert der is not None
    return der


def _eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def test_client_with_the_ca_and_token_works(tls_cluster: Cluster) -> None:
    client = tls_cluster.client(timeout=10.0)
    assert client.uses_tls
    assert client.put("tls", "k", b"v").version == 1
    assert client.get("tls", "k").value == b"v"
    _eventually(lambda: client.health() == "SERVING", "health SERVING over TLS")


def test_client_without_the_ca_fails_clearly(tls_cluster: Cluster) -> None:
    with pytest.raises(ValueError, match="refusing to send a token without TLS"):
        vc.VaultClient(tls_cluster.endpoints(), token=tls_cluster.token)   # a forgotten CA file
    with vc.VaultClient(tls_cluster.endpoints(), timeout=1.5, token=tls_cluster.token,
                        insecure_plaintext=True) as plain:
        assert not plain.uses_tls
        with pytest.raises(vc.Unavailable) as err:
            plain.get("tls", "k")
    assert err.value.reason == "CONNECTION_FAILED" and "no CA file was given" in str(err.value)


def test_client_with_another_ca_fails_verification(tls_cluster: Cluster, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.crt"
    other.write_bytes(CertificateAuthority("not the cluster's CA").cert_pem)
    with vc.VaultClient(tls_cluster.endpoints(), timeout=1.5, ca_file=str(other), token=tls_cluster.token) as c:
        with pytest.raises(vc.Unavailable) as err:
            c.get("tls", "k")
    assert err.value.reason == "CONNECTION_FAILED"
    assert "certificate" in err.value.message.lower() or "handshake" in err.value.message.lower()


def test_unreadable_or_mismatched_client_files_fail_at_construction(tls_cluster: Cluster, tmp_path: Path) -> None:
    with pytest.raises(TLSFileError, match="cannot read CA file"):
        vc.VaultClient(tls_cluster.endpoints(), ca_file=str(tmp_path / "missing.crt"))
    cert, _key = tls_cluster.node_cert(tls_cluster.nodes[0])
    assert tls_cluster.client_cert is not None
    with pytest.raises(TLSFileError, match="does not match"):
        vc.VaultClient(tls_cluster.endpoints(), ca_file=str(tls_cluster.ca_file), cert_file=str(cert),
                       key_file=str(tls_cluster.client_cert[1]))
    with pytest.raises(ValueError, match="needs ca_file"):
        vc.VaultClient(tls_cluster.endpoints(), cert_file=str(cert), key_file=str(_key))
    with pytest.raises(ValueError, match="printable ASCII"):
        vc.VaultClient(tls_cluster.endpoints(), token="two\nlines", insecure_plaintext=True)


def test_raw_channel_helpers(tls_cluster: Cluster) -> None:
    with tls_cluster.channel(tls_cluster.nodes[0]) as channel:
        resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5,
                                                         metadata=tls_cluster.call_metadata())
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_sighup_reloads_the_certificate_without_dropping_the_node(tls_cluster: Cluster) -> None:
    node = tls_cluster.nodes[0]
    assert tls_cluster.ca_file is not None and node.proc is not None
    ca_file = str(tls_cluster.ca_file)
    cert_path, key_path = tls_cluster.node_cert(node)
    before = _served_certificate(node.grpc_addr, ca_file)
    assert before == x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(
        serialization.Encoding.DER)
    client = tls_cluster.client(timeout=10.0)
    client.put("reload", "k", b"before")
    old_cert, old_key = cert_path.read_bytes(), key_path.read_bytes()

    # A broken pair on reload: logged, the old certificate keeps serving.
    write_private(key_path, b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    os.kill(node.proc.pid, signal.SIGHUP)
    _eventually(lambda: "TLS reload failed, keeping the current certificate" in node.read_log(), "reload refused")
    assert _served_certificate(node.grpc_addr, ca_file) == before
    write_private(key_path, old_key)

    # A new certificate from the same CA (the CA's key lives in the Cluster): the next handshake sees it.
    tls_cluster._ca.issue(node.node_id).write(cert_path, key_path)
    new_der = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(
        serialization.Encoding.DER)
    assert new_der != before and cert_path.read_bytes() != old_cert
    os.kill(node.proc.pid, signal.SIGHUP)
    _eventually(lambda: _served_certificate(node.grpc_addr, ca_file) == new_der, "new certificate served")
    assert node.is_running()
    assert client.get("reload", "k").value == b"before"           # the existing channel keeps working
    fresh = tls_cluster.client(timeout=10.0)                      # and new connections too
    assert fresh.put("reload", "k", b"after").version == 2


def test_node_js_client_with_the_ca(tls_cluster: Cluster) -> None:
    node_bin = shutil.which("node")
    if node_bin is None or not (NODE_MODULES / "@grpc" / "grpc-js").is_dir():
        pytest.skip("Node.js with @grpc/grpc-js not installed (bash scripts/test.sh installs them)")
    env = {**os.environ, "NODE_PATH": str(NODE_MODULES), "VAULTD_TOKEN": tls_cluster.token}
    proc = subprocess.run([node_bin, str(REPO / "tests/api/node/tls_client.js"), tls_cluster.nodes[0].grpc_addr,
                           str(tls_cluster.ca_file), str(REPO / "proto")],
                          capture_output=True, env=env, timeout=60)
    assert proc.returncode == 0, (proc.stdout.decode(), proc.stderr.decode())
    assert json.loads(proc.stdout) == {"version": 1, "value": "from node"}


def test_mtls_refuses_a_client_without_a_certificate(cluster_factory: Callable[..., Cluster]) -> None:
    cluster = cluster_factory(1, fsync=False, mtls=True)
    assert cluster.client_cert is not None
    with_cert = cluster.client(timeout=10.0)
    assert with_cert.put("mtls", "k", b"v").version == 1
    without = cluster.client(timeout=1.5, cert_file=None, key_file=None)
    with pytest.raises(vc.Unavailable) as err:
        without.get("mtls", "k")
    assert err.value.reason == "CONNECTION_FAILED"
    # A certificate from another CA is refused as well.
    stranger = CertificateAuthority("stranger").issue("mallory")
    cert, key = cluster.base_dir / "mallory.crt", cluster.base_dir / "mallory.key"
    stranger.write(cert, key)
    foreign = cluster.client(timeout=1.5, cert_file=str(cert), key_file=str(key))
    with pytest.raises(vc.Unavailable):
        foreign.get("mtls", "k")
    assert with_cert.get("mtls", "k").value == b"v"


def test_insecure_modes_are_warned_and_exported(cluster_factory: Callable[..., Cluster],
                                                tls_cluster: Cluster) -> None:
    node = tls_cluster.nodes[0]
    assert tls_cluster.metric(node, "vaultd_insecure_mode", 'mode="plaintext"') == 0.0
    assert tls_cluster.metric(node, "vaultd_insecure_mode", 'mode="no_auth"') == 0.0
    assert "INSECURE" not in node.read_log()

    insecure = cluster_factory(1, fsync=False, secure=False)
    n1 = insecure.nodes[0]
    assert insecure.metric(n1, "vaultd_insecure_mode", 'mode="plaintext"') == 1.0
    assert insecure.metric(n1, "vaultd_insecure_mode", 'mode="no_auth"') == 1.0
    log = n1.read_log()
    assert "WARNING" in log and "INSECURE: --insecure-plaintext" in log and "INSECURE: --insecure-no-auth" in log
    assert insecure.client(timeout=10.0).put("plain", "k", b"v").version == 1


def test_serve_refuses_bad_tls_files_with_exit_2(tls_cluster: Cluster, tmp_path: Path) -> None:
    node = tls_cluster.nodes[0]
    cert, _key = tls_cluster.node_cert(node)
    secret = tmp_path / "secret"
    write_private(secret, b"s" * 40 + b"\n")
    base = [sys.executable, "-m", "vaultd.serve", "--node-id", "x", "--data-dir", str(tmp_path / "d"),
            "--raft-addr", "127.0.0.1:1", "--grpc-addr", "127.0.0.1:2", "--cluster-secret-file", str(secret),
            "--insecure-no-auth", "--tls-cert", str(cert)]
    proc = subprocess.run(base + ["--tls-key", str(tmp_path / "missing.key")], capture_output=True, timeout=60,
                          cwd=str(REPO))
    assert proc.returncode == 2 and b"cannot read TLS key" in proc.stderr
    assert tls_cluster.client_cert is not None
    proc = subprocess.run(base + ["--tls-key", str(tls_cluster.client_cert[1])], capture_output=True, timeout=60,
                          cwd=str(REPO))
    assert proc.returncode == 2 and b"does not match" in proc.stderr
    loose = tmp_path / "loose.key"
    loose.write_bytes(_key.read_bytes())
    loose.chmod(0o644)
    proc = subprocess.run(base + ["--tls-key", str(loose)], capture_output=True, timeout=60, cwd=str(REPO))
    assert proc.returncode == 2 and b"accessible by group or others" in proc.stderr


def test_core_dumps_are_disabled(tls_cluster: Cluster) -> None:
    node = tls_cluster.nodes[0]
    assert node.proc is not None
    limits = Path(f"/proc/{node.proc.pid}/limits").read_text()
    core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
    assert core.split()[4:6] == ["0", "0"]
    # PR_GET_DUMPABLE (3) can only be asked by the process itself.
    probe = ("import ctypes; from vaultd.serve import disable_core_dumps; disable_core_dumps(); "
             "print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=60, cwd=str(REPO))
    assert out.stdout.strip() == b"0", out.stderr.decode()



def test_stats_fan_out_verifies_the_peers_certificates(cluster_factory: Callable[..., Cluster],
                                                        tmp_path: Path) -> None:
    """A node told to trust another CA cannot verify its peers, so their statistics are reported missing;
    a node with the right CA gets every member's."""
    cluster = cluster_factory(2, start=False, fsync=False)
    other_ca = tmp_path / "other-ca.crt"
    other_ca.write_bytes(CertificateAuthority("not the cluster's CA").cert_pem)
    distrustful, trusting = cluster.nodes
    distrustful.extra_args = ["--tls-ca", str(other_ca)]          # the last --tls-ca wins
    cluster.start()
    cluster.client(timeout=10.0).put("fanout", "k", b"v")
    stats = cluster.client([distrustful], timeout=10.0).vault_stats("fanout")
    assert list(stats.unreachable_members) == [trusting.node_id]
    assert list(stats.reporting_members) == [distrustful.node_id]
    stats = cluster.client([trusting], timeout=10.0).vault_stats("fanout")
    assert sorted(stats.reporting_members) == sorted(n.node_id for n in cluster.nodes)
    assert not stats.unreachable_members

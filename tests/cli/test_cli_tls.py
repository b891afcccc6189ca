"""The CLI's credentials against a real mTLS + token cluster: flags, VAULTD_* variables, and their precedence."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import REPO, Cluster
from vaultd.tls import write_private

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cli-tls"), 1, fsync=False, mtls=True)
    try:
        c.start()
        yield c
    finally:
        c.close()


def _cli(env: dict[str, str], *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VAULTD_")}
    return subprocess.run([sys.executable, "-m", "vaultd.cli.main", *args], input=stdin, capture_output=True,
                          env={**clean, **env}, cwd=str(REPO), timeout=60)


def test_flags(cluster: Cluster) -> None:
    assert cluster.client_cert is not None
    flags = ["--endpoints", ",".join(cluster.endpoints()), "--ca-file", str(cluster.ca_file),
             "--cert-file", str(cluster.client_cert[0]), "--key-file", str(cluster.client_cert[1]),
             "--token-file", str(cluster.token_file)]
    put = _cli({}, *flags, "key", "put", "cli-tls", "k", "-", stdin=b"v1")
    assert put.returncode == 0, put.stderr.decode()
    got = _cli({}, "key", "get", "cli-tls", "k", "--raw", *flags)          # flags after the subcommand too
    assert (got.returncode, got.stdout) == (0, b"v1"), got.stderr.decode()


def test_environment_variables_and_token_sources(cluster: Cluster, tmp_path: Path) -> None:
    env = cluster.client_env()
    assert {"VAULTD_CA_FILE", "VAULTD_CERT_FILE", "VAULTD_KEY_FILE", "VAULTD_TOKEN_FILE"} <= set(env)
    assert _cli(env, "key", "put", "cli-tls", "e", "-", stdin=b"x").returncode == 0
    with_token = {**{k: v for k, v in env.items() if k != "VAULTD_TOKEN_FILE"}, "VAULTD_TOKEN": cluster.token}
    got = _cli(with_token, "key", "get", "cli-tls", "e", "--raw")
    assert (got.returncode, got.stdout) == (0, b"x"), got.stderr.decode()
    # --token-file beats the environment: an unreadable one is a usage error naming the file, not the token
    missing = tmp_path / "no-such-token"
    bad = _cli(with_token, "--token-file", str(missing), "key", "get", "cli-tls", "e")
    assert bad.returncode == 2 and str(missing).encode() in bad.stderr
    assert cluster.token.encode() not in bad.stderr + bad.stdout
    empty = tmp_path / "empty-token"
    write_private(empty, b"\n")
    assert _cli(env, "--token-file", str(empty), "vault", "list").returncode == 2


def test_missing_pieces_fail_clearly(cluster: Cluster) -> None:
    env = cluster.client_env()
    no_cert = {k: v for k, v in env.items() if k not in ("VAULTD_CERT_FILE", "VAULTD_KEY_FILE")}
    refused = _cli(no_cert, "--timeout", "2", "-o", "json", "vault", "list")      # mTLS: a certificate is required
    assert refused.returncode == 4 and b"CONNECTION_FAILED" in refused.stderr
    plaintext = _cli({"VAULTD_ENDPOINTS": env["VAULTD_ENDPOINTS"]}, "--timeout", "2", "vault", "list")
    assert plaintext.returncode == 4 and b"--ca-file" in plaintext.stderr          # the hint names the fix
    half = _cli({**env, "VAULTD_KEY_FILE": ""}, "vault", "list")
    assert half.returncode == 2 and b"go together" in half.stderr


def test_a_token_is_not_sent_in_the_clear_unless_asked_by_name(cluster: Cluster) -> None:
    env = cluster.client_env()
    no_ca = {k: v for k, v in env.items() if k not in ("VAULTD_CA_FILE", "VAULTD_CERT_FILE", "VAULTD_KEY_FILE")}
    refused = _cli(no_ca, "vault", "list")
    assert refused.returncode == 2 and b"refusing to send a token without TLS" in refused.stderr
    assert cluster.token.encode() not in refused.stderr + refused.stdout
    asked = _cli({**no_ca, "VAULTD_INSECURE_PLAINTEXT": "1"}, "--timeout", "2", "vault", "list")
    assert asked.returncode == 4 and b"CONNECTION_FAILED" in asked.stderr      # sent, and the TLS port refused it
    flagged = _cli(no_ca, "--insecure-plaintext", "--timeout", "2", "vault", "list")
    assert flagged.returncode == 4

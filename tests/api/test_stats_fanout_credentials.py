"""The stats fan-out's credentials: the root token goes to other nodes only over TLS."""

from __future__ import annotations

from pathlib import Path

from vaultd.api.stats import StatsFanout
from vaultd.config import NodeConfig
from vaultd.tls import CertificateAuthority, write_private


def _cfg(tmp_path: Path, **changes: object) -> NodeConfig:
    token = tmp_path / "root-token"
    write_private(token, b"r" * 40 + b"\n")
    return NodeConfig(node_id="n1", data_dir=str(tmp_path), root_token_file=str(token), **changes)  # type: ignore[arg-type]


def test_the_root_token_is_not_sent_without_tls(tmp_path: Path) -> None:
    fanout = StatsFanout.from_config(None, None, _cfg(tmp_path, insecure_plaintext=True))
    try:
        assert fanout._metadata == ()
    finally:
        fanout.close()


def test_the_root_token_is_sent_over_tls(tmp_path: Path) -> None:
    ca = CertificateAuthority("test CA")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    ca.issue("n1").write(tmp_path / "n1.crt", tmp_path / "n1.key")
    fanout = StatsFanout.from_config(None, None, _cfg(tmp_path, tls_cert=str(tmp_path / "n1.crt"),
                                                      tls_key=str(tmp_path / "n1.key"),
                                                      tls_ca=str(tmp_path / "ca.crt")))
    try:
        assert fanout._metadata == (("authorization", "Bearer " + "r" * 40),)
    finally:
        fanout.close()

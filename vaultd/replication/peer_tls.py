"""Mutual TLS for Raft links: contexts from --peer-tls-cert/--peer-tls-key/--peer-tls-ca, identity checks.

Why identity is the host of the Raft address: Raft identity in pysyncobj is the address, and the members
table maps node ids to those addresses. A peer certificate must name (DNS or IP subjectAltName) the host of
the address its holder claims: an outgoing connection checks the server's certificate against the configured
host (ssl's hostname check), an incoming one checks the client's certificate against the address the peer
announces before pysyncobj accepts it as that node.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass

from cryptography import x509

from vaultd.config import ConfigError, NodeConfig, check_private_file


@dataclass(frozen=True)
class PeerTls:
    server: ssl.SSLContext
    client: ssl.SSLContext


def load(cfg: NodeConfig) -> PeerTls | None:
    """Contexts when peer TLS is configured, else None (then the cluster secret alone protects the links)."""
    if not cfg.peer_tls_enabled:
        return None
    try:
        with open(cfg.peer_tls_key, "rb") as f:
            check_private_file(f.fileno(), cfg.peer_tls_key, "--peer-tls-key")
    except OSError as exc:
        raise ConfigError(f"cannot read --peer-tls-key {cfg.peer_tls_key}: {exc.strerror}") from None
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)   # check_hostname and CERT_REQUIRED by default
    for ctx in (server, client):
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3   # both ends are vaultd: no legacy peers to support
        try:
            ctx.load_cert_chain(cfg.peer_tls_cert, cfg.peer_tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load --peer-tls-cert/--peer-tls-key: {type(exc).__name__}") from None
        try:
            ctx.load_verify_locations(cafile=cfg.peer_tls_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load --peer-tls-ca {cfg.peer_tls_ca}: {type(exc).__name__}") from None
    server.verify_mode = ssl.CERT_REQUIRED
    return PeerTls(server=server, client=client)


def cert_names_host(der: bytes | None, host: str) -> bool:
    """Whether the certificate's subjectAltName lists `host` (an IP literal or a DNS name; no wildcards:
    peer certificates are issued per member)."""
    if not der:
        return False
    try:
        san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host.lower().rstrip(".") in {n.lower().rstrip(".") for n in san.get_values_for_type(x509.DNSName)}
    return ip in san.get_values_for_type(x509.IPAddress)

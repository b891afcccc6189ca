"""TLS for the gRPC API: certificates for local clusters, the serving side with SIGHUP reload, channel credentials.

Why these pieces live together: `vaultd dev` and the tests need a throwaway PKI (a CA, node certificates that
are both server and client certificates, client certificates), the node serves with credentials it can swap
without restarting, and node-to-node calls and clients build channel credentials from the same PEM files.

Keys are ECDSA P-256: generating one takes well under a millisecond (an RSA-2048 key takes ~50 ms, which a
test creating a cluster per test would feel), and every TLS stack vaultd is used with (grpc core, Node.js,
OpenSSL) accepts them.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger("vaultd.tls")

DEFAULT_SANS = ("127.0.0.1", "localhost")
DEFAULT_VALID_DAYS = 365


class TLSFileError(ValueError):
    """A certificate, key or CA file cannot be read or does not hold what it should (the message names the
    file and the problem, never key material)."""


# --- a throwaway PKI -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes

    def write(self, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]) -> None:
        write_private(cert_path, self.cert_pem)
        write_private(key_path, self.key_pem)


class CertificateAuthority:
    """A self-signed CA held in memory; issues certificates valid for serverAuth and clientAuth."""

    def __init__(self, common_name: str = "vaultd throwaway CA", valid_days: int = DEFAULT_VALID_DAYS) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256()))

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, common_name: str, sans: Sequence[str] = DEFAULT_SANS,
              valid_days: int = DEFAULT_VALID_DAYS) -> Issued:
        """A leaf certificate for `common_name` with `sans` (IP addresses or DNS names), usable by a server
        and by a client (nodes present their serving certificate when they call each other under mTLS)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        alt_names: list[x509.GeneralName] = []
        for san in sans:
            try:
                alt_names.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                alt_names.append(x509.DNSName(san))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=valid_days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False,
                                         crl_sign=False, content_commitment=False, data_encipherment=False,
                                         key_agreement=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256()))
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return Issued(cert.public_bytes(serialization.Encoding.PEM), key_pem)


def write_private(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace `path` with `data`, mode 0600 from the start (never briefly readable by others), atomically
    (a node re-reading its files on SIGHUP never sees half a certificate)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# --- reading PEM files ---------------------------------------------------------------------------------

def read_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise TLSFileError(f"cannot read {what} {path}: {exc.strerror or type(exc).__name__}") from None


def load_certificate_pair(cert_path: str, key_path: str) -> tuple[bytes, bytes]:
    """(certificate chain PEM, key PEM), checked to parse and to belong together, so a bad file is found
    here (at start, or on SIGHUP while the old pair keeps serving) rather than in a failed handshake."""
    cert_pem = read_file(cert_path, "TLS certificate")
    key_pem = read_file(key_path, "TLS key")
    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise TLSFileError(f"TLS certificate {cert_path} holds no PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise TLSFileError(f"TLS key {key_path} holds no unencrypted PEM private key") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if certs[0].public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise TLSFileError(f"TLS key {key_path} does not match the certificate in {cert_path}")
    return cert_pem, key_pem


def load_ca_bundle(path: str, what: str = "CA file") -> bytes:
    pem = read_file(path, what)
    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise TLSFileError(f"{what} {path} holds no PEM certificate") from None
    return pem


def channel_credentials(ca_file: str | None, cert_file: str | None = None,
                        key_file: str | None = None) -> grpc.ChannelCredentials:
    """Credentials verifying the server against `ca_file` (None: the system roots), presenting
    `cert_file`/`key_file` as client certificate when given (mTLS)."""
    if bool(cert_file) != bool(key_file):
        raise TLSFileError("a client certificate and its key go together (--cert-file and --key-file)")
    roots = load_ca_bundle(ca_file, "CA file") if ca_file else None
    chain, key = load_certificate_pair(cert_file, key_file) if cert_file and key_file else (None, None)
    return grpc.ssl_channel_credentials(root_certificates=roots, private_key=key, certificate_chain=chain)


# --- the serving side ----------------------------------------------------------------------------------

class ServerTLS:
    """The node's serving credentials, re-read from their files by `reload()` (serve calls it on SIGHUP).

    grpc calls the fetcher before every new handshake; it hands over a freshly loaded configuration once and
    otherwise answers None ("keep the current one"), so existing connections are untouched and the next
    handshake uses the new certificate. Whether client certificates are required is fixed at start (grpc
    takes it once), but the client CA bundle itself is re-read too.
    """

    def __init__(self, cert_file: str, key_file: str, client_ca_file: str = "") -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.client_ca_file = client_ca_file
        self._lock = threading.Lock()
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self._initial = self._load()

    def _load(self) -> grpc.ServerCertificateConfiguration:
        chain, key = load_certificate_pair(self.cert_file, self.key_file)
        roots = load_ca_bundle(self.client_ca_file, "client CA file") if self.client_ca_file else None
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=roots)

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(self._initial, self._fetch,
                                                   require_client_authentication=bool(self.client_ca_file))

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    def reload(self) -> bool:
        """Re-read the files; on any problem log it and keep serving the current certificate."""
        try:
            loaded = self._load()
        except TLSFileError as exc:
            log.error("TLS reload failed, keeping the current certificate: %s", exc)
            return False
        with self._lock:
            self._pending = loaded
        log.info("TLS certificate reloaded", extra={"fields": {"cert": self.cert_file}})
        return True

"""Python client for vaultd: failover across endpoints, safe retries, typed errors, streaming export/import.

    with VaultClient(["127.0.0.1:7101", "127.0.0.1:7102"], ca_file="ca.crt", token=token) as c:
        c.put("payments", "stripe_key", b"sk_live_...")
        print(c.get("payments", "stripe_key").value)

    with VaultClient.from_env() as c:     # VAULTD_ENDPOINTS, VAULTD_CA_FILE, VAULTD_TOKEN_FILE, ... (as the CLI)
        ...

Transport: TLS exactly when a CA file is given (the server's certificate is verified against it; with
cert_file/key_file the client also presents a certificate, for servers that require mTLS), else plaintext.
Every call carries `authorization: Bearer <token>` when a token is given.

Why retries are safe: every write carries a request id generated once per logical call (uuid4) and reused
by every attempt, and the server's state machine returns the first outcome for a repeated id. So the client
retries UNAVAILABLE (no leader, node down, overloaded) and ambiguous outcomes (an attempt that timed out, a
leader change mid-write) with exponential backoff until the call's own deadline, moving to the next endpoint
each time. Everything else surfaces at once as a typed `VaultError` subclass carrying the server's
(code, reason, metadata).

Responses are the vaultd.v1 protobuf messages (Entry, Vault, ...); `message_to_dict` turns one into JSON-able
data. Thread safety: one VaultClient may be shared by threads (grpc channels are thread-safe; the channel
cache is guarded by a lock so two threads never open two channels to one endpoint; the preferred endpoint
index is read without one, and a stale read of it only costs a failover).
"""

from __future__ import annotations

from vaultd.client.credentials import (ENV_CA_FILE, ENV_CERT_FILE, ENV_ENDPOINTS, ENV_INSECURE_PLAINTEXT,
                                       ENV_KEY_FILE, ENV_TOKEN, ENV_TOKEN_FILE, read_token_file)
from vaultd.client.errors import (AlreadyExists, Cancelled, DeadlineExceeded, FailedPrecondition, InternalError,
                                  InvalidArgument, LimitExceeded, NotFound, PermissionDenied, Unauthenticated,
                                  Unavailable, VaultError, VersionMismatch, error_from_rpc)
from vaultd.client.messages import message_to_dict, txn_delete, txn_put
from vaultd.client.vault_client import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_TIMEOUT, IMPORT_CHUNK_BYTES, VaultClient

__all__ = [
    "VaultClient", "VaultError", "InvalidArgument", "NotFound", "AlreadyExists", "FailedPrecondition",
    "VersionMismatch", "LimitExceeded", "Unavailable", "DeadlineExceeded", "Cancelled", "InternalError",
    "Unauthenticated", "PermissionDenied",
    "txn_put", "txn_delete", "message_to_dict", "error_from_rpc", "read_token_file", "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_TIMEOUT", "IMPORT_CHUNK_BYTES", "ENV_ENDPOINTS", "ENV_CA_FILE", "ENV_CERT_FILE", "ENV_KEY_FILE",
    "ENV_TOKEN", "ENV_TOKEN_FILE", "ENV_INSECURE_PLAINTEXT",
]

"""Where the client's credentials come from: the VAULTD_* environment the CLI and VaultClient.from_env read,
the token file, and the bearer metadata every call carries."""

from __future__ import annotations

ENV_ENDPOINTS = "VAULTD_ENDPOINTS"
ENV_CA_FILE = "VAULTD_CA_FILE"
ENV_CERT_FILE = "VAULTD_CERT_FILE"
ENV_KEY_FILE = "VAULTD_KEY_FILE"
ENV_TOKEN = "VAULTD_TOKEN"
ENV_INSECURE_PLAINTEXT = "VAULTD_INSECURE_PLAINTEXT"
ENV_TOKEN_FILE = "VAULTD_TOKEN_FILE"


def read_token_file(path: str) -> str:
    """The token on the first line of `path` (the message of a failure names the file, never its content)."""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.readline().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ValueError(f"cannot read token file {path}: {reason}") from None
    if not token:
        raise ValueError(f"token file {path} is empty")
    return token


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    if not token:
        return ()
    if not all(0x21 <= ord(ch) <= 0x7E for ch in token):   # what an HTTP/2 header value can carry unquoted
        raise ValueError("the token holds characters other than printable ASCII (spaces and newlines included)")
    return (("authorization", f"Bearer {token}"),)

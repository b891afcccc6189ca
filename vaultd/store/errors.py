"""Typed rejections of the state machine.

Every rejection a command or read can cause is a StoreError with a stable UPPER_SNAKE_CASE `reason` (the API's
google.rpc.ErrorInfo reason) and string `metadata`. Messages and metadata may name vaults, keys, sizes and
versions but NEVER a value: they end up in logs, gRPC statuses and replicated result records.

Errors are also stored in the replicated request table (exactly-once retries return the original outcome), so
they compare by (type, message, metadata) and can be rebuilt from those three fields (`StoreError.restore`).

StorageFailure is deliberately NOT a StoreError: it is an environmental failure of this node's SQLite
(disk full, I/O error, corruption). Turning it into a result would let replicas diverge, so it propagates and
the replication layer stops the node.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

# Metadata may echo names/keys a client sent; keep it bounded (a 1 KiB key is fine, a 1 MB bogus name is not).
_MAX_METADATA_CHARS = 1100


def _clip(text: object) -> str:
    s = str(text)
    return s if len(s) <= _MAX_METADATA_CHARS else s[:_MAX_METADATA_CHARS] + "..."


class StoreError(Exception):
    """Base of every deterministic rejection; `reason` is the machine-readable status reason."""

    reason: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str, metadata: Mapping[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.metadata: dict[str, str] = {k: _clip(v) for k, v in (metadata or {}).items()}

    @staticmethod
    def restore(reason: str, message: str, metadata: Mapping[str, str]) -> StoreError:
        """Rebuild an error from its stored fields without calling the subclass constructor."""
        cls = _BY_REASON.get(reason, Internal)
        err = cls.__new__(cls)
        StoreError.__init__(err, message, metadata)
        return err

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, StoreError) and type(other) is type(self) and other.message == self.message
                and other.metadata == self.metadata)

    def __hash__(self) -> int:
        return hash((self.reason, self.message, tuple(sorted(self.metadata.items()))))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, {self.metadata!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (StoreError.restore, (self.reason, self.message, self.metadata))


class InvalidName(StoreError):
    reason = "INVALID_VAULT_NAME"

    def __init__(self, name: object, why: str) -> None:
        super().__init__(f"invalid vault name: {why}", {"vault": name, "rule": why})


class InvalidKey(StoreError):
    reason = "INVALID_KEY"

    def __init__(self, key: object, why: str) -> None:
        super().__init__(f"invalid key: {why}", {"key": key, "rule": why})


class InvalidArgument(StoreError):
    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"invalid {field}: {why}", {"field": field, "rule": why})


class ValueTooLarge(StoreError):
    reason = "VALUE_TOO_LARGE"

    def __init__(self, size: int, max: int, key: str | None = None) -> None:  # noqa: A002 - mirrors the reason
        meta: dict[str, object] = {"size": size, "max": max}
        if key is not None:
            meta["key"] = key
        super().__init__(f"value of {size} bytes exceeds the limit of {max} bytes", meta)

    @property
    def size(self) -> int:
        return int(self.metadata["size"])

    @property
    def max(self) -> int:
        return int(self.metadata["max"])


class VaultNotFound(StoreError):
    reason = "VAULT_NOT_FOUND"

    def __init__(self, vault: str) -> None:
        super().__init__(f"vault {vault!r} not found", {"vault": vault})


class KeyNotFound(StoreError):
    reason = "KEY_NOT_FOUND"

    def __init__(self, vault: str, key: str) -> None:
        super().__init__(f"key {key!r} not found in vault {vault!r}", {"vault": vault, "key": key})


class VaultExists(StoreError):
    reason = "VAULT_EXISTS"

    def __init__(self, vault: str) -> None:
        super().__init__(f"vault {vault!r} already exists", {"vault": vault})


class VersionMismatch(StoreError):
    reason = "VERSION_MISMATCH"

    def __init__(self, expected: int, actual: int, key: str | None = None) -> None:
        meta: dict[str, object] = {"expected_version": expected, "actual_version": actual}
        if key is not None:
            meta["key"] = key
        where = f" for key {key!r}" if key is not None else ""
        super().__init__(f"version mismatch{where}: expected {expected}, actual {actual}", meta)

    @property
    def expected(self) -> int:
        return int(self.metadata["expected_version"])

    @property
    def actual(self) -> int:
        return int(self.metadata["actual_version"])


class TooManyVaults(StoreError):
    reason = "TOO_MANY_VAULTS"

    def __init__(self, max: int) -> None:  # noqa: A002
        super().__init__(f"the cluster already holds the maximum of {max} vaults", {"max": max})


class VaultFull(StoreError):
    reason = "VAULT_FULL"

    def __init__(self, vault: str, max: int) -> None:  # noqa: A002
        super().__init__(f"vault {vault!r} would exceed its limit of {max} keys", {"vault": vault, "max": max})


class PolicyNotFound(StoreError):
    reason = "POLICY_NOT_FOUND"

    def __init__(self, policy: str) -> None:
        super().__init__(f"policy {policy!r} not found", {"policy": policy})


class TokenNotFound(StoreError):
    reason = "TOKEN_NOT_FOUND"

    def __init__(self, token_id: str) -> None:
        super().__init__(f"token {token_id!r} not found", {"token_id": token_id})


class TooManyPolicies(StoreError):
    reason = "TOO_MANY_POLICIES"

    def __init__(self, max: int) -> None:  # noqa: A002
        super().__init__(f"the cluster already holds the maximum of {max} policies", {"max": max})


class TooManyTokens(StoreError):
    reason = "TOO_MANY_TOKENS"

    def __init__(self, max: int) -> None:  # noqa: A002
        super().__init__(f"the cluster already holds the maximum of {max} live tokens", {"max": max})


class MalformedImport(StoreError):
    """`line` (1-based, dotenv) or `field` (a JSON path such as entries[3].value) says where; never the text."""

    reason = "MALFORMED_IMPORT"

    def __init__(self, why: str, *, line: int | None = None, field: str | None = None) -> None:
        meta: dict[str, object] = {"rule": why}
        where = ""
        if line is not None:
            meta["line"] = line
            where = f" at line {line}"
        if field is not None:
            meta["field"] = field
            where = f" at {field}"
        super().__init__(f"malformed import{where}: {why}", meta)


class SnapshotInvalid(StoreError):
    reason = "SNAPSHOT_INVALID"

    def __init__(self, why: str) -> None:
        super().__init__(f"snapshot refused: {why}", {"rule": why})


class Internal(StoreError):
    """A bug inside one command: the command was rolled back; the message names only the exception type."""

    reason = "INTERNAL"

    def __init__(self, why: str) -> None:
        super().__init__(f"internal error: {why}", {"rule": why})


class AlreadyApplied(StoreError):
    """Returned for commands of a log index at or below the applied index whose outcome was not recorded
    (no request id): the replay is a no-op. Only seen by the replication layer during journal replay."""

    reason = "ALREADY_APPLIED"

    def __init__(self, index: int) -> None:
        super().__init__(f"log index {index} was already applied", {"index": index})


class StorageFailure(Exception):
    """This node's database failed (I/O, disk full, corruption). Never a command result: stop the node."""


_BY_REASON: dict[str, type[StoreError]] = {
    cls.reason: cls
    for cls in (InvalidName, InvalidKey, InvalidArgument, ValueTooLarge, VaultNotFound, KeyNotFound, VaultExists,
                VersionMismatch, TooManyVaults, VaultFull, MalformedImport, SnapshotInvalid, Internal, AlreadyApplied,
                PolicyNotFound, TokenNotFound, TooManyPolicies, TooManyTokens)
}

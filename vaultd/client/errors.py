"""The client's typed errors: one VaultError subclass per gRPC status family, carrying the server's reason and
metadata (google.rpc.ErrorInfo); statuses gRPC itself produces get a reason here (REQUEST_TOO_LARGE,
OVERLOADED, CONNECTION_FAILED)."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

class VaultError(Exception):
    """A failed call: the gRPC status code, the machine-readable reason and its metadata (never a value)."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str, metadata: dict[str, str]) -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata = metadata


class InvalidArgument(VaultError):
    """INVALID_ARGUMENT: bad vault name, key, field or import file (reason says which)."""


class NotFound(VaultError):
    """NOT_FOUND: VAULT_NOT_FOUND or KEY_NOT_FOUND."""


class AlreadyExists(VaultError):
    """ALREADY_EXISTS: VAULT_EXISTS (or an existing key in a fail-if-exists import)."""


class FailedPrecondition(VaultError):
    """FAILED_PRECONDITION other than a version mismatch (e.g. a refused membership change)."""


class VersionMismatch(FailedPrecondition):
    """A compare-and-set lost: `expected` is what the call asked for, `actual` the current version (0: absent)."""

    @property
    def expected(self) -> int:
        return int(self.metadata.get("expected_version", "0") or 0)

    @property
    def actual(self) -> int:
        return int(self.metadata.get("actual_version", "0") or 0)


class LimitExceeded(VaultError):
    """RESOURCE_EXHAUSTED: TOO_MANY_VAULTS, VAULT_FULL, VALUE_TOO_LARGE, REQUEST_TOO_LARGE, OVERLOADED..."""


class Unavailable(VaultError):
    """UNAVAILABLE after every retry within the deadline: no leader, node(s) down or not ready."""


class DeadlineExceeded(VaultError):
    """The call's deadline passed. For a write the outcome is unknown: retry with the same request_id."""


class Cancelled(VaultError):
    """The call was cancelled."""


class Unauthenticated(VaultError):
    """UNAUTHENTICATED: the call carried no token, or a malformed, unknown, expired or revoked one."""


class PermissionDenied(VaultError):
    """PERMISSION_DENIED: the token lacks `capability` on `vault` (both in metadata; vault "*" = cluster-wide)."""

    @property
    def capability(self) -> str:
        return self.metadata.get("capability", "")

    @property
    def vault(self) -> str:
        return self.metadata.get("vault", "")


class InternalError(VaultError):
    """INTERNAL, UNKNOWN, UNIMPLEMENTED and anything else: a server bug or version skew."""


_CODE_CLASSES: dict[grpc.StatusCode, type[VaultError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: LimitExceeded,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
}


def _fallback_reason(code: grpc.StatusCode, details: str) -> str:
    """Reason for statuses produced by gRPC itself (no ErrorInfo): oversize messages, refused connections."""
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details:
        # The client's own receive limit is far above any server answer, so this is the server's verdict.
        return "REQUEST_TOO_LARGE"
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return "OVERLOADED"
    if code == grpc.StatusCode.UNAVAILABLE:
        return "CONNECTION_FAILED"
    return code.name


def error_from_rpc(err: grpc.RpcError) -> VaultError:
    """Translate a grpc.RpcError into the typed exception, reading google.rpc.ErrorInfo when present."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = (err.details() if hasattr(err, "details") else "") or ""
    reason, metadata = "", {}
    try:
        status = rpc_status.from_call(err)  # type: ignore[arg-type]
    except (ValueError, AttributeError):
        status = None
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Is(info.DESCRIPTOR) and detail.Unpack(info):
                reason, metadata = info.reason, dict(info.metadata)
                break
    if not reason:
        reason = _fallback_reason(code, details)
    cls = _CODE_CLASSES.get(code, InternalError)
    if reason == "VERSION_MISMATCH":
        cls = VersionMismatch
    return cls(code, reason, details, metadata)


def retryable(exc: VaultError) -> bool:
    """UNAVAILABLE always; DEADLINE_EXCEEDED of one attempt (the call's own deadline is checked separately)."""
    return isinstance(exc, (Unavailable, DeadlineExceeded))

"""The one table from failures to gRPC status + google.rpc.ErrorInfo (domain "vaultd").

Why one table: clients (ours and other languages) branch on (status code, reason); keeping every mapping
here means a new store reason gets one line, and DESIGN.md documents exactly this table. Messages come
from the store's own error text, which never contains a value; unknown exceptions are logged by type and
answered with a fixed message, so nothing a client sent can leak into a status.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

DOMAIN = "vaultd"
log = logging.getLogger("vaultd.api")

# StoreError.reason -> status code. Reasons not listed map to INTERNAL (a bug, not a client error).
STORE_REASON_CODES: dict[str, grpc.StatusCode] = {
    "INVALID_VAULT_NAME": grpc.StatusCode.INVALID_ARGUMENT,
    "INVALID_KEY": grpc.StatusCode.INVALID_ARGUMENT,
    "INVALID_ARGUMENT": grpc.StatusCode.INVALID_ARGUMENT,
    "MALFORMED_IMPORT": grpc.StatusCode.INVALID_ARGUMENT,
    "VAULT_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "KEY_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "VAULT_EXISTS": grpc.StatusCode.ALREADY_EXISTS,
    "VERSION_MISMATCH": grpc.StatusCode.FAILED_PRECONDITION,
    "TOO_MANY_VAULTS": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "VAULT_FULL": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "VALUE_TOO_LARGE": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "REQUEST_TOO_LARGE": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "SNAPSHOT_INVALID": grpc.StatusCode.INTERNAL,
    "INTERNAL": grpc.StatusCode.INTERNAL,
    "ALREADY_APPLIED": grpc.StatusCode.INTERNAL,
    "POLICY_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "TOKEN_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "TOO_MANY_POLICIES": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "TOO_MANY_TOKENS": grpc.StatusCode.RESOURCE_EXHAUSTED,
}

# Replication failures. Unavailable is retryable as is; ambiguous outcomes (the write may have committed)
# are retryable only with the same request_id, which the reason says.
UNAVAILABLE_REASONS = ("NO_LEADER", "NOT_READY", "OVERLOADED")
AMBIGUOUS_TIMEOUT = "TIMEOUT_RETRY_SAME_REQUEST_ID"
AMBIGUOUS_LEADER_CHANGE = "LEADER_CHANGED_RETRY_SAME_REQUEST_ID"
# Membership changes the Raft library refused (e.g. one already in progress).
MEMBERSHIP_REJECTED = "MEMBERSHIP_CHANGE_REJECTED"
INTERNAL = "INTERNAL"
# Authentication and authorization (vaultd.api.auth).
UNAUTHENTICATED = "UNAUTHENTICATED"
PERMISSION_DENIED = "PERMISSION_DENIED"
# A CreateToken retried with the request id of one that already created a token: that token's secret was in
# the first answer only and cannot be shown again.
TOKEN_ALREADY_CREATED = "TOKEN_ALREADY_CREATED"


@dataclass(frozen=True)
class Failure:
    """A failure ready to send: status code, ErrorInfo reason and metadata, and a value-free message."""

    code: grpc.StatusCode
    reason: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)

    def to_status(self) -> grpc.Status:
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN,
                                           metadata={k: str(v) for k, v in self.metadata.items()})
        detail = any_pb2.Any()
        detail.Pack(info)
        return rpc_status.to_status(status_pb2.Status(
            code=_CODE_NUMBERS[self.code], message=self.message, details=[detail]))


_CODE_NUMBERS: dict[grpc.StatusCode, int] = {c: c.value[0] for c in grpc.StatusCode}
assert _CODE_NUMBERS[grpc.StatusCode.INVALID_ARGUMENT] == code_pb2.INVALID_ARGUMENT


class ApiError(Exception):
    """A failure raised by the API layer itself (validation the store does not do, e.g. a bad import stream)."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str,
                 metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.failure = Failure(code, reason, message, dict(metadata or {}))


def invalid_argument(message: str, **metadata: str) -> ApiError:
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", message, metadata)


def unauthenticated(message: str) -> ApiError:
    """Missing, malformed, unknown, expired or revoked token. The message never echoes the token."""
    return ApiError(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED, message)


def permission_denied(capability: str, vault: str) -> ApiError:
    """A valid token without `capability` on `vault` ("*" for cluster-wide capabilities such as admin)."""
    return ApiError(grpc.StatusCode.PERMISSION_DENIED, PERMISSION_DENIED,
                    f"the token lacks the {capability!r} capability on {vault!r}",
                    {"capability": capability, "vault": vault})


def from_store_error(exc: Exception) -> Failure:
    """A StoreError (anything with .reason and .metadata) -> Failure by STORE_REASON_CODES."""
    reason = str(getattr(exc, "reason", INTERNAL))
    metadata = {str(k): str(v) for k, v in (getattr(exc, "metadata", None) or {}).items()}
    code = STORE_REASON_CODES.get(reason)
    if code is None:
        log.error("store error with unmapped reason %s (%s)", reason, type(exc).__name__)
        return Failure(grpc.StatusCode.INTERNAL, INTERNAL, "internal error", {})
    return Failure(code, reason, str(exc) or reason, metadata)


def from_exception(exc: BaseException, method: str = "") -> Failure:
    """Map anything a servicer may see. Unknown exceptions are logged (type only, never args) as INTERNAL."""
    if isinstance(exc, ApiError):
        return exc.failure
    from vaultd.replication import errors as repl_errors
    from vaultd.store.errors import StoreError

    if isinstance(exc, StoreError):
        return from_store_error(exc)
    if isinstance(exc, repl_errors.Unavailable):
        reason = str(getattr(exc, "reason", "") or "NO_LEADER")
        return Failure(grpc.StatusCode.UNAVAILABLE, reason, str(exc) or "cluster unavailable, retry",
                       {"retry": "any"})
    if isinstance(exc, repl_errors.LeaderChanged):
        return Failure(grpc.StatusCode.UNAVAILABLE, AMBIGUOUS_LEADER_CHANGE,
                       "leader changed: the request may have been applied; retry with the same request_id",
                       {"retry": "same_request_id", "cause": exc.reason})
    if isinstance(exc, repl_errors.Ambiguous):
        return Failure(grpc.StatusCode.DEADLINE_EXCEEDED, AMBIGUOUS_TIMEOUT,
                       "outcome unknown: the request may have been applied; retry with the same request_id",
                       {"retry": "same_request_id", "cause": exc.reason})
    if isinstance(exc, repl_errors.MembershipError):
        return Failure(grpc.StatusCode.FAILED_PRECONDITION, MEMBERSHIP_REJECTED, str(exc) or MEMBERSHIP_REJECTED,
                       dict(exc.metadata))
    log.error("internal error in %s: %s at %s", method or "rpc", type(exc).__name__, _where(exc))
    return Failure(grpc.StatusCode.INTERNAL, INTERNAL, "internal error", {})


def client_gone(remaining: float | None) -> Failure:
    """The call's own client left (cancelled, or its deadline passed) while we read its request stream.

    Not a server failure: nothing is logged, and the status (which the client never sees) is the one that
    describes what happened, so grpc_server_handled_total does not count it as INTERNAL.
    """
    code = (grpc.StatusCode.DEADLINE_EXCEEDED if remaining is not None and remaining <= 0
            else grpc.StatusCode.CANCELLED)
    return Failure(code, code.name, "the client cancelled the call or its deadline passed")


def _where(exc: BaseException) -> str:
    """Innermost frame as file:line(function). Not the traceback text: exception args may hold a value."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{last.filename}:{last.lineno}({last.name})"


def abort(context: grpc.ServicerContext, failure: Failure) -> NoReturn:
    context.abort_with_status(failure.to_status())
    raise AssertionError("unreachable: abort_with_status raises")

"""Replication failures, split by what a client may safely do next.

Why two families: `Unavailable` means the command was certainly NOT applied (retry freely), while
`Ambiguous` subclasses mean it MAY have been applied (retry only with the same request_id, so the store's
dedup table answers with the original result instead of applying twice). `reason` is the machine-readable
string the API layer puts into google.rpc.ErrorInfo.
"""

from __future__ import annotations


class ReplicationError(Exception):
    reason: str = "REPLICATION_ERROR"

    def __init__(self, message: str = "", reason: str | None = None) -> None:
        super().__init__(message or self.__class__.__name__)
        if reason is not None:
            self.reason = reason


class Unavailable(ReplicationError):
    """Not applied; retryable as is. reason: NO_LEADER, NOT_READY or OVERLOADED (queue full)."""

    reason = "NO_LEADER"


class Ambiguous(ReplicationError):
    """May or may not have been applied: retry with the same request_id."""


class Timeout(Ambiguous):
    """The deadline passed before the outcome was known."""

    reason = "TIMEOUT"


class LeaderChanged(Ambiguous):
    """The leader changed while the command was in flight."""

    reason = "LEADER_CHANGED"


class UnknownOutcome(LeaderChanged):
    """pysyncobj lost track of the command (UNKNOWN_OUTCOME). A LeaderChanged so the API maps it the same way."""

    reason = "UNKNOWN_OUTCOME"


class MembershipError(ReplicationError):
    """A membership change was refused (a strict reconfiguration check failed, another change in progress,
    unknown member). `metadata["check"]` says which check; the API puts metadata into ErrorInfo."""

    reason = "MEMBERSHIP_CHANGE_REJECTED"

    def __init__(self, message: str = "", metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.metadata = dict(metadata or {})

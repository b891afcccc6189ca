"""Readiness: one definition shared by /readyz and the gRPC health service, so they never disagree.

A node is ready when `node.is_ready()` says so (it has a leader and has applied up to the leader's commit
index). The verbose checks explain a "not ready" from `node.status()`; they never override is_ready().
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class NodeLike(Protocol):
    """What observability needs from vaultd.replication.ReplicatedNode."""

    def status(self) -> Any: ...
    def is_ready(self) -> bool: ...


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: tuple[Check, ...]


def leader_of(status: Any) -> str:
    """Leader node id from a status object ("" when none)."""
    return str(getattr(status, "leader_id", "") or "")


def readiness(node: NodeLike) -> Readiness:
    """Evaluate readiness now. Cheap: status() and is_ready() read in-memory Raft state only."""
    try:
        status = node.status()
        ready = bool(node.is_ready())
    except Exception as exc:  # a node that cannot even report status is not ready
        return Readiness(False, (Check("status", False, f"status unavailable: {type(exc).__name__}"),))
    leader = leader_of(status)
    applied = int(getattr(status, "applied_index", 0) or 0)
    commit = int(getattr(status, "commit_index", 0) or 0)
    checks = (
        Check("has_leader", bool(leader), f"leader {leader}" if leader else "no leader known"),
        Check("caught_up", ready,
              f"applied {applied}, commit {commit}" + ("" if ready else " (not caught up with the leader)")),
    )
    return Readiness(ready, checks)

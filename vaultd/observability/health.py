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
    """The leader's node id if this node knows one it can reach, else "".

    pysyncobj keeps naming the old leader while a follower is cut off from everyone (it starts no election
    without a connection), so a leader whose member entry says unreachable does not count.
    """
    leader = str(getattr(status, "leader_id", "") or "")
    for member in getattr(status, "members", ()) or ():
        if getattr(member, "node_id", None) == leader and not getattr(member, "reachable", True):
            return ""
    return leader


def readiness(node: NodeLike) -> Readiness:
    """Evaluate readiness now. Cheap: status() and is_ready() read in-memory Raft state only."""
    try:
        status = node.status()
        ready = bool(node.is_ready())
    except Exception as exc:  # a node that cannot even report status is not ready
        return Readiness(False, (Check("status", False, f"status unavailable: {type(exc).__name__}"),))
    leader = leader_of(status)
    named = str(getattr(status, "leader_id", "") or "")
    applied = int(getattr(status, "applied_index", 0) or 0)
    commit = int(getattr(status, "commit_index", 0) or 0)
    checks = (
        Check("has_leader", bool(leader), f"leader {leader}" if leader else
              f"leader {named} unreachable" if named else "no leader known"),
        Check("caught_up", ready,
              f"applied {applied}, commit {commit}" + ("" if ready else " (not caught up with the leader)")),
    )
    return Readiness(ready, checks)

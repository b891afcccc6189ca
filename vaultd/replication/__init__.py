"""Raft replication of the vault state machine (pysyncobj): durable journal, group commit, snapshots,
linearizable read barriers, membership. See DESIGN.md."""

from __future__ import annotations

from vaultd.replication import errors
from vaultd.replication.node import ReplicatedNode
from vaultd.replication.status import MemberStatus, NodeStatusInfo

__all__ = ["MemberStatus", "NodeStatusInfo", "ReplicatedNode", "errors"]

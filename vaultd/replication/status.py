"""Plain status records handed to the API (GetStatus), observability collectors and /readyz.

Frozen dataclasses so other threads can read them without locks; built from one snapshot of pysyncobj's
getStatus() plus the members table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class MemberStatus:
    node_id: str              # from the members table (or the config seed); the raft address if unknown
    raft_addr: str
    grpc_addr: str            # "" until the member registered itself
    voter: bool
    reachable: bool           # this node has a working Raft connection to it (True for itself)
    match_index: int          # leader only: highest index known replicated on it (0 elsewhere)
    is_self: bool = False


@dataclass(frozen=True)
class NodeStatusInfo:
    node_id: str
    raft_addr: str
    grpc_addr: str
    role: str                 # leader, follower, candidate (learner is not used: every member votes)
    leader_id: str            # "" when no leader is known
    leader_raft_addr: str
    term: int
    commit_index: int
    applied_index: int        # the state machine's applied index (may exceed Raft's after a restart)
    snapshot_index: int
    log_length: int
    journal_bytes: int
    ready: bool
    pending_commands: int
    members: tuple[MemberStatus, ...]
    # The hash reads the whole database, so it is computed only when someone reads `state_hash`
    # (GetStatus does; the metrics collector, which calls status() on every scrape, does not).
    hash_source: Callable[[], tuple[int, str]] = field(default=lambda: (0, ""), repr=False, compare=False)

    @property
    def state_hash(self) -> str:
        return self.hash_source()[1]

    @property
    def hashed_state(self) -> tuple[int, str]:
        """(applied index, state hash) read together, for reports that must pair them (GetStatus)."""
        return self.hash_source()

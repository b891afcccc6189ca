"""Membership of the Raft group: add/remove with etcd-style strict reconfiguration checks, members table.

A mixin of ReplicatedNode (it shares the node's Raft object, lock and submit path); see DESIGN.md.

Why the checks: pysyncobj adds any address it is given. Three AddMember calls naming addresses where nothing
listened left 6 voters whose quorum (4) the 3 live nodes could never reach again, and no RemoveMember could
commit to repair it. So, like etcd's --strict-reconfig-check, a change is refused when the configuration it
produces would have fewer reachable voters than its quorum, and a new member must first answer on its Raft
port with the cluster's credentials (and, with peer TLS, a certificate naming its host).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from pysyncobj import FAIL_REASON

from vaultd.config import NodeConfig, parse_hostport
from vaultd.observability.logs import log_membership_change
from vaultd.replication import errors, peer_client, wire
from vaultd.replication.batcher import failure_for
from vaultd.replication.peer_tls import PeerTls
from vaultd.replication.status import MemberStatus
from vaultd.store import commands

# How long a candidate member gets to answer the probe before it is added. The runbook is "start the node,
# then AddMember": a node started a moment ago binds its Raft port within a second or two, so connection
# failures are retried for this long (bounded by the caller's deadline). Wrong credentials, a certificate from
# another CA or naming another host are final at once.
PROBE_WINDOW_SECONDS = 5.0
_PROBE_RETRY_SECONDS = 0.2
_RETRYABLE_PROBE_FAILURES = frozenset({"connection_refused", "connect_failed", "connect_timeout", "timeout"})


def quorum(voters: int) -> int:
    return voters // 2 + 1


class Membership:
    """add_member / remove_member / member status for ReplicatedNode."""

    cfg: NodeConfig
    node_id: str
    machine: Any
    _raft: Any
    _journal: Any
    _peer_tls: PeerTls | None
    _membership_lock: threading.Lock
    _removed: bool
    _check_can_propose: Callable[[], Any]
    submit: Callable[..., list[Any]]

    # --- the replicated members table ---------------------------------------------------------------------
    def _member_table(self) -> dict[str, Any]:
        """raft_addr -> MemberRecord from the replicated table (local read)."""
        try:
            return {m.raft_addr: m for m in self.machine.reader().members()}
        except Exception:
            return {}

    def _id_of(self, raft_addr: str) -> str:
        if raft_addr == self.cfg.raft_addr:
            return self.node_id
        record = self._member_table().get(raft_addr)
        if record is not None:
            return str(record.node_id)
        return self.cfg.peer_ids.get(raft_addr, raft_addr)

    def _members_status(self, st: dict[str, Any]) -> tuple[MemberStatus, ...]:
        table = self._member_table()
        addrs = [self.cfg.raft_addr] + sorted(
            k[len("partner_node_status_server_"):] for k in st if k.startswith("partner_node_status_server_"))
        out = []
        for addr in addrs:
            record = table.get(addr)
            is_self = addr == self.cfg.raft_addr
            node_id = self.node_id if is_self else (record.node_id if record else self.cfg.peer_ids.get(addr, addr))
            grpc_addr = self.cfg.grpc_addr if is_self else (record.grpc_addr if record else "")
            out.append(MemberStatus(
                node_id=str(node_id), raft_addr=addr, grpc_addr=str(grpc_addr),
                voter=bool(record.voter) if record else True,
                reachable=is_self or st.get("partner_node_status_server_" + addr) == 2,
                match_index=self._journal[-1][1] if is_self else int(st.get("match_idx_server_" + addr, 0) or 0),
                is_self=is_self))
        return tuple(out)

    # --- strict reconfiguration checks --------------------------------------------------------------------
    def _reachable_voters(self, raft: Any) -> set[str]:
        """Voters this node has a live, authenticated Raft link to, plus itself.

        This node's view: pysyncobj keeps a full mesh, so a follower's links approximate the leader's; a
        change that passes here still needs the leader's majority to commit.
        """
        return {self.cfg.raft_addr} | {n.address for n in raft.otherNodes if raft.isNodeConnected(n)}

    def _refuse(self, action: str, node_id: str, raft_addr: str, why: str, **metadata: Any) -> errors.MembershipError:
        log_membership_change(action, node_id, raft_addr, ok=False, error=why)
        meta = {"check": why, "raft_addr": raft_addr, **{k: str(v) for k, v in metadata.items()}}
        return errors.MembershipError(f"{action} {node_id} refused: {why}", metadata=meta)

    def _check_add(self, raft: Any, node_id: str, raft_addr: str, deadline: float) -> None:
        probe_end = min(deadline, time.monotonic() + PROBE_WINDOW_SECONDS)
        while True:
            try:
                peer_client.call(raft_addr, raft.encryptor, self._peer_tls, max(0.1, probe_end - time.monotonic()))
                break
            except peer_client.PeerUnreachable as exc:
                if exc.why not in _RETRYABLE_PROBE_FAILURES or time.monotonic() + _PROBE_RETRY_SECONDS >= probe_end:
                    raise self._refuse("add", node_id, raft_addr, "member_unreachable", detail=exc.why) from None
            time.sleep(_PROBE_RETRY_SECONDS)
        voters = len(raft.otherNodes) + 2
        reachable = len(self._reachable_voters(raft)) + 1
        if reachable < quorum(voters):
            raise self._refuse("add", node_id, raft_addr, "quorum_at_risk", voters_after=voters,
                               reachable_after=reachable, quorum_after=quorum(voters))

    def _check_remove(self, raft: Any, node_id: str, raft_addr: str) -> None:
        voters = len(raft.otherNodes)      # + self - the member removed
        reachable = len(self._reachable_voters(raft) - {raft_addr})
        if reachable < quorum(voters):
            raise self._refuse("remove", node_id, raft_addr, "quorum_at_risk", voters_after=voters,
                               reachable_after=reachable, quorum_after=quorum(voters))

    # --- changes ------------------------------------------------------------------------------------------
    def add_member(self, node_id: str, raft_addr: str, grpc_addr: str, timeout: float = 10.0) -> None:
        """Add a voter: checks, Raft configuration, then the members table (node_id -> addresses)."""
        parse_hostport(raft_addr)
        deadline = time.monotonic() + timeout
        with self._membership_lock:
            raft = self._check_can_propose()
            known = {n.address for n in raft.otherNodes} | {self.cfg.raft_addr}
            if raft_addr not in known:
                self._check_add(raft, node_id, raft_addr, deadline)
                self._membership_change(lambda cb: raft.addNodeToCluster(raft_addr, callback=cb), deadline,
                                        "add", node_id, raft_addr)
            # One request id per call (retries inside _submit_until reuse it): an id derived from the arguments
            # would make re-adding the same member later a deduplicated no-op.
            self._submit_until(commands.Envelope(f"member-set-{uuid.uuid4().hex}",
                                                 commands.SetMember(node_id, raft_addr, grpc_addr)), deadline)
        log_membership_change("add", node_id, raft_addr)

    def remove_member(self, node_id: str, timeout: float = 10.0) -> None:
        """Remove a member; when it is the leader, leadership is transferred away first."""
        deadline = time.monotonic() + timeout
        with self._membership_lock:
            raft = self._check_can_propose()
            raft_addr = self._addr_of(node_id)
            if raft_addr is None:
                raise errors.MembershipError(f"unknown member {node_id}", metadata={"check": "unknown_member"})
            in_config = raft_addr == self.cfg.raft_addr or raft_addr in {n.address for n in raft.otherNodes}
            if in_config:
                self._check_remove(raft, node_id, raft_addr)
                self._move_leadership_off(raft_addr, deadline)
                leader = raft._getLeader()
                if raft_addr == self.cfg.raft_addr and leader is not None:
                    # This node cannot see the commit of its own removal (the leader stops sending to it at
                    # once): ask the leader directly over the authenticated utility channel.
                    self._utility(leader.address, ["remove", raft_addr], deadline, "remove", node_id)
                    self._removed = True
                else:
                    self._membership_change(lambda cb: raft.removeNodeFromCluster(raft_addr, callback=cb),
                                            deadline, "remove", node_id, raft_addr)
            if raft_addr != self.cfg.raft_addr:
                self._submit_until(commands.Envelope(f"member-remove-{uuid.uuid4().hex}",
                                                     commands.RemoveMember(node_id)), deadline)
        log_membership_change("remove", node_id, raft_addr)

    def _addr_of(self, node_id: str) -> str | None:
        if node_id == self.node_id:
            return self.cfg.raft_addr
        for addr, record in self._member_table().items():
            if record.node_id == node_id:
                return str(addr)
        for addr, pid in self.cfg.peer_ids.items():
            if pid == node_id:
                return addr
        raft = self._raft
        if raft is not None and node_id in {n.address for n in raft.otherNodes}:
            return node_id
        return None

    def _move_leadership_off(self, raft_addr: str, deadline: float) -> None:
        """If `raft_addr` leads, ask it to hand leadership to a caught-up follower and wait for a new leader."""
        raft = self._check_can_propose()
        while True:
            leader = raft._getLeader()
            if leader is not None:
                self._check_can_propose()   # removed from the cluster, or the leader is unreachable
            if leader is not None and leader.address != raft_addr:
                return
            if time.monotonic() > deadline:
                raise errors.Timeout("leadership did not move off the member being removed")
            if leader is not None:
                if leader.address == self.cfg.raft_addr:
                    raft.transferLeadership()
                else:
                    try:
                        self._utility(leader.address, ["transfer"], deadline, "transfer", raft_addr)
                    except errors.ReplicationError:
                        pass
                t_end = min(deadline, time.monotonic() + 2.0)
                while time.monotonic() < t_end:
                    now_leader = raft._getLeader()
                    if now_leader is not None and now_leader.address != raft_addr:
                        return
                    time.sleep(0.05)
            else:
                time.sleep(0.1)

    def _utility(self, addr: str, command: list[Any], deadline: float, action: str, subject: str) -> None:
        """pysyncobj's utility command on a peer's Raft port, over the same authenticated (TLS) link."""
        remaining = max(0.5, deadline - time.monotonic())
        raft = self._raft
        try:
            result = peer_client.call(addr, raft.encryptor if raft is not None else None, self._peer_tls,
                                      remaining, command, frame_max=wire.HANDSHAKE_FRAME_MAX_BYTES)
        except peer_client.PeerUnreachable as exc:
            raise errors.Unavailable(f"{action}: cannot reach {addr}: {exc.why}", "NO_LEADER") from None
        if not str(result).startswith("SUCCESS"):
            raise errors.MembershipError(f"{action} {subject} refused by {addr}", metadata={"check": "refused"})

    def _membership_change(self, start: Callable[[Callable[[Any, int], None]], None], deadline: float,
                           action: str, node_id: str, raft_addr: str) -> None:
        """Run one pysyncobj membership change; REQUEST_DENIED (change in progress / new leader) is retried."""
        while True:
            done = threading.Event()
            outcome: list[int] = []

            def callback(_res: Any, err: int) -> None:
                outcome.append(err)
                done.set()

            start(callback)
            if not done.wait(max(0.0, deadline - time.monotonic())):
                log_membership_change(action, node_id, raft_addr, ok=False, error="timeout")
                raise errors.Timeout(f"{action} {node_id}: no outcome before the deadline")
            err = outcome[0]
            if err == FAIL_REASON.SUCCESS:
                return
            if err in (FAIL_REASON.REQUEST_DENIED, FAIL_REASON.MISSING_LEADER, FAIL_REASON.NOT_LEADER) \
                    and time.monotonic() + 0.2 < deadline:
                time.sleep(0.2)
                continue
            log_membership_change(action, node_id, raft_addr, ok=False, error=str(err))
            if err == FAIL_REASON.REQUEST_DENIED:
                raise errors.MembershipError(f"{action} {node_id} refused (another change in progress?)",
                                             metadata={"check": "change_in_progress"})
            raise failure_for(err)

    def _submit_until(self, envelope: commands.Envelope, deadline: float) -> None:
        """Submit one command, retrying retryable failures (same request id) until the deadline."""
        while True:
            try:
                result = self.submit([envelope], max(0.1, deadline - time.monotonic()))[0]
                if not result.ok:
                    raise errors.MembershipError(f"members table update refused: {result.error.reason}",
                                                 metadata={"check": "members_table", "cause": result.error.reason})
                return
            except (errors.Unavailable, errors.LeaderChanged):
                if time.monotonic() + 0.2 >= deadline:
                    raise
                time.sleep(0.2)

"""ClusterService: node status, membership changes, replicated limits, and the internal GetLocalStats."""

from __future__ import annotations

from typing import Any

import grpc

from vaultd.api import convert, errors
from vaultd.api.base import ServicerBase, timeout_of, unary
from vaultd.api.stats import StatsFanout
from vaultd.config import parse_hostport
from vaultd.store import commands as cmd
from vaultd.store import validation
from vaultd.v1 import cluster_pb2, cluster_pb2_grpc

_NODE_ID_MAX = 64


def _node_id(value: str) -> str:
    if not value or len(value) > _NODE_ID_MAX or not value.isprintable() or " " in value:
        raise errors.invalid_argument("node_id must be 1-64 printable characters without spaces", field="node_id")
    return value


def _address(value: str, field: str, required: bool) -> str:
    if not value and not required:
        return ""
    try:
        parse_hostport(value)
    except ValueError:
        raise errors.invalid_argument(f"{field} must be host:port", field=field) from None
    return value


class ClusterServicer(ServicerBase, cluster_pb2_grpc.ClusterServiceServicer):
    def __init__(self, node: Any, machine: Any, stats: Any, cfg: Any, fanout: StatsFanout) -> None:
        super().__init__(node, machine, stats, cfg)
        self.fanout = fanout

    def _members(self) -> list[cluster_pb2.Member]:
        return [convert.member(m) for m in self.node.status().members]

    @unary
    def GetStatus(self, request: cluster_pb2.GetStatusRequest, context: grpc.ServicerContext) -> cluster_pb2.NodeStatus:
        s = self.node.status()
        applied_index, state_hash = s.hashed_state   # read together: the hash is at exactly that index
        return cluster_pb2.NodeStatus(
            node_id=s.node_id, raft_addr=s.raft_addr, grpc_addr=s.grpc_addr, role=s.role, leader_id=s.leader_id,
            term=s.term, commit_index=s.commit_index, applied_index=applied_index,
            snapshot_index=s.snapshot_index, state_hash=state_hash,
            members=[convert.member(m) for m in s.members], ready=s.ready)

    @unary
    def AddMember(self, request: cluster_pb2.AddMemberRequest,
                  context: grpc.ServicerContext) -> cluster_pb2.MembershipResponse:
        node_id = _node_id(request.node_id)
        raft_addr = _address(request.raft_addr, "raft_addr", True)
        self._check_not_taken(context, node_id, raft_addr)
        self.node.add_member(node_id, raft_addr, _address(request.grpc_addr, "grpc_addr", False),
                             timeout=timeout_of(context))
        return cluster_pb2.MembershipResponse(members=self._members())

    def _check_not_taken(self, context: grpc.ServicerContext, node_id: str, raft_addr: str) -> None:
        """Refuse a known id at another address or a known address under another id before any change:
        Raft would gain a phantom voter (shrinking the failure margin) or two ids would share one address.
        The same id at the same address passes: re-adding a member is a no-op, so a retry is safe."""
        for member in self.reader(context).members():
            if (member.node_id == node_id) != (member.raft_addr == raft_addr):
                raise errors.ApiError(
                    grpc.StatusCode.FAILED_PRECONDITION, errors.MEMBERSHIP_REJECTED,
                    f"member {member.node_id} already has raft address {member.raft_addr}; remove it first",
                    {"node_id": node_id, "member": member.node_id})

    @unary
    def RemoveMember(self, request: cluster_pb2.RemoveMemberRequest,
                     context: grpc.ServicerContext) -> cluster_pb2.MembershipResponse:
        self.node.remove_member(_node_id(request.node_id), timeout=timeout_of(context))
        return cluster_pb2.MembershipResponse(members=self._members())

    @unary
    def GetLimits(self, request: cluster_pb2.GetLimitsRequest, context: grpc.ServicerContext) -> cluster_pb2.Limits:
        return convert.limits(self.reader(context).limits())

    @unary
    def SetLimits(self, request: cluster_pb2.Limits, context: grpc.ServicerContext) -> cluster_pb2.Limits:
        values = (request.max_vaults, request.max_keys_per_vault, request.max_value_size, request.max_scan_results)
        if any(v < 0 for v in values):
            raise errors.invalid_argument("limits must not be negative (0 keeps the current value)", field="limits")
        result = self.submit(context, "", cmd.SetLimits(*values))
        return convert.limits(result)

    @unary
    def GetLocalStats(self, request: cluster_pb2.GetLocalStatsRequest,
                      context: grpc.ServicerContext) -> cluster_pb2.LocalStats:
        return self.fanout.local(validation.validate_vault_name(request.name))

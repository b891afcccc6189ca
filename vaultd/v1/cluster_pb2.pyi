import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from vaultd.v1 import vault_pb2 as _vault_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Member(_message.Message):
    __slots__ = ("node_id", "raft_addr", "grpc_addr", "voter", "reachable", "match_index")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDR_FIELD_NUMBER: _ClassVar[int]
    VOTER_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    MATCH_INDEX_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    raft_addr: str
    grpc_addr: str
    voter: bool
    reachable: bool
    match_index: int
    def __init__(self, node_id: _Optional[str] = ..., raft_addr: _Optional[str] = ..., grpc_addr: _Optional[str] = ..., voter: _Optional[bool] = ..., reachable: _Optional[bool] = ..., match_index: _Optional[int] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("node_id", "raft_addr", "grpc_addr", "role", "leader_id", "term", "commit_index", "applied_index", "state_hash", "members", "snapshot_index", "ready")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDR_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    STATE_HASH_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_INDEX_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    raft_addr: str
    grpc_addr: str
    role: str
    leader_id: str
    term: int
    commit_index: int
    applied_index: int
    state_hash: str
    members: _containers.RepeatedCompositeFieldContainer[Member]
    snapshot_index: int
    ready: bool
    def __init__(self, node_id: _Optional[str] = ..., raft_addr: _Optional[str] = ..., grpc_addr: _Optional[str] = ..., role: _Optional[str] = ..., leader_id: _Optional[str] = ..., term: _Optional[int] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., state_hash: _Optional[str] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., snapshot_index: _Optional[int] = ..., ready: _Optional[bool] = ...) -> None: ...

class AddMemberRequest(_message.Message):
    __slots__ = ("node_id", "raft_addr", "grpc_addr")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDR_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    raft_addr: str
    grpc_addr: str
    def __init__(self, node_id: _Optional[str] = ..., raft_addr: _Optional[str] = ..., grpc_addr: _Optional[str] = ...) -> None: ...

class RemoveMemberRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class MembershipResponse(_message.Message):
    __slots__ = ("members",)
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class GetLimitsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_vaults", "max_keys_per_vault", "max_value_size", "max_scan_results")
    MAX_VAULTS_FIELD_NUMBER: _ClassVar[int]
    MAX_KEYS_PER_VAULT_FIELD_NUMBER: _ClassVar[int]
    MAX_VALUE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_SCAN_RESULTS_FIELD_NUMBER: _ClassVar[int]
    max_vaults: int
    max_keys_per_vault: int
    max_value_size: int
    max_scan_results: int
    def __init__(self, max_vaults: _Optional[int] = ..., max_keys_per_vault: _Optional[int] = ..., max_value_size: _Optional[int] = ..., max_scan_results: _Optional[int] = ...) -> None: ...

class GetLocalStatsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class LocalStats(_message.Message):
    __slots__ = ("node_id", "access_count_24h", "last_accessed", "keys")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ACCESS_COUNT_24H_FIELD_NUMBER: _ClassVar[int]
    LAST_ACCESSED_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    access_count_24h: int
    last_accessed: _timestamp_pb2.Timestamp
    keys: _containers.RepeatedCompositeFieldContainer[_vault_pb2.KeyAccess]
    def __init__(self, node_id: _Optional[str] = ..., access_count_24h: _Optional[int] = ..., last_accessed: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., keys: _Optional[_Iterable[_Union[_vault_pb2.KeyAccess, _Mapping]]] = ...) -> None: ...

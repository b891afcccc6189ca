from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImportMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMPORT_MODE_UNSPECIFIED: _ClassVar[ImportMode]
    IMPORT_MODE_FAIL_IF_EXISTS: _ClassVar[ImportMode]
    IMPORT_MODE_OVERWRITE: _ClassVar[ImportMode]
    IMPORT_MODE_SKIP_EXISTING: _ClassVar[ImportMode]
IMPORT_MODE_UNSPECIFIED: ImportMode
IMPORT_MODE_FAIL_IF_EXISTS: ImportMode
IMPORT_MODE_OVERWRITE: ImportMode
IMPORT_MODE_SKIP_EXISTING: ImportMode

class Batch(_message.Message):
    __slots__ = ("timestamp_ns", "commands")
    TIMESTAMP_NS_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    timestamp_ns: int
    commands: _containers.RepeatedCompositeFieldContainer[Envelope]
    def __init__(self, timestamp_ns: _Optional[int] = ..., commands: _Optional[_Iterable[_Union[Envelope, _Mapping]]] = ...) -> None: ...

class Envelope(_message.Message):
    __slots__ = ("request_id", "command")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    command: Command
    def __init__(self, request_id: _Optional[str] = ..., command: _Optional[_Union[Command, _Mapping]] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("create_vault", "update_vault", "delete_vault", "copy_vault", "put", "delete", "txn", "set_limits", "set_member", "remove_member", "noop", "import_begin", "import_chunk", "import_commit", "put_policy", "delete_policy", "create_token", "revoke_token")
    CREATE_VAULT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_VAULT_FIELD_NUMBER: _ClassVar[int]
    DELETE_VAULT_FIELD_NUMBER: _ClassVar[int]
    COPY_VAULT_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    TXN_FIELD_NUMBER: _ClassVar[int]
    SET_LIMITS_FIELD_NUMBER: _ClassVar[int]
    SET_MEMBER_FIELD_NUMBER: _ClassVar[int]
    REMOVE_MEMBER_FIELD_NUMBER: _ClassVar[int]
    NOOP_FIELD_NUMBER: _ClassVar[int]
    IMPORT_BEGIN_FIELD_NUMBER: _ClassVar[int]
    IMPORT_CHUNK_FIELD_NUMBER: _ClassVar[int]
    IMPORT_COMMIT_FIELD_NUMBER: _ClassVar[int]
    IMPORT_FIELD_NUMBER: _ClassVar[int]
    PUT_POLICY_FIELD_NUMBER: _ClassVar[int]
    DELETE_POLICY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REVOKE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    create_vault: CreateVault
    update_vault: UpdateVault
    delete_vault: DeleteVault
    copy_vault: CopyVault
    put: Put
    delete: Delete
    txn: Txn
    set_limits: SetLimits
    set_member: SetMember
    remove_member: RemoveMember
    noop: Noop
    import_begin: ImportBegin
    import_chunk: ImportChunk
    import_commit: ImportCommit
    put_policy: PutPolicy
    delete_policy: DeletePolicy
    create_token: CreateToken
    revoke_token: RevokeToken
    def __init__(self, create_vault: _Optional[_Union[CreateVault, _Mapping]] = ..., update_vault: _Optional[_Union[UpdateVault, _Mapping]] = ..., delete_vault: _Optional[_Union[DeleteVault, _Mapping]] = ..., copy_vault: _Optional[_Union[CopyVault, _Mapping]] = ..., put: _Optional[_Union[Put, _Mapping]] = ..., delete: _Optional[_Union[Delete, _Mapping]] = ..., txn: _Optional[_Union[Txn, _Mapping]] = ..., set_limits: _Optional[_Union[SetLimits, _Mapping]] = ..., set_member: _Optional[_Union[SetMember, _Mapping]] = ..., remove_member: _Optional[_Union[RemoveMember, _Mapping]] = ..., noop: _Optional[_Union[Noop, _Mapping]] = ..., import_begin: _Optional[_Union[ImportBegin, _Mapping]] = ..., import_chunk: _Optional[_Union[ImportChunk, _Mapping]] = ..., import_commit: _Optional[_Union[ImportCommit, _Mapping]] = ..., put_policy: _Optional[_Union[PutPolicy, _Mapping]] = ..., delete_policy: _Optional[_Union[DeletePolicy, _Mapping]] = ..., create_token: _Optional[_Union[CreateToken, _Mapping]] = ..., revoke_token: _Optional[_Union[RevokeToken, _Mapping]] = ..., **kwargs) -> None: ...

class CreateVault(_message.Message):
    __slots__ = ("name", "description", "owner", "tags")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    owner: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., owner: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class TagList(_message.Message):
    __slots__ = ("tags",)
    TAGS_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tags: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdateVault(_message.Message):
    __slots__ = ("name", "description", "owner", "tags")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    owner: str
    tags: TagList
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., owner: _Optional[str] = ..., tags: _Optional[_Union[TagList, _Mapping]] = ...) -> None: ...

class DeleteVault(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CopyVault(_message.Message):
    __slots__ = ("source", "destination")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    source: str
    destination: str
    def __init__(self, source: _Optional[str] = ..., destination: _Optional[str] = ...) -> None: ...

class Put(_message.Message):
    __slots__ = ("vault", "key", "value", "expected_version")
    VAULT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    vault: str
    key: str
    value: bytes
    expected_version: int
    def __init__(self, vault: _Optional[str] = ..., key: _Optional[str] = ..., value: _Optional[bytes] = ..., expected_version: _Optional[int] = ...) -> None: ...

class Delete(_message.Message):
    __slots__ = ("vault", "key", "expected_version")
    VAULT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    vault: str
    key: str
    expected_version: int
    def __init__(self, vault: _Optional[str] = ..., key: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class TxnOp(_message.Message):
    __slots__ = ("is_delete", "key", "value", "expected_version")
    IS_DELETE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    is_delete: bool
    key: str
    value: bytes
    expected_version: int
    def __init__(self, is_delete: _Optional[bool] = ..., key: _Optional[str] = ..., value: _Optional[bytes] = ..., expected_version: _Optional[int] = ...) -> None: ...

class Txn(_message.Message):
    __slots__ = ("vault", "ops")
    VAULT_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    vault: str
    ops: _containers.RepeatedCompositeFieldContainer[TxnOp]
    def __init__(self, vault: _Optional[str] = ..., ops: _Optional[_Iterable[_Union[TxnOp, _Mapping]]] = ...) -> None: ...

class SetLimits(_message.Message):
    __slots__ = ("max_vaults", "max_keys_per_vault", "max_value_size", "max_scan_results", "only_if_unset")
    MAX_VAULTS_FIELD_NUMBER: _ClassVar[int]
    MAX_KEYS_PER_VAULT_FIELD_NUMBER: _ClassVar[int]
    MAX_VALUE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_SCAN_RESULTS_FIELD_NUMBER: _ClassVar[int]
    ONLY_IF_UNSET_FIELD_NUMBER: _ClassVar[int]
    max_vaults: int
    max_keys_per_vault: int
    max_value_size: int
    max_scan_results: int
    only_if_unset: bool
    def __init__(self, max_vaults: _Optional[int] = ..., max_keys_per_vault: _Optional[int] = ..., max_value_size: _Optional[int] = ..., max_scan_results: _Optional[int] = ..., only_if_unset: _Optional[bool] = ...) -> None: ...

class SetMember(_message.Message):
    __slots__ = ("node_id", "raft_addr", "grpc_addr", "voter")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDR_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDR_FIELD_NUMBER: _ClassVar[int]
    VOTER_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    raft_addr: str
    grpc_addr: str
    voter: bool
    def __init__(self, node_id: _Optional[str] = ..., raft_addr: _Optional[str] = ..., grpc_addr: _Optional[str] = ..., voter: _Optional[bool] = ...) -> None: ...

class RemoveMember(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class Noop(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ImportEntry(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...

class ImportBegin(_message.Message):
    __slots__ = ("import_id", "vault", "mode")
    IMPORT_ID_FIELD_NUMBER: _ClassVar[int]
    VAULT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    import_id: str
    vault: str
    mode: ImportMode
    def __init__(self, import_id: _Optional[str] = ..., vault: _Optional[str] = ..., mode: _Optional[_Union[ImportMode, str]] = ...) -> None: ...

class ImportChunk(_message.Message):
    __slots__ = ("import_id", "entries", "seq")
    IMPORT_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    import_id: str
    entries: _containers.RepeatedCompositeFieldContainer[ImportEntry]
    seq: int
    def __init__(self, import_id: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[ImportEntry, _Mapping]]] = ..., seq: _Optional[int] = ...) -> None: ...

class ImportCommit(_message.Message):
    __slots__ = ("import_id", "chunk_count")
    IMPORT_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    import_id: str
    chunk_count: int
    def __init__(self, import_id: _Optional[str] = ..., chunk_count: _Optional[int] = ...) -> None: ...

class Import(_message.Message):
    __slots__ = ("vault", "mode", "entries")
    VAULT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    vault: str
    mode: ImportMode
    entries: _containers.RepeatedCompositeFieldContainer[ImportEntry]
    def __init__(self, vault: _Optional[str] = ..., mode: _Optional[_Union[ImportMode, str]] = ..., entries: _Optional[_Iterable[_Union[ImportEntry, _Mapping]]] = ...) -> None: ...

class PolicyRule(_message.Message):
    __slots__ = ("vault_glob", "capabilities")
    VAULT_GLOB_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    vault_glob: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, vault_glob: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ...) -> None: ...

class PutPolicy(_message.Message):
    __slots__ = ("name", "rules")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    name: str
    rules: _containers.RepeatedCompositeFieldContainer[PolicyRule]
    def __init__(self, name: _Optional[str] = ..., rules: _Optional[_Iterable[_Union[PolicyRule, _Mapping]]] = ...) -> None: ...

class DeletePolicy(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CreateToken(_message.Message):
    __slots__ = ("token_id", "name", "policies", "secret_sha256", "ttl_seconds")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    SECRET_SHA256_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    name: str
    policies: _containers.RepeatedScalarFieldContainer[str]
    secret_sha256: str
    ttl_seconds: int
    def __init__(self, token_id: _Optional[str] = ..., name: _Optional[str] = ..., policies: _Optional[_Iterable[str]] = ..., secret_sha256: _Optional[str] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class RevokeToken(_message.Message):
    __slots__ = ("token_id",)
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    def __init__(self, token_id: _Optional[str] = ...) -> None: ...

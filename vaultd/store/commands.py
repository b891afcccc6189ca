"""Log commands and their explicit binary codec (protobuf, proto/vaultd/store/log.proto).

One Raft log entry is one `Batch`: the proposer's timestamp plus several `Envelope`s (group commit). Commands
are frozen dataclasses whose field names equal the proto field names, so the codec is table driven: a scalar
or string-list field maps 1:1, `None` means "unset" for proto3 optional fields, and the few nested shapes
(UpdateVault.tags, import entries, txn ops, import mode) are handled explicitly.

Decoding never trusts the payload: malformed bytes raise CodecError (apply_entry turns that into an Err), and
an envelope whose command kind this version does not know decodes to `Unknown` (rejected deterministically).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any, Union

from google.protobuf.message import DecodeError

from vaultd.store import log_pb2 as pb
from vaultd.store.errors import InvalidArgument


class ImportMode(str, enum.Enum):
    FAIL_IF_EXISTS = "fail_if_exists"
    OVERWRITE = "overwrite"
    SKIP_EXISTING = "skip_existing"


@dataclass(frozen=True)
class CreateVault:
    name: str
    description: str = ""
    owner: str = ""
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class UpdateVault:
    """None keeps the field's current value."""

    name: str
    description: str | None = None
    owner: str | None = None
    tags: tuple[str, ...] | None = None


@dataclass(frozen=True)
class DeleteVault:
    name: str


@dataclass(frozen=True)
class CopyVault:
    source: str
    destination: str


@dataclass(frozen=True)
class Put:
    """expected_version: None = unconditional, 0 = the key must not exist, n = the key's version must be n."""

    vault: str
    key: str
    value: bytes = field(repr=False)    # a secret: never in a repr, log line or error message
    expected_version: int | None = None


@dataclass(frozen=True)
class Delete:
    vault: str
    key: str
    expected_version: int | None = None


@dataclass(frozen=True)
class TxnPut:
    key: str
    value: bytes = field(repr=False)    # a secret: never in a repr, log line or error message
    expected_version: int | None = None


@dataclass(frozen=True)
class TxnDelete:
    key: str
    expected_version: int | None = None


TxnOp = Union[TxnPut, TxnDelete]


@dataclass(frozen=True)
class Txn:
    """Ops run in order (a later op sees earlier ones) in one vault; any failure rolls back all of them."""

    vault: str
    ops: tuple[TxnOp, ...]


@dataclass(frozen=True)
class SetLimits:
    """0 keeps a limit. only_if_unset: applied only if limits were never set through the log (bootstrap)."""

    max_vaults: int = 0
    max_keys_per_vault: int = 0
    max_value_size: int = 0
    max_scan_results: int = 0
    only_if_unset: bool = False


@dataclass(frozen=True)
class SetMember:
    node_id: str
    raft_addr: str
    grpc_addr: str
    voter: bool = True


@dataclass(frozen=True)
class RemoveMember:
    node_id: str


@dataclass(frozen=True)
class Noop:
    """Read barrier: changes nothing but the applied index."""


@dataclass(frozen=True)
class ImportEntry:
    key: str
    value: bytes = field(repr=False)    # a secret: never in a repr, log line or error message


@dataclass(frozen=True)
class ImportBegin:
    import_id: str
    vault: str
    mode: ImportMode


@dataclass(frozen=True)
class ImportChunk:
    """seq (0-based chunk position), when set, must equal the number of chunks staged so far."""

    import_id: str
    entries: tuple[ImportEntry, ...]
    seq: int | None = None


@dataclass(frozen=True)
class ImportCommit:
    """chunk_count, when set, must equal the number of chunks staged: a lost chunk never commits."""

    import_id: str
    chunk_count: int | None = None


@dataclass(frozen=True)
class Import:
    """A whole small import in one entry (begin + chunk + commit)."""

    vault: str
    mode: ImportMode
    entries: tuple[ImportEntry, ...]


@dataclass(frozen=True)
class Unknown:
    """An envelope whose command kind this version cannot read; apply rejects it."""


Command = Union[CreateVault, UpdateVault, DeleteVault, CopyVault, Put, Delete, Txn, SetLimits, SetMember,
                RemoveMember, Noop, ImportBegin, ImportChunk, ImportCommit, Import, Unknown]


@dataclass(frozen=True)
class Envelope:
    request_id: str
    command: Command


@dataclass(frozen=True)
class Batch:
    timestamp_ns: int
    commands: tuple[Envelope, ...]


class CodecError(InvalidArgument):
    """An undecodable log payload."""

    def __init__(self, why: str) -> None:
        super().__init__("log_entry", why)


_KIND: dict[type, str] = {
    CreateVault: "create_vault", UpdateVault: "update_vault", DeleteVault: "delete_vault",
    CopyVault: "copy_vault", Put: "put", Delete: "delete", Txn: "txn", SetLimits: "set_limits",
    SetMember: "set_member", RemoveMember: "remove_member", Noop: "noop", ImportBegin: "import_begin",
    ImportChunk: "import_chunk", ImportCommit: "import_commit", Import: "import",
}
_CLASS_BY_KIND = {kind: cls for cls, kind in _KIND.items()}
_FIELDS: dict[type, tuple[str, ...]] = {cls: tuple(f.name for f in fields(cls)) for cls in _KIND}
_MODE_TO_PB = {ImportMode.FAIL_IF_EXISTS: pb.IMPORT_MODE_FAIL_IF_EXISTS, ImportMode.OVERWRITE: pb.IMPORT_MODE_OVERWRITE,
               ImportMode.SKIP_EXISTING: pb.IMPORT_MODE_SKIP_EXISTING}
_MODE_FROM_PB = {v: k for k, v in _MODE_TO_PB.items()}


def _put_field(msg: Any, name: str, value: Any) -> None:
    if value is None:
        return
    if name == "mode":
        msg.mode = _MODE_TO_PB[ImportMode(value)]
    elif name == "entries":
        msg.entries.extend(pb.ImportEntry(key=e.key, value=e.value) for e in value)
    elif name == "ops":
        for op in value:
            msg.ops.add(is_delete=isinstance(op, TxnDelete), key=op.key, value=getattr(op, "value", b""),
                        expected_version=op.expected_version)
    elif name == "tags" and msg.DESCRIPTOR.name == "UpdateVault":
        msg.tags.SetInParent()
        msg.tags.tags.extend(value)
    elif name == "tags":
        msg.tags.extend(value)
    else:
        setattr(msg, name, value)


def _get_field(msg: Any, name: str) -> Any:
    fd = msg.DESCRIPTOR.fields_by_name[name]
    if fd.has_presence and not msg.HasField(name):
        return None
    if name == "mode":
        return _MODE_FROM_PB.get(msg.mode, ImportMode.FAIL_IF_EXISTS)
    if name == "entries":
        return tuple(ImportEntry(e.key, e.value) for e in msg.entries)
    if name == "ops":
        return tuple(TxnDelete(op.key, _opt(op, "expected_version")) if op.is_delete
                     else TxnPut(op.key, op.value, _opt(op, "expected_version")) for op in msg.ops)
    if name == "tags":
        return tuple(msg.tags.tags if msg.DESCRIPTOR.name == "UpdateVault" else msg.tags)
    return getattr(msg, name)


def _opt(msg: Any, name: str) -> Any:
    return getattr(msg, name) if msg.HasField(name) else None


def _command_to_pb(cmd: Command) -> pb.Command:
    out = pb.Command()
    kind = _KIND.get(type(cmd))
    if kind is None:
        raise TypeError(f"cannot encode command type {type(cmd).__name__}")
    sub = getattr(out, kind)
    sub.SetInParent()
    for name in _FIELDS[type(cmd)]:
        _put_field(sub, name, getattr(cmd, name))
    return out


def _command_from_pb(msg: pb.Command) -> Command:
    kind = msg.WhichOneof("kind")
    cls = _CLASS_BY_KIND.get(kind or "")
    if cls is None:
        return Unknown()
    sub = getattr(msg, kind)
    return cls(**{name: _get_field(sub, name) for name in _FIELDS[cls]})


def encode_batch(batch: Batch) -> bytes:
    msg = pb.Batch(timestamp_ns=batch.timestamp_ns)
    for env in batch.commands:
        msg.commands.add(request_id=env.request_id, command=_command_to_pb(env.command))
    return msg.SerializeToString(deterministic=True)


def decode_batch(data: bytes) -> Batch:
    """Raises CodecError for anything that is not a well-formed Batch."""
    msg = pb.Batch()
    try:
        msg.ParseFromString(bytes(data))
    except (DecodeError, ValueError, TypeError) as exc:
        raise CodecError(f"undecodable payload ({type(exc).__name__})") from None
    return Batch(msg.timestamp_ns, tuple(Envelope(e.request_id, _command_from_pb(e.command)) for e in msg.commands))


"""Building requests and reading responses: transaction ops, enum and consistency names, request ids, and
protobuf messages as JSON-able dicts."""

from __future__ import annotations

import uuid
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from vaultd.v1 import vault_pb2

def txn_put(key: str, value: bytes | str, expected_version: int | None = None) -> vault_pb2.TxnOp:
    op = vault_pb2.TxnPut(key=key, value=as_bytes(value))
    if expected_version is not None:
        op.expected_version = expected_version
    return vault_pb2.TxnOp(put=op)


def txn_delete(key: str, expected_version: int | None = None) -> vault_pb2.TxnOp:
    op = vault_pb2.TxnDelete(key=key)
    if expected_version is not None:
        op.expected_version = expected_version
    return vault_pb2.TxnOp(delete=op)


def message_to_dict(message: Message) -> dict[str, Any]:
    """Protobuf message -> JSON-able dict: proto field names, bytes as base64, timestamps RFC 3339, and
    64-bit integers as numbers (the proto3 JSON mapping writes them as strings, which scripts trip over)."""
    data = json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)
    _int64_as_numbers(message.DESCRIPTOR, data)
    return data


_INT64_TYPES = frozenset({FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
                          FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64})


def _int64_as_numbers(descriptor: Any, data: dict[str, Any]) -> None:
    if descriptor.full_name.startswith("google.protobuf."):  # well-known types have their own JSON form
        return
    for field in descriptor.fields:
        if field.name not in data:
            continue
        repeated = field.is_repeated
        values = data[field.name] if repeated else [data[field.name]]
        if field.type in _INT64_TYPES:
            converted = [int(v) for v in values]
            data[field.name] = converted if repeated else converted[0]
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            for v in values:
                if isinstance(v, dict):
                    _int64_as_numbers(field.message_type, v)


def as_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def consistency_value(value: str | int | None) -> int:
    if value is None or value == "":
        return vault_pb2.CONSISTENCY_UNSPECIFIED
    if isinstance(value, int):
        return value
    return vault_pb2.Consistency.Value("CONSISTENCY_" + value.upper())


def enum_value(enum: Any, prefix: str, value: str | int) -> int:
    if isinstance(value, int):
        return value
    return enum.Value(prefix + value.upper().replace("-", "_"))


def new_request_id() -> str:
    return str(uuid.uuid4())

"""Request bytes that are not a valid message (a string field with invalid UTF-8, a truncated buffer) are bad
input like any other: INVALID_ARGUMENT with an ErrorInfo, counted as such, nothing logged as a server error,
and the server keeps serving. Raw bytes over real gRPC to a real node (tests/api/conftest.py)."""

from __future__ import annotations

import io
import logging

import apsw
import grpc
import pytest
from prometheus_client import REGISTRY

from vaultd import client as vc
from vaultd.v1 import vault_pb2, vault_pb2_grpc

pytestmark = pytest.mark.timeout(60)

# GetRequest{vault: "v", key: <0xff 0xfe>}: field 2 is a proto3 string, which must be valid UTF-8.
INVALID_UTF8_GET = b"\x0a\x01v" + b"\x12\x02\xff\xfe"
# ImportChunk{data: <length 100, 3 bytes follow>}: truncated.
TRUNCATED_CHUNK = b"\x12\x64abc"


def _handled(method: str, grpc_type: str, code: str) -> float:
    return REGISTRY.get_sample_value("grpc_server_handled_total", {
        "grpc_type": grpc_type, "grpc_service": "vaultd.v1.VaultService", "grpc_method": method,
        "grpc_code": code}) or 0.0


def test_undecodable_requests_are_invalid_argument(single_node, caplog) -> None:
    addr, _ = single_node
    header = vault_pb2.ImportChunk(header=vault_pb2.ImportHeader(vault="raw")).SerializeToString()
    before = _handled("Get", "unary", "INVALID_ARGUMENT")
    with caplog.at_level(logging.ERROR), grpc.insecure_channel(addr) as channel, \
            vc.VaultClient([addr], timeout=5.0) as client:
        calls = [lambda: channel.unary_unary("/vaultd.v1.VaultService/Get")(INVALID_UTF8_GET, timeout=5),
                 lambda: channel.stream_unary("/vaultd.v1.VaultService/ImportVault")(
                     iter([header, TRUNCATED_CHUNK]), timeout=5)]
        for call in calls:
            with pytest.raises(grpc.RpcError) as info:
                call()
            error = vc.error_from_rpc(info.value)
            assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
            assert error.metadata == {"field": "request"}
        assert client.put("raw", "k", b"v").version == 1      # still serving
        with pytest.raises(vc.NotFound):
            client.get_vault("raw-never")
    assert _handled("Get", "unary", "INVALID_ARGUMENT") - before == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


def test_an_import_shorter_than_its_announced_size_is_refused(single_node) -> None:
    """The header's size is checked against what arrived: a short stream is MALFORMED_IMPORT and nothing is
    imported; the Python client announces the size of bytes and of seekable files, and they import."""
    addr, _ = single_node
    with grpc.insecure_channel(addr) as channel, vc.VaultClient([addr], timeout=5.0) as client:
        chunks = [vault_pb2.ImportChunk(header=vault_pb2.ImportHeader(
                      vault="short", format=vault_pb2.IMPORT_FORMAT_DOTENV, size=100)),
                  vault_pb2.ImportChunk(data=b"A=1\n")]
        with pytest.raises(grpc.RpcError) as info:
            vault_pb2_grpc.VaultServiceStub(channel).ImportVault(iter(chunks), timeout=5)
        error = vc.error_from_rpc(info.value)
        assert (error.reason, error.metadata) == ("MALFORMED_IMPORT",
                                                  {"field": "size", "expected": "100", "received": "4"})
        with pytest.raises(vc.NotFound):
            client.get_vault("short")
        assert client.import_vault("short", b"A=1\nB=2\n", format="dotenv").imported == 2
        with io.BytesIO(b"skipped;C=3\nD=4\n") as f:
            f.seek(len(b"skipped;"))  # from the current position on
            assert client.import_vault("short", f, format="dotenv").imported == 2
        assert client.get_vault("short").key_count == 4


def test_a_write_without_request_id_gets_a_server_generated_one(single_node) -> None:
    """Raw gRPC callers may omit request_id; the server still records the write under an id of its own, so a
    re-delivered log entry is answered with the recorded result (never ALREADY_APPLIED for an applied write)."""
    addr, node = single_node
    with grpc.insecure_channel(addr) as channel:
        stub = vault_pb2_grpc.VaultServiceStub(channel)
        response = stub.Put(vault_pb2.PutRequest(vault="raw", key="k", value=b"v"), timeout=10)
    db = apsw.Connection(node.machine.path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = list(db.execute("SELECT request_id FROM requests WHERE log_index = ?", (response.revision,)))
    finally:
        db.close()
    assert len(rows) == 1 and rows[0][0].startswith("srv-")

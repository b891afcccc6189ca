"""Export and import streams are bounded, on an in-process server over a real single-node cluster: at most
max_concurrent_streams at once (one more gets RESOURCE_EXHAUSTED / TOO_MANY_STREAMS at once), each ended
after stream_max_seconds with DEADLINE_EXCEEDED even when its client stalls (the worker is released), and an
import never holds more than 64 MiB of upload."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import grpc
import pytest
from prometheus_client import REGISTRY

from tests.api.conftest import in_process_node
from vaultd import client as vc
from vaultd import config
from vaultd.api.targets import keys_of, vaults_of
from vaultd.api.vault_service import MAX_IMPORT_BYTES
from vaultd.observability.audit import AuditLog
from vaultd.observability.rpc_metrics import RpcMetrics
from vaultd.v1 import vault_pb2, vault_pb2_grpc

pytestmark = pytest.mark.timeout(90)

MAX_STREAMS = 2
STREAM_SECONDS = 8.0   # long enough that the checks made while streams are held finish first on a busy CI
BIG_VAULT = "big"


class Served(NamedTuple):
    addr: str
    audit_path: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Four workers, two streams, eight seconds; a vault whose export (~40 MiB) is far more than the
    flow-control windows and socket buffers between server and client hold, so a client that stops
    reading really stalls the server's send. With an audit log, to see what it records of cut streams."""
    tmp: Path = tmp_path_factory.mktemp("streams")
    audit = AuditLog(str(tmp / "audit.log"), "n1", vaults_of, keys_of)
    try:
        with in_process_node(tmp, [RpcMetrics(), audit], grpc_workers=4, max_concurrent_streams=MAX_STREAMS,
                             stream_max_seconds=STREAM_SECONDS) as (cfg, _):
            with vc.VaultClient([cfg.grpc_addr], timeout=20.0) as client:
                for i in range(30):
                    client.put(BIG_VAULT, f"k{i:02d}", bytes([i]) * (1 << 20))
            yield Served(cfg.grpc_addr, tmp / "audit.log")
    finally:
        audit.close()


def _audited(served: Served, method: str) -> list[tuple[str, str]]:
    """(code, reason) of the node's audit lines for `method`, in order."""
    lines = [json.loads(line) for line in served.audit_path.read_text().splitlines()]
    return [(line["code"], line["reason"]) for line in lines if line["method"] == f"vaultd.v1.VaultService/{method}"]


def _handled(method: str, code: str) -> float:
    kind = "server_stream" if method == "ExportVault" else "client_stream"
    return REGISTRY.get_sample_value("grpc_server_handled_total", {
        "grpc_type": kind, "grpc_service": "vaultd.v1.VaultService", "grpc_method": method,
        "grpc_code": code}) or 0.0


def _wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _stalled_export(addr: str) -> tuple[grpc.Channel, Iterator[vault_pb2.ExportChunk]]:
    """An export whose client reads one chunk and then nothing (its own channel: its own window)."""
    channel = grpc.insecure_channel(addr, options=[("grpc.max_receive_message_length", 64 << 20)])
    stream = vault_pb2_grpc.VaultServiceStub(channel).ExportVault(vault_pb2.ExportVaultRequest(name=BIG_VAULT))
    next(stream)
    return channel, stream


def test_stalled_exports_beyond_the_limit_are_refused_and_ended_after_the_time_limit(served: Served) -> None:
    expired = _handled("ExportVault", "DEADLINE_EXCEEDED")
    started = time.monotonic()
    stalled = [_stalled_export(served.addr) for _ in range(MAX_STREAMS)]
    try:
        with vc.VaultClient([served.addr], timeout=5.0) as client:
            with pytest.raises(vc.LimitExceeded) as info:
                list(client.export_vault(BIG_VAULT))
            assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert info.value.reason == "TOO_MANY_STREAMS"
            assert info.value.metadata == {"max": str(MAX_STREAMS)}
            with pytest.raises(vc.LimitExceeded) as info:
                client.import_vault("other", b"A=1\n", format="dotenv")
            assert info.value.reason == "TOO_MANY_STREAMS"
            # The stalled streams hold no more than their slots: other RPCs are served meanwhile.
            assert client.put("other", "k", b"v").version == 1
            assert client.get(BIG_VAULT, "k00").value == bytes(1 << 20)
            assert time.monotonic() - started < STREAM_SECONDS, "the checks above ran after the time limit"

            # The time limit ends both stalled streams although their clients never read again.
            assert _wait_for(lambda: _handled("ExportVault", "DEADLINE_EXCEEDED") >= expired + MAX_STREAMS,
                             STREAM_SECONDS + 10)
            assert time.monotonic() - started >= STREAM_SECONDS - 0.5
            for _, stream in stalled:
                with pytest.raises(grpc.RpcError) as err:
                    for _chunk in stream:  # what the client had buffered, then the status
                        pass
                assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                assert "stream_max_seconds" in (err.value.details() or "")
            # The slots are free again: a reader that keeps up gets the whole export.
            assert len(b"".join(client.export_vault(BIG_VAULT))) > 30 << 20
        assert _audited(served, "ExportVault")[-4:] == [("RESOURCE_EXHAUSTED", "TOO_MANY_STREAMS"),
                                                ("DEADLINE_EXCEEDED", ""), ("DEADLINE_EXCEEDED", ""), ("OK", "")]
    finally:
        for channel, _ in stalled:
            channel.close()


def test_a_stalled_import_is_ended_after_the_time_limit_and_imports_nothing(served: Served) -> None:
    release = threading.Event()

    def requests() -> Iterator[vault_pb2.ImportChunk]:
        yield vault_pb2.ImportChunk(header=vault_pb2.ImportHeader(
            vault="stalled-import", format=vault_pb2.IMPORT_FORMAT_DOTENV, size=8))
        yield vault_pb2.ImportChunk(data=b"A=1\n")
        release.wait(STREAM_SECONDS + 20)  # the other half never comes in time

    expired = _handled("ImportVault", "DEADLINE_EXCEEDED")
    with grpc.insecure_channel(served.addr) as channel:
        started = time.monotonic()
        future = vault_pb2_grpc.VaultServiceStub(channel).ImportVault.future(requests())
        try:
            with pytest.raises(grpc.RpcError) as err:
                future.result(timeout=STREAM_SECONDS + 10)
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - started >= STREAM_SECONDS - 0.5   # not before the limit
        finally:
            release.set()
    assert _wait_for(lambda: _handled("ImportVault", "DEADLINE_EXCEEDED") == expired + 1, 5), [
        (c.name, _handled("ImportVault", c.name)) for c in grpc.StatusCode]
    assert _audited(served, "ImportVault")[-1] == ("DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED")
    with vc.VaultClient([served.addr], timeout=5.0) as client, pytest.raises(vc.NotFound):
        client.get_vault("stalled-import")


def test_an_import_announced_over_the_bound_is_refused_before_any_data(served: Served) -> None:
    release = threading.Event()
    sent = [0]

    def requests() -> Iterator[vault_pb2.ImportChunk]:
        yield vault_pb2.ImportChunk(header=vault_pb2.ImportHeader(
            vault="too-big", format=vault_pb2.IMPORT_FORMAT_DOTENV, size=MAX_IMPORT_BYTES + 1))
        release.wait(20)
        sent[0] += 1
        yield vault_pb2.ImportChunk(data=b"A=1\n")

    with grpc.insecure_channel(served.addr) as channel:
        try:
            with pytest.raises(grpc.RpcError) as err:
                vault_pb2_grpc.VaultServiceStub(channel).ImportVault(requests(), timeout=10)
        finally:
            release.set()
    failure = vc.error_from_rpc(err.value)
    assert (failure.code, failure.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "REQUEST_TOO_LARGE")
    assert failure.metadata == {"max": str(MAX_IMPORT_BYTES)} and sent[0] == 0


def test_an_import_stream_over_the_bound_is_not_read_to_its_end(served: Served) -> None:
    """A stream of unknown size (a pipe) that goes on past 64 MiB: the node answers REQUEST_TOO_LARGE as soon
    as the bound would be passed, so it holds at most 64 MiB of it and the client stops sending."""
    piece = b"# " + b"x" * ((1 << 20) - 3) + b"\n"
    total = 200  # MiB the client would send
    sent = [0]

    def requests() -> Iterator[vault_pb2.ImportChunk]:
        yield vault_pb2.ImportChunk(header=vault_pb2.ImportHeader(vault="endless",
                                                                  format=vault_pb2.IMPORT_FORMAT_DOTENV))
        for _ in range(total):
            sent[0] += 1
            yield vault_pb2.ImportChunk(data=piece)

    with grpc.insecure_channel(served.addr) as channel:
        with pytest.raises(grpc.RpcError) as err:
            vault_pb2_grpc.VaultServiceStub(channel).ImportVault(requests(), timeout=30)
    failure = vc.error_from_rpc(err.value)
    assert (failure.code, failure.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "REQUEST_TOO_LARGE")
    assert MAX_IMPORT_BYTES // len(piece) <= sent[0] < total // 2, sent[0]


@pytest.mark.parametrize("flags", [["--max-concurrent-streams", "0"], ["--stream-max-seconds", "0"],
                                   ["--stream-max-seconds", "-1"]])
def test_stream_limits_must_allow_a_stream(flags: list[str]) -> None:
    """No stream at all, or a limit that ends each at once, is a configuration error, not a node that refuses
    every export."""
    base = ["--node-id", "n1", "--data-dir", "/d", "--raft-addr", "127.0.0.1:1", "--grpc-addr", "127.0.0.1:2"]
    config.load(base, env={}).validate()
    with pytest.raises(config.ConfigError, match="max_concurrent_streams must be at least 1"):
        config.load(base + flags, env={}).validate()


def _no_header(release: threading.Event) -> Iterator[vault_pb2.ImportChunk]:
    release.wait(30)   # never sends the header while the test runs
    return
    yield  # a generator


def test_imports_hold_no_stream_slot_until_their_header_arrives(served: Served) -> None:
    """The `import` capability is checked when the header arrives, so streams without one (any token could
    open them) must not hold the node's export/import slots; they end after the header limit."""
    expired = _handled("ImportVault", "DEADLINE_EXCEEDED")
    release = threading.Event()
    channel = grpc.insecure_channel(served.addr)
    try:
        stub = vault_pb2_grpc.VaultServiceStub(channel)
        waiting = [stub.ImportVault.future(_no_header(release), timeout=30) for _ in range(MAX_STREAMS)]
        with vc.VaultClient([served.addr], timeout=5.0) as client:
            assert client.import_vault("after-headerless", b"A=1\n", format="dotenv").imported == 1
        for future in waiting:
            with pytest.raises(grpc.RpcError) as err:
                future.result(timeout=STREAM_SECONDS + 10)
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert _wait_for(lambda: _handled("ImportVault", "DEADLINE_EXCEEDED") >= expired + MAX_STREAMS, 10)
    finally:
        release.set()
        channel.close()

"""Server limits, on an in-process server over a real single-node cluster (tests/api/conftest.py): RPCs
beyond maximum_concurrent_rpcs are refused with RESOURCE_EXHAUSTED at once instead of queueing without bound;
scan pages fit in one response; a request stream cut by the client is not an internal error."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import grpc
import pytest
from prometheus_client import REGISTRY

from vaultd import client as vc
from vaultd.v1 import vault_pb2, vault_pb2_grpc

pytestmark = pytest.mark.timeout(60)


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _import_started() -> float:
    return REGISTRY.get_sample_value("grpc_server_started_total", {
        "grpc_type": "client_stream", "grpc_service": "vaultd.v1.VaultService", "grpc_method": "ImportVault"}) or 0.0


def _imports_handled() -> float:
    return sum(_import_handled(code.name) for code in grpc.StatusCode)


def _held_import(release: threading.Event, vault: str) -> Iterator[vault_pb2.ImportChunk]:
    yield vault_pb2.ImportChunk(header=vault_pb2.ImportHeader(vault=vault, format=vault_pb2.IMPORT_FORMAT_FLAT_JSON))
    release.wait(20)  # the handler sits in its request loop: one RPC in flight
    yield vault_pb2.ImportChunk(data=b'{"k": "v"}')


def test_rpcs_beyond_the_concurrency_bound_get_resource_exhausted(single_node) -> None:
    addr, _ = single_node
    release = threading.Event()
    with grpc.insecure_channel(addr) as channel, vc.VaultClient([addr], timeout=5.0) as client:
        stub = vault_pb2_grpc.VaultServiceStub(channel)
        started = _import_started()
        held = [stub.ImportVault.future(_held_import(release, f"held{i}"), timeout=30) for i in range(2)]
        try:
            _wait_for(lambda: _import_started() >= started + 2, 20, "both imports to be in flight")
            with pytest.raises(vc.LimitExceeded) as info:
                client.put("other", "k", b"v")
            assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert info.value.reason == "OVERLOADED"
        finally:
            release.set()
        assert [f.result(timeout=20).imported for f in held] == [1, 1]
        assert client.put("other", "k", b"v").version == 1    # capacity is back


def test_a_vault_of_large_values_can_be_scanned(single_node) -> None:
    """max_scan_results (1000) values of up to 1 MiB would be one response far over the 64 MiB send limit: a
    value-bearing page is capped so that it always fits, and iterating the pages returns every entry."""
    addr, _ = single_node
    count = 66  # 66 MiB of values: more than one response can carry
    with vc.VaultClient([addr], timeout=20.0) as client:
        for i in range(count):
            client.put("large", f"k{i:03d}", bytes([i]) * (1 << 20))
        page = client.scan("large")
        assert 0 < len(page.entries) < count and page.next_page_token
        entries = list(client.iter_scan("large"))
        assert [e.key for e in entries] == [f"k{i:03d}" for i in range(count)]
        assert all(e.value == bytes([i]) * (1 << 20) for i, e in enumerate(entries))
        assert len(client.scan("large", keys_only=True).entries) == count  # keys-only pages are not capped


def _import_handled(code: str) -> float:
    return REGISTRY.get_sample_value("grpc_server_handled_total", {
        "grpc_type": "client_stream", "grpc_service": "vaultd.v1.VaultService", "grpc_method": "ImportVault",
        "grpc_code": code}) or 0.0


def _cut_import(release: threading.Event, vault: str, size: int) -> Iterator[vault_pb2.ImportChunk]:
    """A dotenv upload whose first half arrives, then stalls (the rest would follow after the deadline)."""
    yield vault_pb2.ImportChunk(header=vault_pb2.ImportHeader(
        vault=vault, format=vault_pb2.IMPORT_FORMAT_DOTENV, request_id=f"cut-{vault}", size=size))
    yield vault_pb2.ImportChunk(data=b"A=1\nB=2\n")
    release.wait(20)
    yield vault_pb2.ImportChunk(data=b"C=3\n")


def test_an_import_cut_by_the_client_deadline_applies_nothing(single_node, caplog) -> None:
    """When the client's deadline passes mid-upload, grpcio may end the server's request stream like a clean
    end of stream (a race with noticing the cancel): the first half must not be imported as a whole file. The
    header's size says how much is coming. Nor is the cut a server bug: no ERROR line, no INTERNAL count."""
    addr, _ = single_node
    internal = _import_handled("INTERNAL")
    with caplog.at_level(logging.ERROR, logger="vaultd"), grpc.insecure_channel(addr) as channel, \
            vc.VaultClient([addr], timeout=5.0) as client:
        stub = vault_pb2_grpc.VaultServiceStub(channel)
        handled = _imports_handled()
        for attempt in range(20):  # the race goes either way: try it several times
            release = threading.Event()
            try:
                with pytest.raises(grpc.RpcError) as info:
                    stub.ImportVault(_cut_import(release, f"cut{attempt}", size=12), timeout=0.3)
            finally:
                release.set()
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        _wait_for(lambda: _imports_handled() >= handled + 20, 20, "the handlers of the cut calls to finish")
        for attempt in range(20):
            with pytest.raises(vc.NotFound):
                client.get_vault(f"cut{attempt}")
    assert _import_handled("INTERNAL") == internal
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


def test_scan_pages_fit_in_one_response_at_every_limit() -> None:
    """The page size asked of the store, at the extreme replicated limits (max_scan_results up to 100,000,
    max_value_size up to 64 MiB): a page of maximal entries always fits in the send limit."""
    from vaultd.api.base import MAX_SEND_BYTES
    from vaultd.api.vault_service import _scan_page_size
    from vaultd.store.validation import MAX_KEY_BYTES

    for max_value in (1024, 1 << 20, 64 << 20):
        for keys_only in (False, True):
            for requested in (0, 100_000):
                size = _scan_page_size(requested, keys_only, max_value)
                largest_entry = MAX_KEY_BYTES + (0 if keys_only else max_value) + 128
                assert 1 <= size and (size == 1 or size * largest_entry <= MAX_SEND_BYTES), (max_value, keys_only)
    assert _scan_page_size(-1, False, 1 << 20) == -1  # left for the store to reject
    assert _scan_page_size(10, True, 1 << 20) == 10

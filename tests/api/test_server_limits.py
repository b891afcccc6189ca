"""The server's concurrency bound, on an in-process server over a real single-node cluster (real StateMachine,
real ReplicatedNode, real gRPC): RPCs beyond maximum_concurrent_rpcs are refused with RESOURCE_EXHAUSTED at
once instead of queueing without bound, and the server recovers when the in-flight ones finish."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.cluster import free_port
from vaultd import client as vc
from vaultd.api.server import build_server
from vaultd.config import NodeConfig
from vaultd.replication import ReplicatedNode
from vaultd.store.machine import StateMachine
from vaultd.v1 import vault_pb2, vault_pb2_grpc

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def single_node(tmp_path: Path) -> Iterator[tuple[str, object]]:
    cfg = NodeConfig(node_id="n1", data_dir=str(tmp_path), raft_addr=f"127.0.0.1:{free_port()}",
                     grpc_addr=f"127.0.0.1:{free_port()}", cluster_secret="test-secret", unsafe_no_fsync=True,
                     grpc_max_concurrent_rpcs=2)
    machine = StateMachine(cfg.db_path)
    node = ReplicatedNode(cfg, machine)
    node.start()
    server = build_server(node=node, machine=machine, stats=None, cfg=cfg)
    server.start()
    try:
        deadline = time.monotonic() + 20
        while not node.is_ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert node.is_ready()
        yield cfg.grpc_addr, node
    finally:
        server.stop(1)
        node.stop()
        machine.close()


def _held_import(release: threading.Event, vault: str) -> Iterator[vault_pb2.ImportChunk]:
    yield vault_pb2.ImportChunk(header=vault_pb2.ImportHeader(vault=vault, format=vault_pb2.IMPORT_FORMAT_FLAT_JSON))
    release.wait(20)  # the handler sits in its request loop: one RPC in flight
    yield vault_pb2.ImportChunk(data=b'{"k": "v"}')


def test_rpcs_beyond_the_concurrency_bound_get_resource_exhausted(single_node) -> None:
    addr, _ = single_node
    release = threading.Event()
    with grpc.insecure_channel(addr) as channel, vc.VaultClient([addr], timeout=5.0) as client:
        stub = vault_pb2_grpc.VaultServiceStub(channel)
        held = [stub.ImportVault.future(_held_import(release, f"held{i}"), timeout=30) for i in range(2)]
        try:
            time.sleep(0.5)
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

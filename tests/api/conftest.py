"""`single_node`: an in-process vaultd API server (build_server, with RpcMetrics) over a real
single-node cluster (real StateMachine, real ReplicatedNode, real gRPC on loopback), ready, for one test.
It allows 2 concurrent RPCs, so tests can reach the concurrency bound cheaply. Plaintext and without
authentication, asked for by name as serve requires (TLS and tokens are tested through real node processes:
tests/api/test_tls.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import free_port
from vaultd.api.server import build_server
from vaultd.config import NodeConfig
from vaultd.observability.rpc_metrics import RpcMetrics
from vaultd.replication import ReplicatedNode
from vaultd.store.machine import StateMachine


@pytest.fixture
def single_node(tmp_path: Path) -> Iterator[tuple[str, object]]:
    cfg = NodeConfig(node_id="n1", data_dir=str(tmp_path), raft_addr=f"127.0.0.1:{free_port()}",
                     grpc_addr=f"127.0.0.1:{free_port()}", cluster_secret="test-secret", unsafe_no_fsync=True,
                     grpc_max_concurrent_rpcs=2, insecure_plaintext=True, insecure_no_auth=True)
    machine = StateMachine(cfg.db_path)
    node = ReplicatedNode(cfg, machine)
    node.start()
    server = build_server(node=node, machine=machine, stats=None, cfg=cfg, wrappers=[RpcMetrics()])
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

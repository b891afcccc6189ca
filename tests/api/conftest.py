"""`single_node`: an in-process vaultd API server (build_server, with RpcMetrics) over a real
single-node cluster (real StateMachine, real ReplicatedNode, real gRPC on loopback), ready, for one test.
It allows 2 concurrent RPCs, so tests can reach the concurrency bound cheaply. Plaintext and without
authentication, asked for by name as serve requires (TLS and tokens are tested through real node processes:
tests/api/test_tls.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import free_port
from vaultd.api.server import build_server
from vaultd.config import NodeConfig
from vaultd.observability.rpc_metrics import RpcMetrics
from vaultd.replication import ReplicatedNode
from vaultd.store.machine import StateMachine


@contextmanager
def in_process_node(data_dir: Path, wrappers: Sequence[Any] = (), **settings: Any) -> Iterator[tuple[NodeConfig, Any]]:
    """A real single-node cluster (StateMachine, ReplicatedNode) behind an in-process API server on free
    loopback ports, ready; plaintext and without auth unless `settings` say otherwise. Stops what it started."""
    base: dict[str, Any] = {"insecure_plaintext": True, "insecure_no_auth": True}
    cfg = NodeConfig(node_id="n1", data_dir=str(data_dir), raft_addr=f"127.0.0.1:{free_port()}",
                     grpc_addr=f"127.0.0.1:{free_port()}", cluster_secret="s" * 32, unsafe_no_fsync=True,
                     **{**base, **settings})
    machine = StateMachine(cfg.db_path)
    node = ReplicatedNode(cfg, machine)
    node.start()
    server = build_server(node=node, machine=machine, stats=None, cfg=cfg, wrappers=list(wrappers))
    server.start()
    try:
        deadline = time.monotonic() + 20
        while not node.is_ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert node.is_ready()
        yield cfg, node
    finally:
        server.stop(1)
        node.stop()
        machine.close()


@pytest.fixture
def single_node(tmp_path: Path) -> Iterator[tuple[str, object]]:
    with in_process_node(tmp_path, [RpcMetrics()], grpc_max_concurrent_rpcs=2) as (cfg, node):
        yield cfg.grpc_addr, node

"""serve._start_node in-process: a failed start releases what it opened before the error is reported."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.cluster import free_port
from vaultd import serve
from vaultd.config import NodeConfig


def _stats_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "vaultd-access-stats" and t.is_alive())


def test_failed_node_construction_closes_the_store_and_statistics(tmp_path: Path) -> None:
    cfg = NodeConfig(node_id="n1", data_dir=str(tmp_path / "n1"), raft_addr=f"127.0.0.1:{free_port()}",
                     grpc_addr=f"127.0.0.1:{free_port()}", cluster_secret="test-secret")
    raft_dir = Path(cfg.raft_dir)
    raft_dir.mkdir(parents=True)
    (raft_dir / "journal").write_bytes(b"this is not a vaultd journal")   # ReplicatedNode() refuses it
    before = _stats_threads()
    with pytest.raises(RuntimeError, match="not a vaultd journal"):
        serve._start_node(cfg)
    assert _stats_threads() == before

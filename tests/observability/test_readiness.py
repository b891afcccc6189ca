"""/readyz, the vaultd_ready gauge and gRPC health agree on a real cluster, ready and after losing quorum."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

import pytest

from tests.cluster import Cluster, NodeProc
from vaultd.client import VaultClient, VaultError

pytestmark = pytest.mark.timeout(120)
GRPC_CORE_LINE = re.compile(r"^[DIWE]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\] ")


class Views:
    """Reads a node's four readiness views; one health client per node for the test's duration."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.clients: dict[str, VaultClient] = {}

    def of(self, node: NodeProc) -> tuple[int, float | None, float | None, str]:
        """(/readyz status, vaultd_ready, vaultd_raft_has_leader, gRPC health), read back to back."""
        if node.node_id not in self.clients:
            self.clients[node.node_id] = self.cluster.client([node], timeout=2.0)  # closed by the cluster
        try:
            health = self.clients[node.node_id].health(node.grpc_addr)
        except VaultError as err:  # a restarting node's port is not open yet
            health = err.reason
        return (node.http_get("/readyz")[0], self.cluster.metric(node, "vaultd_ready"),
                self.cluster.metric(node, "vaultd_raft_has_leader"), health)

    def wait(self, node: NodeProc, want: tuple, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.of(node)
            if seen == want:
                return
            time.sleep(0.2)
        raise AssertionError(f"{node.node_id}: wanted {want}, last saw {seen}")


def test_ready_views_agree_with_and_without_quorum(cluster_factory: Callable[..., Cluster]) -> None:
    cluster = cluster_factory(3, fsync=False, extra_args=["--log-format", "json"])
    views = Views(cluster)
    ready = (200, 1.0, 1.0, "SERVING")
    for node in cluster.nodes:
        views.wait(node, ready)
        status, body = node.http_get("/readyz?verbose")
        assert status == 200 and "[+]has_leader ok" in body and "[+]caught_up ok" in body, body
        assert node.http_get("/healthz") == (200, "ok\n")

    leader = cluster.wait_leader()
    survivor = next(n for n in cluster.nodes if n is not leader)
    for node in cluster.nodes:
        if node is not survivor:
            cluster.kill(node)
    # Alone, the survivor loses its leader: not ready everywhere it is asked, but alive.
    views.wait(survivor, (503, 0.0, 0.0, "NOT_SERVING"))
    status, body = survivor.http_get("/readyz?verbose")
    assert status == 503 and "[-]has_leader failed" in body and body.endswith("readyz check failed\n"), body
    assert survivor.http_get("/healthz") == (200, "ok\n")

    for node in cluster.nodes:
        if node is not survivor:
            cluster.restart(node, wait=False)
    for node in cluster.nodes:
        views.wait(node, ready, timeout=30.0)

    # --log-format json: every line a node wrote is one JSON event naming the node, except the harness's
    # "--- start" lines and any from gRPC's C core, which writes to stderr past Python logging
    # ("I1122 04:40:30.692213 ... file.cc:123] ..."); leader changes were logged as events.
    for node_id, text in cluster.logs().items():
        events = [json.loads(line) for line in text.splitlines()
                  if line and not line.startswith("--- start") and not GRPC_CORE_LINE.match(line)]
        assert events and all(e["node"] == node_id and e["ts"] and e["level"] and e["msg"] for e in events)
        assert any(e["msg"] == "leader_changed" for e in events)

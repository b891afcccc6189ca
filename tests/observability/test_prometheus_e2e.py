"""End to end: a real Prometheus (1 s scrape/evaluation, the short-`for:` test rules) scrapes a real 3-node
cluster; assertions go through Prometheus' HTTP API, as an operator's dashboards and alerts would."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cluster import Cluster
from tests.observability.prom_server import PrometheusServer
from tests.observability.promtool import promtool, requires_prometheus
from vaultd.client import txn_put

pytestmark = [requires_prometheus, pytest.mark.timeout(120)]

# Every metric the observability issue lists, by the name on its `# TYPE` line.
ISSUE_METRICS = """
grpc_server_started_total grpc_server_handled_total grpc_server_handling_seconds
vaultd_vaults vaultd_keys vaultd_stored_bytes vaultd_db_size_bytes vaultd_wal_size_bytes
vaultd_store_apply_seconds vaultd_store_get_seconds vaultd_store_scan_seconds vaultd_store_commit_seconds
vaultd_vault_key_limit_ratio vaultd_raft_is_leader vaultd_raft_has_leader vaultd_raft_term
vaultd_raft_commit_index vaultd_raft_applied_index vaultd_raft_leader_changes_seen_total
vaultd_raft_proposals_committed_total vaultd_raft_proposals_failed_total vaultd_raft_proposals_pending
vaultd_raft_batch_size vaultd_raft_apply_seconds vaultd_raft_journal_fsync_seconds vaultd_raft_snapshot_seconds
vaultd_raft_snapshot_size_bytes vaultd_raft_peer_reachable vaultd_raft_read_barriers_total
vaultd_raft_read_barrier_seconds process_cpu_seconds_total process_resident_memory_bytes python_info
vaultd_build_info vaultd_ready
""".split()
# Activity the writes and reads below must have produced somewhere in the cluster.
ACTIVE = ("vaultd_store_apply_seconds_count", "vaultd_store_commit_seconds_count", "vaultd_store_get_seconds_count",
          "vaultd_store_scan_seconds_count", "vaultd_raft_proposals_committed_total", "vaultd_raft_batch_size_count",
          "vaultd_raft_apply_seconds_count", "vaultd_raft_read_barriers_total", "vaultd_raft_leader_changes_seen_total")


@pytest.fixture
def watched(cluster_factory: Callable[..., Cluster], tmp_path: Path) -> Iterator[tuple[Cluster, PrometheusServer]]:
    cluster = cluster_factory(3, fsync=False)
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    prom = PrometheusServer(workdir, {n.node_id: n.metrics_addr for n in cluster.nodes}).start()
    try:
        yield cluster, prom
    finally:
        prom.stop()


def _firing(prom: PrometheusServer, alertname: str) -> list[dict]:
    return [a for a in prom.alerts() if a["labels"]["alertname"] == alertname and a["state"] == "firing"]


def test_prometheus_sees_cluster_state_and_alerts_on_a_dead_node(watched: tuple[Cluster, PrometheusServer]) -> None:
    cluster, prom = watched
    client = cluster.client()
    # Known data through several write paths: 3 vaults, 12 + 5 + 12 keys.
    client.create_vault("app")
    for i in range(10):
        client.put("app", f"key{i:02d}", f"value-{i}".encode())
    client.txn("app", [txn_put("t1", b"a"), txn_put("t2", b"b")])
    client.import_vault("payments", b"A=1\nB=2\nC=3\nD=4\nE=5\n", format="dotenv")
    client.copy_vault("app", "app-copy")
    assert client.get("app", "key03").value == b"value-3"
    assert len(client.scan("payments").entries) == 5
    expected = {"vaultd_vaults": 3.0, "vaultd_keys": 29.0}

    prom.wait_for(lambda: prom.scalar_values("up") == {"n1": 1.0, "n2": 1.0, "n3": 1.0}, 30, "all targets up")
    prom.wait_for(lambda: prom.scalar_values("sum(vaultd_raft_is_leader)") == {"": 1.0}, 30, "exactly one leader")
    for name, value in expected.items():  # every replica reports the cluster totals
        prom.wait_for(lambda: prom.scalar_values(name) == {"n1": value, "n2": value, "n3": value}, 30, name)
    assert prom.scalar_values("vaultd_ready") == {"n1": 1.0, "n2": 1.0, "n3": 1.0}
    assert prom.scalar_values('max by (vault) (vaultd_vault_key_limit_ratio{vault="app"})') != {}
    puts = prom.wait_for(lambda: prom.scalar_values(
        'sum(grpc_server_handled_total{grpc_service="vaultd.v1.VaultService",grpc_method="Put",grpc_code="OK"})'),
        30, "Put counters")
    assert puts == {"": 10.0}
    # Rules evaluated before the leader's first scrape may see "no leader" for one evaluation; a healthy
    # cluster settles with no alert at all (pending or firing).
    prom.wait_for(lambda: prom.targets() and not prom.alerts(), 15, "no alerts on a healthy cluster")

    for name in ACTIVE:
        prom.wait_for(lambda: prom.scalar_values(f"sum({name})").get("", 0) > 0, 30, f"{name} > 0")
    for node in cluster.nodes:  # every listed metric is exported, and promtool's linter accepts the page
        page = cluster.metrics(node)
        types = {line.split()[2] for line in page.splitlines() if line.startswith("# TYPE ")}
        assert not set(ISSUE_METRICS) - types, f"{node.node_id} lacks {sorted(set(ISSUE_METRICS) - types)}"
        result = promtool("check", "metrics", stdin=page.encode())
        assert result.returncode == 0, f"{node.node_id}: {result.stdout}{result.stderr}"

    victim = cluster.followers()[0]
    cluster.kill(victim)
    prom.wait_for(lambda: prom.scalar_values("up").get(victim.node_id) == 0.0, 30, "up == 0 for the killed node")
    unreachable = prom.wait_for(lambda: _firing(prom, "VaultdPeerUnreachable"), 30, "VaultdPeerUnreachable firing")
    survivors = {n.node_id for n in cluster.nodes if n is not victim}
    assert {a["labels"]["peer"] for a in unreachable} == {victim.node_id}
    prom.wait_for(lambda: {a["labels"]["node"] for a in _firing(prom, "VaultdPeerUnreachable")} == survivors, 30,
                  "both survivors report the peer unreachable")
    alert = unreachable[0]
    assert alert["labels"]["severity"] == "warning"
    assert alert["annotations"]["summary"].endswith(f"cannot reach Raft peer {victim.node_id}")
    assert "Check that the peer's process runs" in alert["annotations"]["description"]
    down = prom.wait_for(lambda: _firing(prom, "VaultdNodeDown"), 30, "VaultdNodeDown firing")
    assert [a["labels"]["node"] for a in down] == [victim.node_id]
    # Two of three still form a majority: no leader alert.
    assert prom.scalar_values("sum(vaultd_raft_is_leader)") == {"": 1.0}
    assert not _firing(prom, "VaultdNoLeader")

    # Kill the leader too: the last node has no quorum, so the cluster has no leader and it is not ready.
    leader = cluster.wait_leader()
    last = next(n for n in cluster.nodes if n is not victim and n is not leader)
    cluster.kill(leader)
    no_leader = prom.wait_for(lambda: _firing(prom, "VaultdNoLeader"), 30, "VaultdNoLeader firing")
    assert no_leader[0]["labels"]["severity"] == "critical"
    not_ready = prom.wait_for(lambda: _firing(prom, "VaultdNodeNotReady"), 30, "VaultdNodeNotReady firing")
    assert [a["labels"]["node"] for a in not_ready] == [last.node_id]

"""End-to-end API tests that start, kill, pause or add nodes: each gets its own real cluster."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import pytest

from tests.cluster import Cluster
from vaultd import client as vc

pytestmark = pytest.mark.timeout(120)


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _health(client: vc.VaultClient, endpoint: str) -> str:
    try:
        return client.health(endpoint, timeout=1.0)
    except vc.Unavailable:
        return "DOWN"


def test_health_before_and_after_a_leader_exists(cluster_factory: Callable[..., Cluster]) -> None:
    cluster = cluster_factory(3, start=False, fsync=False)
    first = cluster.nodes[0]
    cluster.start_nodes([first], wait=False)  # alone it can never elect a leader
    client = cluster.client([first], timeout=1.0)
    _wait_for(lambda: _health(client, first.grpc_addr) != "DOWN", 20, "the gRPC port")
    for _ in range(5):
        assert _health(client, first.grpc_addr) == "NOT_SERVING"
        time.sleep(0.2)
    with pytest.raises(vc.Unavailable) as info:
        client.put("h", "k", b"v")
    assert info.value.reason in ("NO_LEADER", "NOT_READY") and info.value.code == grpc.StatusCode.UNAVAILABLE
    status = client.status()
    assert status.leader_id == "" and not status.ready
    with pytest.raises(vc.NotFound):  # a local read is served without a leader (the vault just is not there)
        client.get_vault("h", consistency="local")
    with pytest.raises(vc.Unavailable):  # a linearizable one is not
        client.get_vault("h")

    cluster.start()  # the other two join: a leader is elected
    for node in cluster.nodes:
        _wait_for(lambda n=node: _health(client, n.grpc_addr) == "SERVING", 20, f"{node.node_id} SERVING")
    assert cluster.client(timeout=10.0).put("h", "k", b"v").version == 1


def test_client_fails_over_when_its_node_is_killed(cluster_factory: Callable[..., Cluster]) -> None:
    cluster = cluster_factory(3, fsync=False)
    leader = cluster.wait_leader()
    others = [n for n in cluster.nodes if n is not leader]
    client = cluster.client([leader, *others], timeout=15.0)
    client.put("fo", "before", b"1")
    assert client.current_endpoint == leader.grpc_addr

    # A hung node (SIGSTOP: connections accepted, never answered) costs half the budget, then failover.
    hung_first = cluster.client([others[0], leader], timeout=4.0)
    assert hung_first.get("fo", "before").value == b"1"      # connected to others[0] before it hangs
    assert hung_first.current_endpoint == others[0].grpc_addr
    cluster.pause(others[0])
    try:
        started = time.monotonic()
        assert hung_first.get("fo", "before").value == b"1"
        assert 1.5 <= time.monotonic() - started < 4.0
        assert hung_first.current_endpoint == leader.grpc_addr
    finally:
        cluster.resume(others[0])
    cluster.wait_ready(timeout=30)

    cluster.kill(leader)
    started = time.monotonic()
    put = client.put("fo", "after", b"2")          # retried on the next endpoint until a new leader commits it
    assert put.version == 1
    assert client.get("fo", "before").value == b"1"
    assert client.current_endpoint != leader.grpc_addr
    assert time.monotonic() - started < 15

    stats = client.vault_stats("fo")
    assert leader.node_id in stats.unreachable_members
    assert set(stats.reporting_members) == {n.node_id for n in others}
    assert stats.key_count == 2


def test_deadline_expiry_then_retry_with_same_request_id_applies_once(
        cluster_factory: Callable[..., Cluster]) -> None:
    cluster = cluster_factory(3, fsync=False)
    leader = cluster.wait_leader()
    client = cluster.client([leader], timeout=10.0)
    client.create_vault("dl")
    for node in cluster.nodes:
        if node is not leader:
            cluster.pause(node)     # no quorum: nothing can commit
    try:
        started = time.monotonic()
        with pytest.raises((vc.DeadlineExceeded, vc.Unavailable)) as info:
            client.put("dl", "k", b"v", request_id="retry-me-once", timeout=1.5)
        elapsed = time.monotonic() - started
        assert 1.0 <= elapsed < 4.0, elapsed
        assert info.value.code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)
    finally:
        for node in cluster.nodes:
            cluster.resume(node)
    cluster.wait_ready(timeout=30)
    client = cluster.client(timeout=15.0)
    again = client.put("dl", "k", b"v", request_id="retry-me-once")
    assert again.version == 1
    assert client.get("dl", "k").version == 1
    assert client.put("dl", "k", b"w").version == 2


def test_add_and_remove_member_through_the_api(cluster_factory: Callable[..., Cluster]) -> None:
    cluster = cluster_factory(3, fsync=False)
    client = cluster.client(timeout=20.0)
    client.put("members", "k", b"v")
    n4 = cluster.add_node()
    added = client.add_member(n4.node_id, n4.raft_addr, n4.grpc_addr)
    assert n4.node_id in {m.node_id for m in added.members}
    cluster.wait_ready([n4], timeout=30)
    assert cluster.client([n4], timeout=10.0).get("members", "k").value == b"v"
    _wait_for(lambda: len(client.status().members) == 4, 10, "4 members in status")
    with pytest.raises(vc.InvalidArgument):
        client.add_member("", "127.0.0.1:1")
    with pytest.raises(vc.InvalidArgument):
        client.add_member("n9", "not-an-address")
    # A known id at another address, or a known address under another id, is refused before any change
    # (it would add a phantom voter, or give two ids one address); the same member again is a no-op retry.
    for node_id, raft_addr in ((n4.node_id, "127.0.0.1:1"), ("n9", n4.raft_addr)):
        with pytest.raises(vc.FailedPrecondition) as info:
            client.add_member(node_id, raft_addr, n4.grpc_addr)
        assert info.value.reason == "MEMBERSHIP_CHANGE_REJECTED"
    again = client.add_member(n4.node_id, n4.raft_addr, n4.grpc_addr)
    assert sorted(m.node_id for m in again.members) == ["n1", "n2", "n3", "n4"]
    assert sorted(m.node_id for m in client.status().members) == ["n1", "n2", "n3", "n4"]

    removed = client.remove_member(n4.node_id)
    assert n4.node_id not in {m.node_id for m in removed.members}
    cluster.stop(n4)
    assert client.put("members", "k2", b"v").version == 1


def test_export_import_between_two_clusters(cluster_factory: Callable[..., Cluster]) -> None:
    source = cluster_factory(3, fsync=False).client(timeout=10.0)
    target = cluster_factory(3, fsync=False).client(timeout=10.0)
    source.create_vault("move", "to the new cluster", "ops", ["x"])
    values = {f"key-{i}": f"secret-{i}".encode() * (i + 1) for i in range(200)}
    source.txn("move", [vc.txn_put(k, v) for k, v in list(values.items())[:100]])
    for k, v in list(values.items())[100:]:
        source.put("move", k, v)
    exported = b"".join(source.export_vault("move"))
    result = target.import_vault("move", exported)
    assert result.imported == 200
    assert {e.key: e.value for e in target.iter_scan("move")} == values
    assert all(e.version == 1 for e in target.iter_scan("move", keys_only=True))
    moved = target.get_vault("move")
    assert (moved.key_count, moved.total_bytes) == (200, sum(len(v) for v in values.values()))

"""Membership safety on real clusters through the API: strict reconfiguration checks (etcd-style)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from pysyncobj.encryptor import getEncryptor

from tests.cluster import Cluster, free_port
from vaultd.client import FailedPrecondition
from vaultd.replication import peer_client

pytestmark = pytest.mark.timeout(180)


def _members(cluster: Cluster) -> list[str]:
    return sorted(m.node_id for m in cluster.client(timeout=10).status().members)


def test_add_member_to_nowhere_is_refused_and_the_cluster_keeps_working(
        cluster_factory: Callable[..., Cluster]) -> None:
    """The issue's repro: three AddMember calls naming addresses where nothing listens once left 6 voters and
    no leader. Each is now refused before the configuration changes."""
    cluster = cluster_factory(3, fsync=False)
    client = cluster.client(timeout=20)
    for i in range(3):
        ghost = f"127.0.0.1:{free_port()}"
        with pytest.raises(FailedPrecondition) as info:
            client.add_member(f"ghost{i}", ghost, f"127.0.0.1:{free_port()}")
        assert info.value.reason == "MEMBERSHIP_CHANGE_REJECTED"
        assert info.value.metadata["check"] == "member_unreachable"
        assert info.value.metadata["detail"] == "connection_refused"
        assert info.value.metadata["raft_addr"] == ghost
    assert _members(cluster) == ["n1", "n2", "n3"]
    assert all(len(client.status(endpoint=n.grpc_addr).members) == 3 for n in cluster.nodes)
    assert client.put("still", "k", b"v").version == 1


def test_a_member_with_other_credentials_is_refused(cluster_factory: Callable[..., Cluster]) -> None:
    """A node of another cluster (another secret) answers on its Raft port but fails the key exchange."""
    cluster = cluster_factory(3, fsync=False)
    stranger = cluster_factory(1, fsync=False).nodes[0]
    client = cluster.client(timeout=20)
    with pytest.raises(FailedPrecondition) as info:
        client.add_member("stranger", stranger.raft_addr, stranger.grpc_addr)
    assert info.value.metadata["check"] == "member_unreachable"
    assert info.value.metadata["detail"] in {"closed_during_handshake", "bad_credentials"}
    assert _members(cluster) == ["n1", "n2", "n3"]


def test_removal_that_leaves_fewer_reachable_voters_than_a_quorum_is_refused(
        cluster_factory: Callable[..., Cluster]) -> None:
    cluster = cluster_factory(3, fsync=False)
    leader = cluster.wait_leader()
    follower, down = [n for n in cluster.nodes if n is not leader]
    cluster.kill(down)
    client = cluster.client([leader], timeout=20)
    # Wait until the leader sees the link to `down` gone (pysyncobj notices the closed connection at once).
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        reach = {m.node_id: m.reachable for m in client.status().members}
        if not reach.get(down.node_id, True):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the leader still reports the killed node reachable")
    # Removing the live follower would leave {leader, down}: quorum 2, one reachable.
    with pytest.raises(FailedPrecondition) as info:
        client.remove_member(follower.node_id)
    assert info.value.reason == "MEMBERSHIP_CHANGE_REJECTED"
    assert info.value.metadata["check"] == "quorum_at_risk"
    assert info.value.metadata["reachable_after"] == "1"
    assert info.value.metadata["quorum_after"] == "2"
    # Removing the dead one leaves {leader, follower}, both reachable: allowed.
    removed = client.remove_member(down.node_id)
    assert sorted(m.node_id for m in removed.members) == sorted([leader.node_id, follower.node_id])
    assert client.put("after", "k", b"v").version == 1


def test_pysyncobj_add_utility_is_no_back_door(cluster_factory: Callable[..., Cluster]) -> None:
    """pysyncobj serves an `add` utility command on the Raft port that would skip every check above."""
    cluster = cluster_factory(3, fsync=False)
    leader = cluster.wait_leader()
    encryptor = getEncryptor(cluster.secret)
    for command in (["add", f"127.0.0.1:{free_port()}"], ["set_version", 99], ["nonsense"], []):
        with pytest.raises(peer_client.PeerUnreachable):
            peer_client.call(leader.raft_addr, encryptor, None, 5.0, command)
    assert (cluster.metric(leader, "vaultd_raft_connections_rejected_total", 'reason="utility_refused"') or 0) >= 4
    assert _members(cluster) == ["n1", "n2", "n3"]
    assert cluster.client(timeout=20).put("still", "k", b"v").version == 1


def test_a_member_removes_itself_through_the_leaders_utility_port(cluster_factory: Callable[..., Cluster]) -> None:
    """The one `remove` utility path vaultd uses: a node asked to remove itself asks the leader directly."""
    cluster = cluster_factory(3, fsync=False)
    leader = cluster.wait_leader()
    follower = next(n for n in cluster.nodes if n is not leader)
    # Its own answer still lists the old configuration (it cannot see the commit of its removal): ask the leader.
    cluster.client([follower], timeout=20).remove_member(follower.node_id)
    client = cluster.client([leader], timeout=20)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(client.status().members) != 2:
        time.sleep(0.1)
    assert sorted(m.node_id for m in client.status().members) == sorted(
        n.node_id for n in cluster.nodes if n is not follower)
    assert client.put("after", "self-removal", b"v").version == 1

"""GetVaultStats reflects reads and writes served by every node (access_count_24h, last_accessed, top_keys
order) and names the members that did not answer, on a real 3-node cluster."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest

from tests.cluster import Cluster

pytestmark = pytest.mark.timeout(120)


def test_vault_stats_sum_accesses_over_members(cluster_factory: Callable[..., Cluster]) -> None:
    cluster = cluster_factory(3, fsync=False)
    clients = {n.node_id: cluster.client([n]) for n in cluster.nodes}
    served: dict[str, Counter[str]] = {n.node_id: Counter() for n in cluster.nodes}
    clients["n1"].create_vault("stats")
    started_ns = time.time_ns()
    plan = [("n1", "put", "alpha"), ("n2", "put", "beta"), ("n3", "put", "gamma")]
    plan += [("n2", "get", "alpha")] * 5 + [("n3", "get", "beta")] * 3 + [("n1", "get", "alpha")]
    plan += [("n1", "get", "gamma")]  # the last access
    for node_id, op, key in plan:
        if op == "put":
            clients[node_id].put("stats", key, b"v" * 10)
        else:
            assert clients[node_id].get("stats", key).value == b"v" * 10
        served[node_id][key] += 1
    finished_ns = time.time_ns()

    stats = clients["n2"].vault_stats("stats")
    assert stats.name == "stats" and stats.key_count == 3 and stats.total_bytes == 30
    assert list(stats.reporting_members) == ["n1", "n2", "n3"] and not stats.unreachable_members
    assert stats.access_count_24h == len(plan) == 13
    assert [(k.key, k.access_count) for k in stats.top_keys] == [("alpha", 7), ("beta", 4), ("gamma", 2)]
    last = stats.last_accessed.ToNanoseconds()
    assert started_ns <= last <= finished_ns
    assert max(k.last_accessed.ToNanoseconds() for k in stats.top_keys) == last
    assert {k.key: k.last_accessed.ToNanoseconds() for k in stats.top_keys}["gamma"] == last

    # A member that does not answer is named, and the figures are those of the members that did.
    victim = next(n for n in cluster.followers() if n.node_id != "n1")
    cluster.kill(victim)
    partial = clients["n1"].vault_stats("stats")
    assert list(partial.unreachable_members) == [victim.node_id]
    expected = Counter(k for node_id, counts in served.items() if node_id != victim.node_id
                       for k in counts.elements())
    assert partial.access_count_24h == sum(expected.values())
    assert {k.key: k.access_count for k in partial.top_keys} == dict(expected)

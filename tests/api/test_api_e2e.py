"""End to end through real gRPC against one real 3-node cluster (tests/cluster.py), shared by this module.

Tests here do not disturb the cluster (no kills, limits restored in `finally`) and use their own vault names,
so they can share it. Tests that kill, pause or add nodes are in test_api_disruptive.py.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.cluster import Cluster
from vaultd import client as vc
from vaultd.v1 import vault_pb2

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("api-e2e"), 3, fsync=False)
    try:
        c.start()
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def client(cluster: Cluster) -> vc.VaultClient:
    return cluster.client(timeout=10.0)


def _eventually(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _raises(exc_type: type[vc.VaultError], reason: str, fn, *args, **kwargs) -> vc.VaultError:
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    assert info.value.reason == reason, info.value
    return info.value


# --- vaults -----------------------------------------------------------------------------------------------

def test_vault_lifecycle(client: vc.VaultClient) -> None:
    created = client.create_vault("life", "payments secrets", "team-a", ["prod", "pci"])
    assert (created.name, created.description, created.owner, list(created.tags)) == \
        ("life", "payments secrets", "team-a", ["prod", "pci"])
    assert created.created_at.seconds > 0 and created.key_count == 0 and created.total_bytes == 0
    client.put("life", "a", b"12345")
    client.put("life", "b", b"xy")
    got = client.get_vault("life")
    assert (got.key_count, got.total_bytes) == (2, 7)
    assert client.get_vault("life", consistency="local").name == "life"

    updated = client.update_vault("life", owner="team-b")
    assert (updated.owner, updated.description, list(updated.tags)) == ("team-b", "payments secrets", ["prod", "pci"])
    updated = client.update_vault("life", tags=[])
    assert list(updated.tags) == [] and updated.owner == "team-b"
    assert updated.updated_at.ToNanoseconds() >= created.updated_at.ToNanoseconds()

    assert client.copy_vault("life", "life-copy") == 2
    copied = client.get("life-copy", "a")
    assert copied.value == b"12345" and copied.version == 1
    client.put("life", "a", b"changed")
    assert client.get("life-copy", "a").value == b"12345"

    assert client.delete_vault("life") == 2
    _raises(vc.NotFound, "VAULT_NOT_FOUND", client.get_vault, "life")
    _raises(vc.NotFound, "VAULT_NOT_FOUND", client.get, "life", "a")
    assert client.delete_vault("life-copy") == 2


def test_list_vaults_pages(client: vc.VaultClient) -> None:
    names = [f"list-{i:02d}" for i in range(7)]
    for name in names:
        client.create_vault(name)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = client.list_vaults(page_size=3, page_token=token)
        assert len(page.vaults) <= 3
        seen += [v.name for v in page.vaults]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert set(names) <= set(seen)
    assert pages >= 3
    assert [v.name for v in client.iter_vaults(consistency="local") if v.name.startswith("list-")] == names
    _raises(vc.InvalidArgument, "INVALID_ARGUMENT", client.list_vaults, page_token="garbage!")


# --- keys -------------------------------------------------------------------------------------------------

def test_put_get_delete_and_versions(client: vc.VaultClient) -> None:
    first = client.put("keys", "stripe_key", b"sk_live_1")
    assert first.version == 1 and first.revision > 0
    second = client.put("keys", "stripe_key", "sk_live_2")
    assert second.version == 2 and second.revision > first.revision
    entry = client.get("keys", "stripe_key")
    assert (entry.key, entry.value, entry.version, entry.revision) == ("stripe_key", b"sk_live_2", 2, second.revision)
    assert entry.created_at.ToNanoseconds() <= entry.updated_at.ToNanoseconds()
    # Compare-and-set.
    assert client.put("keys", "stripe_key", b"v3", expected_version=2).version == 3
    err = _raises(vc.VersionMismatch, "VERSION_MISMATCH", client.put, "keys", "stripe_key", b"x", expected_version=2)
    assert (err.expected, err.actual) == (2, 3) and err.code == grpc.StatusCode.FAILED_PRECONDITION
    err = _raises(vc.VersionMismatch, "VERSION_MISMATCH", client.put, "keys", "stripe_key", b"x", expected_version=0)
    assert err.actual == 3
    assert client.put("keys", "fresh", b"x", expected_version=0).version == 1
    # Delete: present, missing (deleted=false), missing with expected_version (mismatch, actual 0).
    assert client.delete("keys", "fresh") is True
    assert client.delete("keys", "fresh") is False
    err = _raises(vc.VersionMismatch, "VERSION_MISMATCH", client.delete, "keys", "fresh", expected_version=1)
    assert (err.expected, err.actual) == (1, 0)
    err = _raises(vc.VersionMismatch, "VERSION_MISMATCH", client.delete, "keys", "stripe_key", expected_version=1)
    assert err.actual == 3
    assert client.delete("keys", "stripe_key", expected_version=3) is True
    _raises(vc.NotFound, "KEY_NOT_FOUND", client.get, "keys", "stripe_key")
    _raises(vc.NotFound, "VAULT_NOT_FOUND", client.delete, "no-such-vault", "k")


def test_values_of_every_size_around_128_kib_replicate(cluster: Cluster, client: vc.VaultClient) -> None:
    """Regression: pysyncobj split single entries over 64 KiB into a 'transmission' that some sizes just under
    a multiple of 64 KiB cut short, breaking followers. Every size in the window must replicate."""
    for size in range(131072 - 300, 131072 + 10):
        client.put("sizes128k", "k", bytes([size % 256]) * size)
    for node in cluster.nodes:
        entry = cluster.client([node], timeout=10.0).get("sizes128k", "k")   # linearizable read on each node
        assert len(entry.value) == 131072 + 9 and entry.version == 310
    assert all("pickle data was truncated" not in text for text in cluster.logs().values())


def test_put_into_missing_vault_creates_it(client: vc.VaultClient) -> None:
    client.put("implicit", "k", b"v")
    assert client.get_vault("implicit").key_count == 1


def test_request_id_retry_applies_once(client: vc.VaultClient) -> None:
    first = client.put("dedup", "k", b"v", request_id="fixed-request-id-1")
    again = client.put("dedup", "k", b"v", request_id="fixed-request-id-1")
    assert (again.version, again.revision) == (first.version, first.revision) == (1, first.revision)
    assert client.get("dedup", "k").version == 1


def test_hostile_keys_round_trip(client: vc.VaultClient) -> None:
    keys = ["a%b", "a_b", "a:b", "emoji-\U0001F511", "\U00010348-above-bmp", "x" * 1024, "sp ace"]
    for k in keys:
        client.put("hostile", k, k.encode())
    assert sorted(e.key for e in client.iter_scan("hostile")) == sorted(keys, key=lambda s: s.encode())
    assert [e.key for e in client.iter_scan("hostile", prefix="a%")] == ["a%b"]
    assert [e.key for e in client.iter_scan("hostile", prefix="a_")] == ["a_b"]


def test_scan_pagination_over_2500_keys(client: vc.VaultClient) -> None:
    keys = {f"cfg/{i:05d}": f"value-{i}" for i in range(2500)}
    keys.update({f"other/{i}": "x" for i in range(10)})
    result = client.import_vault("paged", json.dumps(keys).encode(), format="flat_json")
    assert result.imported == 2510
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = client.scan("paged", prefix="cfg/", page_size=100, page_token=token, keys_only=True)
        assert len(page.entries) <= 100
        assert all(e.value == b"" for e in page.entries)
        seen += [e.key for e in page.entries]
        token = page.next_page_token
        pages += 1
        if not token:
            break
    assert pages == 25
    assert seen == sorted(k for k in keys if k.startswith("cfg/"))
    full = list(client.iter_scan("paged", prefix="cfg/"))  # default page size, over several pages
    assert len(full) == 2500 and full[7].value == b"value-7"
    assert client.scan("paged", page_size=5000).next_page_token  # capped at max_scan_results
    assert client.get_vault("paged").key_count == 2510


def test_txn_all_or_nothing(client: vc.VaultClient) -> None:
    client.put("txn", "a", b"1")
    result = client.txn("txn", [vc.txn_put("a", b"2", expected_version=1), vc.txn_put("b", b"new"),
                                vc.txn_delete("missing")])
    assert [(r.key, r.version, r.deleted) for r in result.results] == [("a", 2, False), ("b", 1, False),
                                                                      ("missing", 0, False)]
    assert result.revision > 0
    err = _raises(vc.VersionMismatch, "VERSION_MISMATCH", client.txn, "txn",
                  [vc.txn_put("c", b"never"), vc.txn_delete("a", expected_version=1)])
    assert err.actual == 2
    _raises(vc.NotFound, "KEY_NOT_FOUND", client.get, "txn", "c")  # the first op was rolled back
    assert client.get("txn", "a").version == 2
    assert client.txn("txn", [vc.txn_delete("a", expected_version=2)]).results[0].deleted is True
    _raises(vc.InvalidArgument, "INVALID_ARGUMENT", client.txn, "txn", [])
    _raises(vc.InvalidArgument, "INVALID_KEY", client.txn, "txn", [vc.txn_put("", b"x")])


def test_cas_race_between_10_clients_has_one_winner_per_version(cluster: Cluster) -> None:
    clients = [cluster.client(timeout=10.0) for _ in range(10)]
    clients[0].put("race", "counter", b"0")
    for round_no in range(1, 6):
        version = clients[0].get("race", "counter").version
        outcomes: list[object] = [None] * 10
        barrier = threading.Barrier(10)

        def attempt(i: int) -> None:
            barrier.wait(timeout=10)
            try:
                outcomes[i] = clients[i].put("race", "counter", f"{round_no}-{i}".encode(), expected_version=version)
            except vc.VersionMismatch as exc:
                outcomes[i] = exc

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        winners = [o for o in outcomes if isinstance(o, vault_pb2.PutResponse)]
        losers = [o for o in outcomes if isinstance(o, vc.VersionMismatch)]
        assert len(winners) == 1 and len(losers) == 9, outcomes
        assert winners[0].version == version + 1
        assert all(e.expected == version and e.actual == version + 1 for e in losers)
    assert clients[0].get("race", "counter").version == 6


# --- export / import ----------------------------------------------------------------------------------------

def test_export_import_round_trip_between_vaults(client: vc.VaultClient) -> None:
    values = {f"k{i:04d}": bytes([i % 256]) * (i * 37 % 3000) for i in range(600)}
    values["binary"] = bytes(range(256))
    client.import_vault("exp-src", json.dumps({k: base64.b64encode(v).decode() for k, v in values.items()}).encode(),
                        format="flat_json")
    # flat JSON values are text: re-put the binary ones as bytes so the export carries real bytes.
    for k, v in values.items():
        client.put("exp-src", k, v)
    chunks = list(client.export_vault("exp-src"))
    assert len(chunks) > 1  # really streamed
    doc = json.loads(b"".join(chunks))
    assert len(doc["entries"]) == len(values)
    result = client.import_vault("exp-dst", b"".join(chunks), format="native", chunk_size=4096)
    assert (result.imported, result.skipped, result.overwritten) == (len(values), 0, 0)
    assert {e.key: e.value for e in client.iter_scan("exp-dst")} == values
    # Same file again: idempotent in skip mode, conflicts in fail-if-exists mode, nothing changes.
    again = client.import_vault("exp-dst", b"".join(chunks), mode="skip_existing")
    assert (again.imported, again.skipped) == (0, len(values))
    err = _raises(vc.VersionMismatch, "VERSION_MISMATCH", client.import_vault, "exp-dst", b"".join(chunks))
    assert err.expected == 0
    assert client.get_vault("exp-dst").key_count == len(values)


def test_import_large_file_is_chunked_into_several_log_entries(client: vc.VaultClient) -> None:
    big = {f"big{i:03d}": "v" * 20_000 for i in range(150)}  # ~3 MB: several ImportChunk entries
    result = client.import_vault("bigimport", json.dumps(big).encode(), format="flat_json")
    assert result.imported == 150
    assert client.get_vault("bigimport").total_bytes == 150 * 20_000
    over = client.import_vault("bigimport", json.dumps({**big, "big000": "changed"}).encode(), format="flat_json",
                               mode="overwrite")
    assert (over.imported, over.overwritten, over.skipped) == (0, 1, 149)


def test_import_formats_and_malformed_files(client: vc.VaultClient) -> None:
    dotenv = b"# comment\nexport API_KEY=abc\nQUOTED=\"two words\"\n"
    assert client.import_vault("dotenv", dotenv, format="dotenv").imported == 2
    assert client.get("dotenv", "QUOTED").value == b"two words"
    err = _raises(vc.InvalidArgument, "MALFORMED_IMPORT", client.import_vault, "dotenv2", b"OK=1\n=broken\n",
                  format="dotenv")
    assert err.metadata.get("line") == "2"
    _raises(vc.InvalidArgument, "MALFORMED_IMPORT", client.import_vault, "dotenv2", b"{not json", format="native")
    _raises(vc.NotFound, "VAULT_NOT_FOUND", client.get_vault, "dotenv2")  # nothing applied


# --- errors -------------------------------------------------------------------------------------------------

def test_invalid_input_reasons(client: vc.VaultClient) -> None:
    err = _raises(vc.InvalidArgument, "INVALID_VAULT_NAME", client.create_vault, "-bad")
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    _raises(vc.InvalidArgument, "INVALID_VAULT_NAME", client.put, "x" * 65, "k", b"v")
    _raises(vc.InvalidArgument, "INVALID_KEY", client.put, "ok", "", b"v")
    _raises(vc.InvalidArgument, "INVALID_KEY", client.put, "ok", "k" * 1025, b"v")
    _raises(vc.InvalidArgument, "INVALID_KEY", client.get, "ok", "nul\x00key")
    _raises(vc.InvalidArgument, "INVALID_ARGUMENT", client.create_vault, "okname", description="d" * 5000)
    client.create_vault("exists")
    err = _raises(vc.AlreadyExists, "VAULT_EXISTS", client.create_vault, "exists")
    assert err.code == grpc.StatusCode.ALREADY_EXISTS and err.metadata["vault"] == "exists"
    _raises(vc.AlreadyExists, "VAULT_EXISTS", client.copy_vault, "exists", "exists")


def test_value_size_limits_and_5mib_request(client: vc.VaultClient) -> None:
    one_mib = b"\xab" * (1 << 20)
    assert client.put("sizes", "max", one_mib).version == 1
    assert client.get("sizes", "max").value == one_mib
    err = _raises(vc.LimitExceeded, "VALUE_TOO_LARGE", client.put, "sizes", "over", one_mib + b"x")
    assert err.metadata["max"] == str(1 << 20) and err.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    err = _raises(vc.LimitExceeded, "REQUEST_TOO_LARGE", client.put, "sizes", "huge", b"x" * (5 << 20))
    assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert client.get("sizes", "max").version == 1  # the connection and the node are fine


def test_limits_vault_full_and_too_many_vaults(client: vc.VaultClient) -> None:
    before = client.get_limits()
    assert (before.max_vaults, before.max_keys_per_vault, before.max_value_size, before.max_scan_results) == \
        (1000, 10000, 1 << 20, 1000)
    client.put("full", "k1", b"v")
    client.put("full", "k2", b"v")
    vault_count = sum(1 for _ in client.iter_vaults())
    try:
        now = client.set_limits(max_keys_per_vault=2, max_vaults=vault_count)
        assert (now.max_keys_per_vault, now.max_vaults, now.max_value_size) == (2, vault_count, 1 << 20)
        assert client.get_limits() == now
        err = _raises(vc.LimitExceeded, "VAULT_FULL", client.put, "full", "k3", b"v")
        assert err.metadata == {"vault": "full", "max": "2"}
        assert client.put("full", "k1", b"update is fine").version == 2
        err = _raises(vc.LimitExceeded, "TOO_MANY_VAULTS", client.create_vault, "one-too-many")
        assert err.metadata["max"] == str(vault_count)
        _raises(vc.InvalidArgument, "INVALID_ARGUMENT", client.set_limits, max_vaults=-1)
    finally:
        restored = client.set_limits(max_vaults=1000, max_keys_per_vault=10000)
    assert restored == before


# --- stats, cluster, health, reflection -----------------------------------------------------------------------

def test_vault_stats_sum_over_members(cluster: Cluster) -> None:
    per_node = [cluster.client([n], timeout=10.0) for n in cluster.nodes]
    per_node[0].put("stats", "hot", b"12345678")
    per_node[0].put("stats", "cold", b"12")
    for c in per_node:                      # each node serves 3 reads of "hot", 1 of "cold"
        for _ in range(3):
            c.get("stats", "hot")
        c.get("stats", "cold", consistency="local")
    stats = per_node[1].vault_stats("stats")
    assert (stats.name, stats.key_count, stats.total_bytes) == ("stats", 2, 10)
    assert stats.avg_value_size == 5.0 and stats.avg_key_size == 3.5
    assert list(stats.reporting_members) == ["n1", "n2", "n3"] and not stats.unreachable_members
    top = [(k.key, k.access_count) for k in stats.top_keys]
    assert top == [("hot", 10), ("cold", 4)]    # 9 gets + 1 put ; 3 gets + 1 put, summed over all nodes
    assert stats.access_count_24h == 14 and stats.last_accessed.seconds > 0
    _raises(vc.NotFound, "VAULT_NOT_FOUND", per_node[0].vault_stats, "no-such-stats")


def test_cluster_status(cluster: Cluster, client: vc.VaultClient) -> None:
    cluster.wait_ready(timeout=30)
    leader = cluster.wait_leader()
    for node in cluster.nodes:
        status = client.status(endpoint=node.grpc_addr)
        assert status.node_id == node.node_id and status.grpc_addr == node.grpc_addr
        assert status.raft_addr == node.raft_addr
        assert status.role == ("leader" if node is leader else "follower")
        assert status.leader_id == leader.node_id and status.term >= 1
        # ready is a 3 s freshness window in the replication layer: poll rather than sample once under load
        _eventually(lambda n=node: client.status(endpoint=n.grpc_addr).ready, f"{node.node_id} ready")
        assert status.applied_index >= 1 and status.commit_index >= 1 and len(status.state_hash) == 64
        assert sorted((m.node_id, m.grpc_addr) for m in status.members) == \
            sorted((n.node_id, n.grpc_addr) for n in cluster.nodes)
        assert all(m.voter and m.reachable for m in status.members)


def test_health_serving_and_reflection_lists_services(cluster: Cluster, client: vc.VaultClient) -> None:
    for node in cluster.nodes:
        _eventually(lambda n=node: client.health(n.grpc_addr) == "SERVING", f"{node.node_id} SERVING")
    with cluster.channel(cluster.nodes[0]) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                              timeout=5, metadata=cluster.call_metadata())
        names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"vaultd.v1.VaultService", "vaultd.v1.ClusterService", "grpc.health.v1.Health"} <= names


def test_secret_value_never_in_errors_or_logs(cluster: Cluster, client: vc.VaultClient, tmp_path: Path) -> None:
    secret = b"sk_live_e2e_should_never_leak_42"
    client.put("leak", "k", secret)
    client.txn("leak", [vc.txn_put("t", secret)])
    client.import_vault("leak2", json.dumps({"k": secret.decode()}).encode(), format="flat_json")
    errors = []
    for call in (lambda: client.put("leak", "k", secret, expected_version=99),
                 lambda: client.put("leak", "big", secret * 40_000),
                 lambda: client.import_vault("leak", json.dumps({"k": secret.decode()}).encode(), format="flat_json"),
                 lambda: client.import_vault("leak", b"X=" + secret + b"\n=oops", format="dotenv")):
        with pytest.raises(vc.VaultError) as info:
            call()
        errors.append(info.value)
    for err in errors:
        assert secret.decode() not in str(err) and secret.decode() not in json.dumps(err.metadata)
    for text in cluster.logs().values():
        assert secret.decode() not in text

"""Replication end to end: real `vaultd serve` processes on 127.0.0.1, real gRPC clients, kill -9, SIGSTOP."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cluster import Cluster, NodeProc
from vaultd.client import VaultClient, VaultError

pytestmark = pytest.mark.timeout(120)


def _pinned(cluster: Cluster, node: NodeProc, timeout: float = 5.0) -> VaultClient:
    """A client that only ever talks to `node` (no failover)."""
    return cluster.client([node], timeout=timeout)


def _keys(cluster: Cluster, node: NodeProc, vault: str) -> dict[str, int]:
    """key -> version of everything in `vault` on `node`'s own database (local read, no barrier)."""
    c = _pinned(cluster, node, timeout=20)
    return {e.key: e.version for e in c.iter_scan(vault, page_size=1000, keys_only=True, consistency="local")}


def _converged(cluster: Cluster, nodes: list[NodeProc], timeout: float = 20.0) -> str:
    """Wait until every node reports the same applied index and state hash; returns the hash."""
    deadline = time.monotonic() + timeout
    last: list[tuple[int, str]] = []
    while time.monotonic() < deadline:
        try:
            last = [(s.applied_index, s.state_hash) for s in
                    (_pinned(cluster, n).status(endpoint=n.grpc_addr, timeout=3) for n in nodes)]
        except VaultError:
            last = []
        except Exception:  # grpc.RpcError straight from status(endpoint=...)
            last = []
        if last and len(set(last)) == 1:
            return last[0][1]
        time.sleep(0.2)
    raise AssertionError(f"replicas did not converge: {last}")


class Writers:
    """`count` threads putting unique keys through the failover client; records acknowledged keys."""

    def __init__(self, cluster: Cluster, vault: str, count: int = 8) -> None:
        self.cluster = cluster
        self.vault = vault
        self.acked: set[str] = set()
        self.errors = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._clients = [cluster.client(list(cluster.nodes), timeout=4, attempt_timeout=1.5) for _ in range(count)]
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(count)]

    def _run(self, worker: int) -> None:
        client = self._clients[worker]
        i = 0
        while not self._stop.is_set():
            key = f"w{worker}-{i}"
            try:
                client.put(self.vault, key, f"value-{key}".encode(), timeout=4)
                with self._lock:
                    self.acked.add(key)
            except (VaultError, RuntimeError):
                with self._lock:
                    self.errors += 1
            i += 1

    def __enter__(self) -> Writers:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=20)


def _wait_acked(writers: Writers, at_least: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while len(writers.acked) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(writers.acked) >= at_least, f"only {len(writers.acked)} writes acknowledged"


def test_write_on_follower_is_readable_on_other_follower_at_once(cluster3: Cluster) -> None:
    leader = cluster3.wait_leader()
    f1, f2 = [n for n in cluster3.nodes if n is not leader]
    w, r = _pinned(cluster3, f1), _pinned(cluster3, f2)
    for i in range(20):
        put = w.put("app", f"k{i}", f"v{i}".encode())
        got = r.get("app", f"k{i}")            # linearizable by default, on a different follower
        assert got.value == f"v{i}".encode() and got.version == 1 and got.revision == put.revision
    statuses = {n.node_id: _pinned(cluster3, n).status(endpoint=n.grpc_addr) for n in cluster3.nodes}
    assert {s.leader_id for s in statuses.values()} == {leader.node_id}
    assert sorted(m.node_id for m in statuses[f1.node_id].members) == ["n1", "n2", "n3"]
    assert {s.role for s in statuses.values()} == {"leader", "follower"}
    _converged(cluster3, cluster3.nodes)


def test_kill_leader_under_load_loses_no_acknowledged_write(cluster3: Cluster) -> None:
    old = cluster3.wait_leader()
    with Writers(cluster3, "load") as writers:
        _wait_acked(writers, 200)
        cluster3.kill(old)
        killed_at = time.monotonic()
        new = cluster3.wait_leader(timeout=10, exclude=[old])
        elected_after = time.monotonic() - killed_at
        before = len(writers.acked)
        _wait_acked(writers, before + 200)
    assert elected_after < 5.0, f"new leader after {elected_after:.1f}s"
    assert new is not old
    cluster3.restart(old)
    _converged(cluster3, cluster3.nodes)
    for node in cluster3.nodes:
        present = _keys(cluster3, node, "load")
        missing = writers.acked - present.keys()
        assert not missing, f"{node.node_id} lacks {len(missing)} acknowledged keys, e.g. {sorted(missing)[:5]}"
        assert all(v == 1 for v in present.values())   # ambiguous retries never applied a put twice


def test_kill_all_nodes_under_load_then_restart(cluster3: Cluster) -> None:
    with Writers(cluster3, "crash") as writers:
        _wait_acked(writers, 300)
        for node in cluster3.nodes:                # kill -9 everything while writes are in flight
            node.proc.kill()                       # type: ignore[union-attr]
        for node in cluster3.nodes:
            cluster3.kill(node)
        acked = set(writers.acked)
    for node in cluster3.nodes:
        cluster3.restart(node, wait=False)
    cluster3.wait_ready(timeout=30)
    _converged(cluster3, cluster3.nodes)
    for node in cluster3.nodes:
        missing = acked - _keys(cluster3, node, "crash").keys()
        assert not missing, f"{node.node_id} lost {len(missing)} acknowledged writes"
    # And the cluster still takes writes afterwards.
    assert cluster3.client().put("crash", "after", b"x").version == 1


def test_paused_leader_never_serves_stale_reads_and_retries_apply_once(cluster3: Cluster) -> None:
    old = cluster3.wait_leader()
    others = [n for n in cluster3.nodes if n is not old]
    c = cluster3.client(others, timeout=10)
    assert c.put("p", "k", b"v1").version == 1
    assert c.put("p", "counter", b"0", request_id="rid-0").version == 1
    _converged(cluster3, cluster3.nodes)

    cluster3.pause(old)
    new = cluster3.wait_leader(timeout=10, exclude=[old])
    assert new is not old
    assert c.put("p", "k", b"v2").version == 2
    # An ambiguous attempt through the paused node, then retries with the same id elsewhere: applied once.
    stuck = _pinned(cluster3, old, timeout=0.8)
    with pytest.raises(VaultError):
        stuck.put("p", "counter", b"1", request_id="rid-1")
    first = c.put("p", "counter", b"1", request_id="rid-1")
    again = c.put("p", "counter", b"1", request_id="rid-1")
    assert first.version == again.version == 2 and first.revision == again.revision

    cluster3.resume(old)
    reader = _pinned(cluster3, old, timeout=3)
    for _ in range(10):                             # right after SIGCONT: fresh value or an error, never v1
        try:
            assert reader.get("p", "k").value == b"v2"
        except VaultError:
            pass
        time.sleep(0.1)
    cluster3.wait_ready([old], timeout=20)
    status = _pinned(cluster3, old).status(endpoint=old.grpc_addr)
    assert status.role == "follower" and status.leader_id in {n.node_id for n in others}
    assert reader.get("p", "k").value == b"v2"
    _converged(cluster3, cluster3.nodes)
    for node in cluster3.nodes:
        assert _pinned(cluster3, node).get("p", "counter", consistency="local").version == 2


SMALL_LOG = """
[raft]
log_compaction_min_entries = 60
"""


def test_wiped_node_catches_up_from_snapshot_and_journal_stays_bounded(
        cluster_factory: Callable[..., Cluster]) -> None:
    cluster = cluster_factory(3, config_toml=SMALL_LOG)
    victim = [n for n in cluster.nodes if n is not cluster.wait_leader()][0]
    cluster.kill(victim)
    cluster.wipe(victim)
    c = cluster.client([n for n in cluster.nodes if n is not victim])
    for i in range(400):                             # one log entry each: well past several compactions
        c.put("snap", f"k{i:04d}", b"x" * 200)
    cluster.restart(victim)
    _converged(cluster, cluster.nodes)
    assert len(_keys(cluster, victim, "snap")) == 400
    assert "kind=installed" in victim.read_log()    # it was sent a snapshot, not the whole log
    for node in cluster.nodes:
        for path in (node.data_dir / "state.db", node.data_dir / "raft" / "snapshot", node.data_dir / "raft"):
            assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
        journal = node.data_dir / "raft" / "journal"
        # 400 entries of >200 bytes were written; compaction keeps only the tail since the last snapshot.
        assert journal.stat().st_size < 60_000, (node.node_id, journal.stat().st_size)
        assert (node.data_dir / "raft" / "snapshot").exists()


def test_add_a_fourth_node_then_remove_a_follower_and_the_leader(cluster3: Cluster) -> None:
    c = cluster3.client(timeout=20)
    c.put("m", "before", b"1")
    n4 = cluster3.add_node()
    c.add_member(n4.node_id, n4.raft_addr, n4.grpc_addr, timeout=20)
    cluster3.wait_ready([n4], timeout=30)
    assert _pinned(cluster3, n4).get("m", "before").value == b"1"
    members = {m.node_id: m for m in _pinned(cluster3, n4).status(endpoint=n4.grpc_addr).members}
    assert sorted(members) == ["n1", "n2", "n3", "n4"] and members["n4"].grpc_addr == n4.grpc_addr

    leader = cluster3.wait_leader()
    follower = next(n for n in cluster3.nodes[:3] if n is not leader)
    c.remove_member(follower.node_id, timeout=20)
    c.remove_member(leader.node_id, timeout=20)     # moves leadership away first
    remaining = [n for n in cluster3.nodes if n not in (leader, follower)]
    new_leader = cluster3.wait_leader(timeout=15, exclude=[leader, follower])
    assert new_leader in remaining
    cluster3.kill(leader)
    cluster3.kill(follower)
    c2 = cluster3.client(remaining, timeout=20)
    assert c2.put("m", "after", b"2").version == 1    # 2 of 2 remaining members commit it
    for node in remaining:
        status = _pinned(cluster3, node).status(endpoint=node.grpc_addr)
        assert sorted(m.node_id for m in status.members) == sorted(n.node_id for n in remaining)
    _converged(cluster3, remaining)


def test_apply_time_limit_rejections_leave_the_rest_of_the_batch_and_cluster_alone(cluster3: Cluster) -> None:
    c = cluster3.client(timeout=20)
    c.set_limits(max_keys_per_vault=50)
    outcomes: list[str] = []
    lock = threading.Lock()

    def put(i: int) -> None:
        client = cluster3.client(timeout=20)
        try:
            client.put("full", f"key{i:03d}", b"v")
            result = "ok"
        except VaultError as exc:
            result = exc.reason
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert outcomes.count("ok") == 50 and outcomes.count("VAULT_FULL") == 50, sorted(set(outcomes))
    assert c.put("other", "k", b"v").version == 1      # not wedged
    _converged(cluster3, cluster3.nodes)
    for node in cluster3.nodes:
        assert len(_keys(cluster3, node, "full")) == 50


def test_serve_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.cluster import REPO, free_port
    proc = subprocess.run(
        [sys.executable, "-m", "vaultd.serve", "--node-id", "n1", "--data-dir", str(tmp_path / "d"),
         "--raft-addr", f"127.0.0.1:{free_port()}", "--grpc-addr", f"127.0.0.1:{free_port()}",
         "--insecure-plaintext", "--insecure-no-auth"],
        cwd=str(REPO), capture_output=True, text=True, timeout=60,
        env={k: v for k, v in __import__("os").environ.items() if k != "VAULTD_CLUSTER_SECRET"})
    assert proc.returncode == 2
    assert "cluster secret" in proc.stderr and "--cluster-secret-file" in proc.stderr


def test_sigterm_finishes_in_flight_requests_and_exits_zero(cluster3: Cluster) -> None:
    node = cluster3.nodes[0]
    acked: list[str] = []
    stop = threading.Event()

    def writer(w: int) -> None:
        client = _pinned(cluster3, node, timeout=3)
        i = 0
        while not stop.is_set():
            try:
                client.put("term", f"{w}-{i}", b"v")
                acked.append(f"{w}-{i}")
            except (VaultError, RuntimeError):
                return                                  # the node went away: stop writing through it
            i += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(acked) < 40 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cluster3.stop(node) == 0
    stop.set()
    for t in threads:
        t.join(10)
    assert "stopped" in node.read_log().splitlines()[-1]
    others = [n for n in cluster3.nodes if n is not node]
    _converged(cluster3, others)
    assert set(acked) <= _keys(cluster3, others[0], "term").keys()
    cluster3.restart(node)
    _converged(cluster3, cluster3.nodes)

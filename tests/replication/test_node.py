"""ReplicatedNode in one process: several real nodes (real pysyncobj on loopback, real SQLite files)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import free_port
from vaultd.config import NodeConfig
from vaultd.replication import ReplicatedNode, errors
from vaultd.replication.snapshot import read_header
from vaultd.store import commands as c
from vaultd.store.errors import StorageFailure
from vaultd.store.machine import StateMachine

pytestmark = pytest.mark.timeout(60)


class Group:
    """n in-process nodes; `restart()` reopens them on the same directories."""

    def __init__(self, base: Path, n: int, machine_class: type[StateMachine] = StateMachine,
                 fatal: Callable[[str], None] | None = None, **overrides: Any) -> None:
        addrs = [f"127.0.0.1:{free_port()}" for _ in range(n)]
        self.cfgs = [NodeConfig(node_id=f"n{i + 1}", data_dir=str(base / f"n{i + 1}"), raft_addr=a,
                                peers=[f"n{j + 1}={b}" for j, b in enumerate(addrs) if b != a],
                                grpc_addr=f"127.0.0.1:{free_port()}", cluster_secret="test-secret",
                                unsafe_no_fsync=True, **overrides) for i, a in enumerate(addrs)]
        self.machine_class = machine_class
        self.fatal = fatal
        self.nodes: list[ReplicatedNode] = []
        self.start()

    def start(self) -> None:
        self.nodes = []
        for cfg in self.cfgs:
            os.makedirs(cfg.data_dir, exist_ok=True)
            kwargs = {"fatal": self.fatal} if self.fatal else {}
            node = ReplicatedNode(cfg, self.machine_class(cfg.db_path), **kwargs)
            node.start()
            self.nodes.append(node)
        deadline = time.monotonic() + 15
        while not all(n.is_ready() for n in self.nodes):
            assert time.monotonic() < deadline, "in-process cluster not ready"
            time.sleep(0.05)

    def leader(self) -> ReplicatedNode:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            leaders = [n for n in self.nodes if n.status().role == "leader"]
            if len(leaders) == 1:
                return leaders[0]
            time.sleep(0.05)
        raise AssertionError("no single leader")

    def stop_node(self, node: ReplicatedNode) -> None:
        node.stop()
        node.machine.close()
        self.nodes.remove(node)

    def converged(self, timeout: float = 10.0) -> str:
        """Wait until every node applied the same index with the same state hash; returns the hash."""
        deadline = time.monotonic() + timeout
        while True:
            seen = {(n.machine.applied_index, n.state_hash()) for n in self.nodes}
            if len(seen) == 1:
                return seen.pop()[1]
            assert time.monotonic() < deadline, f"replicas differ: {seen}"
            time.sleep(0.05)

    def close(self) -> None:
        for node in list(self.nodes):
            self.stop_node(node)


@pytest.fixture
def group(tmp_path: Path) -> Iterator[Callable[..., Group]]:
    made: list[Group] = []

    def make(n: int = 3, **kwargs: Any) -> Group:
        g = Group(tmp_path / f"g{len(made)}", n, **kwargs)
        made.append(g)
        return g

    yield make
    for g in made:
        g.close()


def put(vault: str, key: str, value: bytes = b"v", rid: str = "") -> c.Envelope:
    return c.Envelope(rid, c.Put(vault, key, value))


def test_one_entry_rejections_do_not_affect_the_rest_of_the_batch(group: Callable[..., Group]) -> None:
    g = group(3)
    follower = next(n for n in g.nodes if n is not g.leader())
    assert follower.submit([c.Envelope("", c.SetLimits(max_keys_per_vault=2))], 5)[0].ok
    results = follower.submit([put("a", "k1"), put("a", "k2"), put("a", "k3"), put("b", "k1"),
                               c.Envelope("", c.Put("bad name!", "k", b"v"))], 5)
    assert [r.ok for r in results] == [True, True, False, True, False]
    assert results[2].error.reason == "VAULT_FULL" and results[4].error.reason == "INVALID_VAULT_NAME"
    assert len({r.value.revision for r in results if r.ok}) == 1           # one log entry
    assert follower.submit([put("b", "k2")], 5)[0].ok                       # not wedged
    g.converged()


def test_group_commit_batches_concurrent_writers(group: Callable[..., Group]) -> None:
    g = group(3)
    nodes = g.nodes
    revisions: list[int] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        for i in range(20):
            r = nodes[w % 3].submit([put("gc", f"{w}-{i}", rid=f"{w}-{i}")], 10)[0]
            with lock:
                revisions.append(r.value.revision)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(revisions) == 640
    assert len(set(revisions)) < 640 / 2, f"{len(set(revisions))} entries for 640 writes"


def test_concurrent_read_barriers_share_log_entries(group: Callable[..., Group]) -> None:
    # Applies take 0.2 s here, so all 60 readers really overlap a barrier in flight (with millisecond
    # barriers, readers that start after one finished launch their own and the count depends on scheduling).
    g = group(1, machine_class=_SlowDisk)
    node = g.nodes[0]
    node.machine.delay = 0.2
    gate = threading.Barrier(60)
    failures: list[BaseException] = []

    def reader() -> None:
        try:
            gate.wait(10)
            node.read_barrier(5)
        except BaseException as exc:   # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(60)]
    before = node.status().commit_index
    node.machine.slow = True
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    finally:
        node.machine.slow = False
    used = node.status().commit_index - before
    assert not failures, failures
    assert 1 <= used <= 4, f"60 concurrent barriers used {used} entries"
    assert 1 <= node.machine.noops <= 4, f"60 concurrent barriers proposed {node.machine.noops} no-ops"


def test_isolated_leader_refuses_linearizable_reads(group: Callable[..., Group]) -> None:
    g = group(3, ready_window_seconds=1.0)
    leader = g.leader()
    leader.read_barrier(2)
    for node in [n for n in g.nodes if n is not leader]:
        g.stop_node(node)
    start = time.monotonic()
    with pytest.raises((errors.Timeout, errors.Unavailable)):
        leader.read_barrier(1.0)
    assert time.monotonic() - start < 2.0
    deadline = time.monotonic() + 4
    while leader.is_ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not leader.is_ready()
    with pytest.raises((errors.Timeout, errors.Unavailable)):
        leader.submit([put("x", "y")], 0.5)


def test_pending_queue_is_bounded(group: Callable[..., Group]) -> None:
    g = group(3, max_pending_commands=2)
    leader = g.leader()
    for node in [n for n in g.nodes if n is not leader]:
        g.stop_node(node)
    outcome: list[BaseException] = []
    stuck = threading.Thread(target=lambda: outcome.append(_raises(leader, [put("q", "1"), put("q", "2")], 2.0)))
    stuck.start()
    deadline = time.monotonic() + 10
    while leader.status().pending_commands < 2:  # both commands queued: the queue is full
        assert time.monotonic() < deadline and stuck.is_alive(), outcome
        time.sleep(0.01)
    with pytest.raises(errors.Unavailable) as exc:
        leader.submit([put("q", "3")], 1.0)
    assert exc.value.reason == "OVERLOADED"
    stuck.join(5)
    assert isinstance(outcome[0], errors.Timeout) and isinstance(outcome[0], errors.Ambiguous)


def _raises(node: ReplicatedNode, envelopes: list[c.Envelope], timeout: float) -> BaseException:
    try:
        node.submit(envelopes, timeout)
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        return exc
    raise AssertionError("submit unexpectedly succeeded")


def test_restart_replays_without_double_apply(group: Callable[..., Group]) -> None:
    g = group(3)
    for i in range(30):
        assert g.nodes[i % 3].submit([put("r", f"k{i % 5}", rid=f"r{i}")], 5)[0].ok
    leader = g.leader()
    leader.read_barrier(5)
    versions = {k: leader.machine.reader().get("r", k).version for k in ("k0", "k4")}
    g.close()
    g.start()
    node = g.nodes[0]
    node.read_barrier(5)
    assert {k: node.machine.reader().get("r", k).version for k in ("k0", "k4")} == versions == {"k0": 6, "k4": 6}
    # The same request id again: the recorded outcome, not a third apply.
    again = node.submit([put("r", "k0", rid="r0")], 5)[0]
    assert again.ok and again.value.version == 1
    assert node.submit([put("r", "k0")], 5)[0].value.version == 7
    g.converged()


def test_snapshots_are_taken_in_the_background_and_compact_the_journal(group: Callable[..., Group]) -> None:
    g = group(3, log_compaction_min_entries=25)
    node = g.nodes[0]
    for i in range(120):
        assert node.submit([put("s", f"k{i}", b"x" * 100)], 5)[0].ok
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(
            n.status().snapshot_index > 50 and n.status().log_length < 80 for n in g.nodes):
        time.sleep(0.1)
    for n in g.nodes:
        st = n.status()
        assert st.snapshot_index > 50 and st.log_length < 80, (st.snapshot_index, st.log_length)
        header, _ = read_header(os.path.join(n.cfg.raft_dir, "snapshot"))
        assert header["machine_index"] >= header["last"][0] and len(header["cluster"]) == 3


class _FailingDisk(StateMachine):
    """A real state machine whose disk "fails" when a put targets the vault named 'boom'."""

    def apply_entry(self, index: int, term: int, payload: bytes) -> list[Any]:
        batch = c.decode_batch(payload)
        if any(getattr(e.command, "vault", "") == "boom" for e in batch.commands):
            raise StorageFailure("disk I/O error")
        return super().apply_entry(index, term, payload)


class _SlowDisk(StateMachine):
    """A real state machine whose applies take `delay` seconds while `slow` is set (a busy disk)."""

    slow = False
    delay = 0.6
    noops = 0           # Noop commands (read barriers) applied while slow

    def apply_entry(self, index: int, term: int, payload: bytes) -> list[Any]:
        if self.slow:
            self.noops += sum(isinstance(e.command, c.Noop) for e in c.decode_batch(payload).commands)
            time.sleep(self.delay)
        return super().apply_entry(index, term, payload)


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_a_shared_barrier_lives_as_long_as_its_most_patient_reader(group: Callable[..., Group]) -> None:
    g = group(1, machine_class=_SlowDisk)
    node = g.nodes[0]
    outcomes: dict[str, str] = {}

    def reader(name: str, timeout: float) -> None:
        try:
            node.read_barrier(timeout)
            outcomes[name] = "ok"
        except errors.ReplicationError as exc:
            outcomes[name] = type(exc).__name__

    node.machine.slow = True
    try:
        threads = {name: threading.Thread(target=reader, args=(name, timeout))
                   for name, timeout in (("first", 5.0), ("hasty", 0.2), ("patient", 5.0))}
        barriers = node._barriers
        threads["first"].start()        # launches a barrier that takes 0.6 s to apply
        _wait_until(lambda: barriers._current is not None, "the first barrier in flight")
        threads["hasty"].start()        # both join the next barrier, launched when the first one is done
        _wait_until(lambda: barriers._next is not None, "the hasty reader waiting for the next barrier")
        threads["patient"].start()
        for t in threads.values():
            t.join(10)
    finally:
        node.machine.slow = False
    assert outcomes["hasty"] == "Timeout"
    assert outcomes["first"] == "ok" and outcomes["patient"] == "ok", outcomes


def test_storage_failure_stops_the_node_instead_of_skipping(group: Callable[..., Group]) -> None:
    stopped: list[str] = []
    g = group(1, machine_class=_FailingDisk, fatal=stopped.append)
    node = g.nodes[0]
    assert node.submit([put("ok", "k")], 5)[0].ok
    with pytest.raises(errors.ReplicationError):
        node.submit([put("boom", "k")], 1.0)
    assert stopped and "storage failure applying index" in stopped[0]
    assert node.machine.applied_index < node.status().commit_index     # never marked applied


def test_restarted_node_is_not_ready_until_caught_up(group: Callable[..., Group]) -> None:
    g = group(3)
    leader = g.leader()
    follower = next(n for n in g.nodes if n is not leader)
    cfg = follower.cfg
    g.stop_node(follower)
    for i in range(150):
        assert leader.submit([put("catch", f"k{i}", b"x" * 500)], 5)[0].ok
    written = leader.status().commit_index
    node = ReplicatedNode(cfg, StateMachine(cfg.db_path))
    assert node.machine.applied_index < written
    node.start()
    g.nodes.append(node)
    assert not node.is_ready()
    deadline = time.monotonic() + 15
    while not node.is_ready():
        assert time.monotonic() < deadline, "restarted node never became ready"
        time.sleep(0.005)
    # Ready implies a barrier proposed after the restart was applied here, i.e. everything before it too.
    assert node.machine.applied_index >= written
    assert node.machine.reader().get("catch", "k149").value == b"x" * 500


def test_a_member_removed_and_added_again_is_back_in_the_members_table(group: Callable[..., Group]) -> None:
    g = group(3)
    leader = g.leader()
    follower = next(n for n in g.nodes if n is not leader)
    spec = (follower.node_id, follower.cfg.raft_addr, follower.cfg.grpc_addr)

    def member_ids() -> set[str]:
        return {m.node_id for m in leader.machine.reader().members()}

    leader.remove_member(follower.node_id, timeout=15)
    assert follower.node_id not in member_ids()
    leader.add_member(*spec, timeout=15)       # the removed node still runs: it answers the probe
    assert follower.node_id in member_ids()
    leader.remove_member(follower.node_id, timeout=15)
    assert follower.node_id not in member_ids()
    leader.add_member(*spec, timeout=15)       # same arguments: must not be deduplicated away
    assert follower.node_id in member_ids()

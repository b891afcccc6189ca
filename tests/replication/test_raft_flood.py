"""Connection floods against the Raft port of a real 3-node cluster: members must still get in.

pysyncobj dials only from the higher address to the lower one, so the node with the lowest Raft address
accepts every link it has and dials none: flooding it and restarting the highest node (which must dial it)
is the reviewer's scenario where a refused reconnect can never be repaired from the other side.
"""

from __future__ import annotations

import errno
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cluster import Cluster, NodeProc
from tests.replication.peer_certs import CA

pytestmark = pytest.mark.timeout(240)

# Election timeouts above the defaults: the flood and the restart share two cores with other test processes;
# what is tested is that the member gets back in, not that no election ever happens.
RAFT_TIMEOUTS = """
[raft]
raft_min_timeout = 1.5
raft_max_timeout = 3.0
leader_fallback_timeout = 4.0
"""


class Flood(threading.Thread):
    """Keeps up to `width` idle TCP connections open to `addr` from `source`, reopening each one the server
    closes, at most `rate` new connections a second, until stopped, `max_seconds` passed or `max_total`
    connections were opened."""

    def __init__(self, addr: tuple[str, int], *, source: str = "127.0.0.1", width: int = 200,
                 rate: float = 1500.0, max_seconds: float = 60.0, max_total: int = 80_000) -> None:
        super().__init__(daemon=True)
        self.addr, self.source, self.width, self.rate = addr, source, width, rate
        self.max_seconds, self.max_total = max_seconds, max_total
        self.opened = 0
        self.refused = 0
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)

    def run(self) -> None:
        socks: list[socket.socket] = []
        start = time.monotonic()
        try:
            while not self._stop_event.is_set() and time.monotonic() - start < self.max_seconds:
                allowed = int((time.monotonic() - start) * self.rate) - self.opened
                while len(socks) < self.width and allowed > 0 and self.opened < self.max_total:
                    s = socket.socket()
                    s.bind((self.source, 0))
                    s.setblocking(False)
                    code = s.connect_ex(self.addr)
                    self.opened += 1
                    allowed -= 1
                    if code not in (0, errno.EINPROGRESS):
                        self.refused += 1
                        s.close()
                        continue
                    socks.append(s)
                if not socks:
                    time.sleep(0.01)
                    continue
                ready, _, _ = select.select(socks, [], [], 0.01)
                for s in ready:
                    try:
                        data = s.recv(4096)
                    except OSError:
                        data = b""
                    if data == b"":
                        socks.remove(s)
                        s.close()
        finally:
            for s in socks:
                s.close()


@pytest.fixture(params=[False, True], ids=["secret-only", "peer-tls"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "cluster", size=3, fsync=False, config_toml=RAFT_TIMEOUTS)
    if request.param:
        ca = CA(tmp_path / "pki", "cluster")
        for node in c.nodes:
            node.extra_args += ca.peer_args(node.node_id, ["127.0.0.1"])
    try:
        c.start()
        yield c
    finally:
        c.close()


def _addr(node: NodeProc) -> tuple[str, int]:
    host, port = node.raft_addr.rsplit(":", 1)
    return host, int(port)


def _wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except Exception:   # a node busy restarting or briefly without a leader: ask again
            pass
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


def _rejected(cluster: Cluster, node: NodeProc, reason: str) -> float:
    return cluster.metric(node, "vaultd_raft_connections_rejected_total", f'reason="{reason}"') or 0.0


def test_a_restarted_member_rejoins_through_a_flood_of_idle_connections(cluster: Cluster) -> None:
    by_addr = sorted(cluster.nodes, key=lambda n: n.raft_addr)
    target, restarted = by_addr[0], by_addr[-1]   # restarted dials target; target never dials back
    client = cluster.client(timeout=20)
    client.create_vault("flood")
    flood = Flood(_addr(target))
    flood.start()
    try:
        # The flood holds the target's pending slots before the member goes away.
        _wait_for(lambda: flood.opened > 300, 20, "the flood is running")
        cluster.kill(restarted)
        _wait_for(lambda: client.put("flood", "while-down", b"v").version >= 1, 45,
                  "a write commits on the two remaining members")
        cluster.restart(restarted, wait=False)

        def rejoined() -> bool:
            seen = client.status(endpoint=target.grpc_addr)
            reachable = {m.node_id: m.reachable for m in seen.members}
            mine = client.status(endpoint=restarted.grpc_addr)
            return bool(reachable.get(restarted.node_id)) and mine.ready and \
                mine.commit_index == seen.commit_index
        _wait_for(rejoined, 25, "the restarted member reconnected to the flooded node and caught up")
        assert flood.is_alive(), "the flood ended before the member was back: the test proved nothing"
    finally:
        flood.stop()
    assert flood.opened > 1000
    assert _rejected(cluster, target, "evicted") > 0, "the flood never filled the pending slots"
    local = cluster.client([restarted], timeout=10)
    assert local.get("flood", "while-down", consistency="local").value == b"v"

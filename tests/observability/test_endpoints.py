"""The metrics port over real HTTP: /metrics passes promtool, /healthz, /readyz before a node exists, 404,
stop() releases the port, and stalled clients cannot pile up threads."""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cluster import Cluster
from tests.observability.promtool import promtool, requires_promtool
from vaultd.observability.endpoints import MAX_CONNECTIONS, ObservabilityServer, parse_addr, start_http_server

pytestmark = pytest.mark.timeout(60)


def _get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


@requires_promtool
def test_metrics_health_and_readiness_without_node() -> None:
    server = start_http_server("127.0.0.1:0")
    try:
        code, ctype, body = _get(server.port, "/metrics")
        assert code == 200 and ctype.startswith("text/plain; version=0.0.4")
        assert 'vaultd_build_info{version="' in body and "process_cpu_seconds_total" in body
        assert "python_info" in body
        check = promtool("check", "metrics", stdin=body.encode())
        assert check.returncode == 0, check.stdout + check.stderr
        assert _get(server.port, "/healthz")[::2] == (200, "ok\n")
        assert _get(server.port, "/readyz")[::2] == (503, "not ready\n")
        code, _, body = _get(server.port, "/readyz?verbose")
        assert code == 503 and "[-]node not started" in body
        assert _get(server.port, "/nope")[0] == 404
    finally:
        server.stop()
    with socket.socket() as s:  # nothing listens any more (SO_REUSEADDR: closed connections linger in TIME_WAIT)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", server.port))
        s.listen()


def test_parse_addr() -> None:
    assert parse_addr("127.0.0.1:9100") == ("127.0.0.1", 9100)
    assert parse_addr("[::1]:9100") == ("::1", 9100)
    with pytest.raises(ValueError):
        parse_addr("localhost")


def _handler_threads() -> int:
    """Threads running HTTP handlers in this process (named after socketserver's target). Not the whole
    /proc/self/task count: other tests' daemon threads may come and go in the same process meanwhile."""
    return sum("process_request_thread" in t.name for t in threading.enumerate())


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _half_sent(port: int, count: int) -> list[socket.socket]:
    conns = []
    for _ in range(count):
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # no blank line: the request never ends
        conns.append(conn)
    return conns


def test_half_sent_requests_hold_at_most_max_connections_threads() -> None:
    """300 connections that send half a request and stall: at most MAX_CONNECTIONS handler threads run (the
    default cap), every other connection is answered 503 and closed at once, and the threads are gone once
    the clients are."""
    server = ObservabilityServer("127.0.0.1:0", read_timeout=60).start()  # nothing times out during the test
    conns: list[socket.socket] = []
    try:
        assert _handler_threads() == 0
        conns = _half_sent(server.port, 300)
        assert _wait_for(lambda: _handler_threads() == MAX_CONNECTIONS, 10)
        refused = []
        for conn in conns[MAX_CONNECTIONS:]:
            conn.settimeout(5)
            try:
                refused.append(conn.recv(200))
            except ConnectionResetError:  # closed with our unread request in its buffer
                refused.append(b"")
        assert all(a.startswith(b"HTTP/1.1 503") or a == b"" for a in refused)
        assert any(a.startswith(b"HTTP/1.1 503") for a in refused)
        assert _handler_threads() == MAX_CONNECTIONS
        for conn in conns:
            conn.close()
        assert _wait_for(lambda: _handler_threads() == 0, 10)
        assert _get(server.port, "/healthz")[::2] == (200, "ok\n")
    finally:
        for conn in conns:
            conn.close()
        server.stop()


def test_stalled_and_trickling_requests_are_dropped_after_the_read_timeout() -> None:
    """A connection that sends half a request, and one that sends a byte every 0.3 s (each read in time,
    the request not), are both closed when the read timeout has passed since the request began; their
    threads end with them."""
    timeout = 2.0
    server = ObservabilityServer("127.0.0.1:0", read_timeout=timeout).start()
    try:
        stalled = _half_sent(server.port, 1)[0]
        started = time.monotonic()
        with stalled, socket.create_connection(("127.0.0.1", server.port), timeout=5) as trickling:
            trickling.settimeout(0.3)
            closed_after = None
            for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 100:
                try:
                    trickling.sendall(bytes([byte]))
                    if trickling.recv(100) == b"":
                        closed_after = time.monotonic() - started
                        break
                except TimeoutError:
                    continue
                except OSError:
                    closed_after = time.monotonic() - started
                    break
            assert closed_after is not None and timeout - 0.5 <= closed_after <= timeout + 2, closed_after
            stalled.settimeout(5)
            assert stalled.recv(100) == b""  # closed by the server, without an answer
        assert _wait_for(lambda: _handler_threads() == 0, 5)
    finally:
        server.stop()


def _most_tasks(tasks: Path, samples: int) -> int:
    """The highest thread count seen over `samples` looks 50 ms apart."""
    most = 0
    for _ in range(samples):
        most = max(most, len(os.listdir(tasks)))
        time.sleep(0.05)
    return most


def test_a_node_process_keeps_its_thread_count_under_half_sent_requests(tmp_path: Path) -> None:
    """The same through a real node process: its thread count (/proc/PID/task) grows by at most
    MAX_CONNECTIONS under 300 half-sent requests to its metrics port, and returns when they are gone."""
    with Cluster(tmp_path, size=1, fsync=False) as cluster:
        cluster.start()
        node = cluster.nodes[0]
        tasks = Path(f"/proc/{node.pid}/task")
        host, port = parse_addr(node.metrics_addr)
        # The node's own threads come and go a little (timers, stats); compare against the most seen idle.
        before = _most_tasks(tasks, samples=20)
        conns = _half_sent(port, 300)
        try:
            assert _wait_for(lambda: len(os.listdir(tasks)) >= before + MAX_CONNECTIONS // 2, 10)
            peak = _most_tasks(tasks, samples=20)
            assert peak <= before + MAX_CONNECTIONS + 2, (before, peak)  # + the node's own comings and goings
        finally:
            for conn in conns:
                conn.close()
        assert _wait_for(lambda: len(os.listdir(tasks)) <= before, 10)
        assert node.http_get("/healthz")[0] == 200

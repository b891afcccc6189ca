"""The metrics port over real HTTP: /metrics passes promtool, /healthz, /readyz before a node exists, 404,
and stop() releases the port."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest

from tests.observability.promtool import promtool, requires_promtool
from vaultd.observability.endpoints import parse_addr, start_http_server

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

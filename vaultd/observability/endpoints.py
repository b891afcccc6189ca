"""The metrics port: /metrics (Prometheus text format), /healthz (process alive), /readyz (ready to serve).

Why our own small server instead of prometheus_client.start_http_server: the health endpoints must live on
the same port, and stop() must really release the port (tests and clean shutdown). A ThreadingHTTPServer
with daemon threads keeps a slow scraper from blocking health probes. /metrics is served as text format
0.0.4 (all vaultd names are legacy-valid), which every Prometheus 2.x, including Debian's, parses.

Bounds: a thread per connection, unbounded, let anyone who reaches the port start threads at will (300
half-sent requests made 300 threads). So at most MAX_CONNECTIONS connections are served at once; one more is
answered 503 and closed by the accepting thread itself, without blocking it. Each connection must send its
next request line and headers within READ_TIMEOUT_SECONDS in total (also the idle limit of a kept-alive
connection), so a silent client, or one trickling a byte at a time, holds its thread for at most that long.
"""

from __future__ import annotations

import io
import logging
import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from vaultd.observability.health import NodeLike, readiness

log = logging.getLogger("vaultd.observability")

# Connections served at once (a scraper, a few probes and some headroom); beyond it: 503 and close.
MAX_CONNECTIONS = 16
# Seconds a connection may take to send a request (or stay idle between kept-alive requests).
READ_TIMEOUT_SECONDS = 5.0
_BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
                  b"Content-Length: 5\r\nConnection: close\r\nRetry-After: 1\r\n\r\nbusy\n")


def parse_addr(addr: str) -> tuple[str, int]:
    """'HOST:PORT' (IPv6 as '[::1]:PORT') -> (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"metrics address must be HOST:PORT, not {addr!r}")
    return host.strip("[]"), int(port)


class _DeadlineReader(io.RawIOBase):
    """The connection's bytes, each read allowed only what is left of the current request's time.

    A plain socket timeout bounds each read, not the request: a client sending a byte every few seconds
    would never trip it."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        super().__init__()
        self._sock = sock
        self._timeout = timeout
        self.deadline = math.inf

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request was not received in time")
        self._sock.settimeout(min(remaining, self._timeout))
        try:
            return self._sock.recv_into(buffer)
        finally:
            self._sock.settimeout(self._timeout)  # what writes get


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    def setup(self) -> None:
        self.timeout = self.server.read_timeout  # the socket timeout: also bounds each write of a response
        super().setup()
        self._reader = _DeadlineReader(self.connection, self.timeout)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        """Each request (and the wait for it on a kept-alive connection) gets the read timeout to arrive;
        the stdlib then ends the connection on the TimeoutError."""
        self._reader.deadline = time.monotonic() + self.server.read_timeout
        super().handle_one_request()

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        url = urlsplit(self.path)
        if url.path == "/metrics":
            self._send(200, generate_latest(self.server.registry), CONTENT_TYPE_PLAIN_0_0_4)
        elif url.path in ("/healthz", "/livez"):
            self._send(200, b"ok\n")
        elif url.path == "/readyz":
            self._readyz("verbose" in parse_qs(url.query, keep_blank_values=True))
        else:
            self._send(404, b"not found\n")

    def _readyz(self, verbose: bool) -> None:
        node = self.server.node
        if node is None:
            self._send(503, b"[-]node not started\nreadyz check failed\n" if verbose else b"not ready\n")
            return
        state = readiness(node)
        code = 200 if state.ready else 503
        if not verbose:
            self._send(code, b"ok\n" if state.ready else b"not ready\n")
            return
        lines = [f"[{'+' if c.ok else '-'}]{c.name} {'ok' if c.ok else 'failed'}: {c.detail}" for c in state.checks]
        lines.append("readyz check passed" if state.ready else "readyz check failed")
        self._send(code, ("\n".join(lines) + "\n").encode())

    def _send(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        """Probes every second would drown the log; access logging is off."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog of 5 drops the SYNs of a burst of connections (the clients
    # retry after a second); refused connections are cheap to accept, so let them queue.
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], registry: CollectorRegistry, node: NodeLike | None,
                 max_connections: int, read_timeout: float) -> None:
        self.registry = registry
        self.node = node
        self.read_timeout = read_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        super().__init__(addr, _Handler)

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        """Runs on the accepting thread: start a handler thread only while a slot is free."""
        if not self._slots.acquire(blocking=False):
            _refuse(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def _refuse(request: socket.socket) -> None:
    """503 without reading the request: a non-blocking send into the fresh socket's empty buffer."""
    try:
        request.setblocking(False)
        request.send(_BUSY_RESPONSE)
    except OSError:
        pass  # the client is gone or not reading; closing is answer enough


class ObservabilityServer:
    """HTTP server on --metrics-addr. `node` may be attached later (set_node) when it starts after us."""

    def __init__(self, addr: str, node: NodeLike | None = None, registry: CollectorRegistry = REGISTRY,
                 max_connections: int = MAX_CONNECTIONS, read_timeout: float = READ_TIMEOUT_SECONDS) -> None:
        self._server = _Server(parse_addr(addr), registry, node, max_connections, read_timeout)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def address(self) -> str:
        host = self._server.server_address[0]
        return f"[{host}]:{self.port}" if ":" in str(host) else f"{host}:{self.port}"

    def set_node(self, node: NodeLike | None) -> None:
        self._server.node = node

    def start(self) -> ObservabilityServer:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="vaultd-metrics-http", daemon=True)
        self._thread.start()
        log.info("metrics and health endpoints listening on http://%s", self.address)
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()


def start_http_server(addr: str, node: NodeLike | None = None,
                      registry: CollectorRegistry = REGISTRY) -> ObservabilityServer:
    """Bind addr ('HOST:PORT', port 0 picks a free one) and serve in a daemon thread; call .stop() to end."""
    return ObservabilityServer(addr, node, registry).start()

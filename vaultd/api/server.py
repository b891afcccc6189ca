"""build_server: VaultService, ClusterService, grpc.health.v1 and reflection on one grpc.Server.

Limits, and why:
- Receive size: the value limit plus room for the key and framing (MAX_RECEIVE_BYTES, 4 MiB at the default
  1 MiB value limit). grpc core rejects a bigger message itself with RESOURCE_EXHAUSTED ("Received message
  larger than max") before any handler runs, and the connection stays usable; the client maps that status
  to reason REQUEST_TOO_LARGE.
- Concurrency: a fixed thread pool, plus `maximum_concurrent_rpcs`; grpc answers RPCs beyond it with
  RESOURCE_EXHAUSTED at once rather than queueing without bound.
- Health: NOT_SERVING until node.is_ready() (a leader exists and this node caught up), refreshed by a small
  daemon thread, using the same readiness definition as /readyz.
- Transport: TLS whenever cfg.tls_cert is set (vaultd.tls.ServerTLS: re-read on SIGHUP, client certificates
  required when cfg.tls_client_ca is set); plaintext only when serve was told --insecure-plaintext.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from vaultd.api.auth import Authenticator
from vaultd.api.auth_service import AuthServicer
from vaultd.api.base import MAX_SEND_BYTES
from vaultd.api.cluster_service import ClusterServicer
from vaultd.api.decoding import guard_decoding
from vaultd.api.stats import StatsFanout
from vaultd.api.vault_service import VaultServicer
from vaultd.api.wrapping import HandlerWrapper, Registrar
from vaultd.config import NodeConfig
from vaultd.observability.health import readiness
from vaultd.tls import ServerTLS
from vaultd.v1 import auth_pb2, auth_pb2_grpc, cluster_pb2, cluster_pb2_grpc, vault_pb2, vault_pb2_grpc

MAX_RECEIVE_BYTES = 4 * 1024 * 1024
HEALTH_INTERVAL_SECONDS = 0.2
SERVICE_NAMES = (
    vault_pb2.DESCRIPTOR.services_by_name["VaultService"].full_name,
    cluster_pb2.DESCRIPTOR.services_by_name["ClusterService"].full_name,
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
)


class HealthUpdater:
    """Mirrors readiness into the health servicer for "" and each vaultd service until stopped."""

    def __init__(self, node: Any, servicer: health.HealthServicer, interval: float = HEALTH_INTERVAL_SECONDS):
        self.node = node
        self.servicer = servicer
        self.interval = interval
        self._stop = threading.Event()
        self._last: int | None = None
        self._thread = threading.Thread(target=self._run, name="vaultd-health", daemon=True)

    def start(self) -> None:
        self.update()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.servicer.enter_graceful_shutdown()

    def update(self) -> None:
        ready = readiness(self.node).ready
        status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        if status != self._last:
            for name in ("", *SERVICE_NAMES):
                self.servicer.set(name, status)
            self._last = status

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.update()


class VaultdServer:
    """The grpc.Server plus the helpers whose lifetime is tied to it (health loop, stats fan-out) and its
    TLS credentials (`tls.reload()` re-reads the certificate files; None when serving plaintext)."""

    def __init__(self, server: grpc.Server, health_updater: HealthUpdater, fanout: StatsFanout,
                 tls: ServerTLS | None) -> None:
        self.server = server
        self.health = health_updater
        self.fanout = fanout
        self.tls = tls

    def __getattr__(self, name: str) -> Any:  # grpc.Server's API (add_insecure_port, wait_for_termination...)
        return getattr(self.server, name)

    def start(self) -> None:
        self.server.start()
        self.health.start()

    def stop(self, grace: float | None) -> threading.Event:
        """Report NOT_SERVING, refuse new RPCs, let in-flight ones finish within `grace`, then clean up."""
        self.health.stop()
        event = self.server.stop(grace)
        event.wait()
        self.fanout.close()
        return event


def build_server(*, node: Any, machine: Any, stats: Any, cfg: NodeConfig,
                 wrappers: Sequence[HandlerWrapper] = ()) -> VaultdServer:
    """A server bound to cfg.grpc_addr (TLS when cfg.tls_cert is set), not yet started. `stats` may be None
    (access statistics off). Raises vaultd.tls.TLSFileError for unreadable or mismatched TLS files.

    cfg.grpc_workers threads serve at most cfg.grpc_max_concurrent_rpcs RPCs; beyond that gRPC refuses new
    ones with RESOURCE_EXHAUSTED at once, so memory stays bounded. The result behaves as a grpc.Server
    (start, stop, wait_for_termination, add_insecure_port) and also owns the health loop and the stats fan-out.
    `wrappers` (outermost first; e.g. vaultd.observability.RpcMetrics) wrap every method of every service once,
    at registration (vaultd.api.wrapping says why not interceptors); the decoding guard is always innermost,
    so the others see the status it answers.
    """
    max_value = machine.reader().limits().max_value_size
    receive = max(MAX_RECEIVE_BYTES, max_value + 64 * 1024)
    server = grpc.server(
        ThreadPoolExecutor(max_workers=cfg.grpc_workers, thread_name_prefix="vaultd-grpc"),
        options=[("grpc.max_receive_message_length", receive), ("grpc.max_send_message_length", MAX_SEND_BYTES),
                 ("grpc.so_reuseport", 0)],
        maximum_concurrent_rpcs=cfg.grpc_max_concurrent_rpcs)
    tls = ServerTLS(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca) if cfg.tls_enabled else None
    fanout = StatsFanout.from_config(machine, stats, cfg)
    # Authentication sits inside the given wrappers (metrics and the audit log see its verdict) and outside
    # the decoding guard; without auth (--insecure-no-auth, by name only) there is no such wrapper at all.
    authentication: list[HandlerWrapper] = []
    if cfg.auth_enabled:
        authentication.append(Authenticator(machine, cfg.read_root_token()).wrapper())
    registrar = Registrar(server, [*wrappers, *authentication, guard_decoding])
    vault_pb2_grpc.add_VaultServiceServicer_to_server(VaultServicer(node, machine, stats, cfg, fanout), registrar)
    cluster_pb2_grpc.add_ClusterServiceServicer_to_server(ClusterServicer(node, machine, stats, cfg, fanout),
                                                          registrar)
    auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(node, machine, stats, cfg), registrar)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, registrar)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        registrar)
    port = (server.add_secure_port(cfg.grpc_addr, tls.credentials()) if tls is not None
            else server.add_insecure_port(cfg.grpc_addr))
    if port == 0:
        fanout.close()
        raise OSError(f"cannot bind gRPC address {cfg.grpc_addr}")
    return VaultdServer(server, HealthUpdater(node, health_servicer), fanout, tls)

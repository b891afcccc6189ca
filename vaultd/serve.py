"""`vaultd serve`: compose one node process (state machine + Raft + gRPC API + metrics/health HTTP).

Why the order: logging first (everything after may log); the state machine before Raft (Raft replays into
it on the first tick); Raft before the gRPC server (servicers need the node); the HTTP endpoints last so
/readyz never answers for a half-built node. Shutdown runs in reverse: stop accepting RPCs and let in-flight
ones finish (grace period), stop Raft (final journal fsync), then close SQLite and the access statistics.

Signals: SIGTERM/SIGINT stop the node; SIGHUP runs every reload hook (the list `reload_hooks` in run(): the
TLS certificate is re-read; other parts add theirs with one `reload_hooks.append(...)`), each on its own, so
one failing hook neither stops the others nor the node.

Core dumps are disabled once the configuration is valid, before the store opens (RLIMIT_CORE=0 and
PR_SET_DUMPABLE=0, which also keeps other processes of the same user from ptrace-attaching): a dump of this
process would hold every value it served, the cluster secret and the root token.

Exit codes: 0 clean shutdown, 1 startup failure (port in use, unreadable data), 2 configuration error
(including a missing cluster secret), 70 storage failure while applying (see replication.node.exit_process).
"""

from __future__ import annotations

import ctypes
import logging
import os
import resource
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY

from vaultd import config
from vaultd.config import ConfigError, NodeConfig
from vaultd.tls import TLSFileError, load_ca_bundle, load_certificate_pair

if TYPE_CHECKING:
    from vaultd.api.wrapping import HandlerWrapper
    from vaultd.observability.audit import AuditLog

log = logging.getLogger("vaultd.serve")

EXIT_CONFIG = 2
EXIT_STARTUP = 1
NO_SECRET_MESSAGE = (
    "vaultd serve: refusing to start without a cluster secret. The Raft port authenticates and encrypts peer "
    "traffic with it (without one, anyone who can reach the port can run code on this node). Put one line of "
    "random text (at least 32 bytes) in a file readable only by vaultd and pass --cluster-secret-file FILE (or set "
    "VAULTD_CLUSTER_SECRET); use the same secret on every member. `vaultd dev` generates one for local use.")
PR_SET_DUMPABLE = 4


def disable_core_dumps() -> None:
    """No core file, and no ptrace by same-user processes; logged (not fatal) where the OS refuses."""
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError) as exc:
        log.warning("could not set RLIMIT_CORE to 0: %s", exc)
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)   # the process's own symbols, libc's prctl among them
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_DUMPABLE, 0) failed: %s", os.strerror(ctypes.get_errno()))


def check_tls_files(cfg: NodeConfig) -> None:
    """Unreadable, unparsable or mismatched TLS files are a configuration error (exit 2), found before the
    node starts rather than in the first failed handshake."""
    if cfg.tls_enabled:
        try:
            with open(cfg.tls_key, "rb") as f:   # a private key others can read is no longer private
                config.check_private_file(f.fileno(), cfg.tls_key, "--tls-key")
        except OSError as exc:
            raise ConfigError(f"cannot read TLS key {cfg.tls_key}: {exc.strerror or type(exc).__name__}") from None
        load_certificate_pair(cfg.tls_cert, cfg.tls_key)
    for path, what in ((cfg.tls_client_ca, "client CA file (--tls-client-ca)"), (cfg.tls_ca, "CA file (--tls-ca)")):
        if path:
            load_ca_bundle(path, what)


def report_insecure_modes(cfg: NodeConfig) -> None:
    """A WARNING per insecure mode at start and the vaultd_insecure_mode gauge (0 or 1 for each mode), so an
    insecure node is visible both in its log and on a dashboard."""
    from vaultd.observability.metrics import insecure_mode

    modes = {
        "plaintext": (cfg.insecure_plaintext, "INSECURE: --insecure-plaintext: the gRPC API is served without TLS; "
                      "anyone on the network path can read and change secrets in transit"),
        "no_auth": (cfg.insecure_no_auth, "INSECURE: --insecure-no-auth: gRPC calls without a token are accepted; "
                    "anyone who reaches the port can read and change every secret"),
    }
    for mode, (on, warning) in modes.items():
        insecure_mode.labels(mode=mode).set(1 if on else 0)
        if on:
            log.warning(warning)


def run_reload_hooks(hooks: Sequence[Callable[[], object]]) -> None:
    """SIGHUP: run every hook; a failing one is logged (type only: its message could quote a file's content)."""
    log.info("SIGHUP: reloading", extra={"fields": {"hooks": len(hooks)}})
    for hook in hooks:
        try:
            hook()
        except Exception as exc:  # noqa: BLE001 - a failed reload must not take the node down
            log.error("reload hook %s failed: %s", getattr(hook, "__qualname__", hook), type(exc).__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `vaultd serve ARGS` (vaultd.cli.main dispatches here)."""
    try:
        cfg = config.load(list(argv if argv is not None else sys.argv[1:]))
    except ConfigError as exc:
        print(f"vaultd serve: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return run(cfg)


def run(cfg: NodeConfig) -> int:
    """Run a node until SIGTERM/SIGINT (`vaultd dev` runs each node as its own `vaultd serve` process)."""
    try:
        cfg.validate()
        cfg.validate_security()
        secret = cfg.read_secret()
        if secret:
            config.check_secret_strength(secret, "the cluster secret")
        cfg.read_root_token()   # owner-only and long enough, or exit 2 now rather than at the first call
        check_tls_files(cfg)
    except (ConfigError, TLSFileError) as exc:
        print(f"vaultd serve: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if not secret:
        print(NO_SECRET_MESSAGE, file=sys.stderr)
        return EXIT_CONFIG

    from vaultd.observability import NodeCollector, RpcMetrics, setup_logging, start_http_server

    disable_core_dumps()
    setup_logging(cfg.node_id, cfg.log_format, cfg.log_level)
    report_insecure_modes(cfg)
    reload_hooks: list[Callable[[], object]] = []
    if threading.current_thread() is threading.main_thread():   # before the node starts: SIGHUP's default kills
        signal.signal(signal.SIGHUP, lambda _signum, _frame: run_reload_hooks(reload_hooks))
    # Databases, journal and snapshots hold every secret: whatever this process creates is owner-only.
    os.umask(0o077)
    try:
        audit = _open_audit_log(cfg)
    except OSError as exc:
        log.error("startup failed: cannot open the audit log %s: %s", cfg.audit_log, exc.strerror or exc)
        return EXIT_STARTUP
    try:
        node_parts = _start_node(cfg)
    except Exception as exc:
        log.error("startup failed: %s: %s", type(exc).__name__, exc)
        if audit is not None:
            audit.close()
        return EXIT_STARTUP
    machine, stats, node = node_parts

    if audit is not None:
        reload_hooks.append(audit.reopen)   # logrotate renamed the file: the next line goes to a new one
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _signum, _frame: stop.set())

    from vaultd.api.server import build_server

    collector = NodeCollector(node, machine, db_path=cfg.db_path, node_id=cfg.node_id).register(REGISTRY)
    server = None
    http = None
    try:
        # The audit log sits inside RpcMetrics and outside authentication (which fills in its Caller).
        wrappers: list[HandlerWrapper] = [RpcMetrics(slow_request_seconds=cfg.slow_request_seconds)]
        if audit is not None:
            wrappers.append(audit)
        server = build_server(node=node, machine=machine, stats=stats, cfg=cfg, wrappers=wrappers)
        if server.tls is not None:
            reload_hooks.append(server.tls.reload)
        server.start()
        http = start_http_server(cfg.metrics_addr, node) if cfg.metrics_addr else None
    except Exception as exc:
        log.error("startup failed: %s: %s", type(exc).__name__, exc)
        stop.set()
        code = EXIT_STARTUP
    else:
        code = 0
        log.info("node serving", extra={"fields": {"grpc_addr": cfg.grpc_addr, "raft_addr": cfg.raft_addr,
                                                   "metrics_addr": cfg.metrics_addr, "data_dir": cfg.data_dir}})
    stop.wait()
    log.info("shutting down", extra={"fields": {"grace_seconds": cfg.shutdown_grace_seconds}})
    if server is not None:
        server.stop(cfg.shutdown_grace_seconds).wait(cfg.shutdown_grace_seconds + 1)
    node.stop()
    if http is not None:
        http.stop()
    if audit is not None:
        audit.close()  # after the gRPC server drained: every finished RPC has its line
    collector.unregister()
    if stats is not None:
        stats.close()
    machine.close()
    log.info("stopped")
    for handler in logging.getLogger().handlers:
        handler.flush()
    return code


def _open_audit_log(cfg: NodeConfig) -> AuditLog | None:
    """The audit log when --audit-log is set; a node asked to audit does not serve without its file."""
    if not cfg.audit_log:
        return None
    from vaultd.api.targets import keys_of, vaults_of
    from vaultd.observability.audit import AuditLog

    return AuditLog(cfg.audit_log, cfg.node_id, vaults_of, keys_of)


def _start_node(cfg: NodeConfig) -> tuple[object, object, object]:
    """State machine, access statistics and a started ReplicatedNode."""
    from vaultd.replication import ReplicatedNode
    from vaultd.store.machine import StateMachine
    from vaultd.store.results import Limits
    from vaultd.store.stats import AccessStats

    os.makedirs(cfg.data_dir, exist_ok=True)
    limits = cfg.bootstrap_limits()
    machine = StateMachine(cfg.db_path, bootstrap_limits=Limits(**limits) if limits else None)
    try:
        stats = AccessStats(cfg.stats_path)
    except Exception:
        machine.close()
        raise
    try:   # a failed start closes what it opened (the store, the statistics thread) before reporting
        node = ReplicatedNode(cfg, machine)
        node.start()
    except Exception:
        stats.close()
        machine.close()
        raise
    return machine, stats, node


if __name__ == "__main__":
    raise SystemExit(main())

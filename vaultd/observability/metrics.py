"""Every Prometheus metric vaultd exports, defined once so names and labels stay consistent.

Layers import the objects they update; nothing here computes anything per scrape from the database.
Histograms and the gRPC series are vaultd's own lean kind (histograms.py, rpc_counters.py): they are
updated on every request. Counters and gauges are prometheus_client's.
Gauges whose value lives elsewhere (store totals, Raft indexes) are filled by collectors registered in
`vaultd.observability.collectors` from in-memory state.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Info, disable_created_metrics

from vaultd import __version__
from vaultd.observability.histograms import Histogram
from vaultd.observability.rpc_counters import RpcCounters

# In the 0.0.4 text format every counter and histogram would also export a `<name>_created` gauge series:
# twice the series for no operational value. Process-wide, so it is set before any metric is created.
disable_created_metrics()

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

registry: CollectorRegistry = REGISTRY

# --- gRPC (names of the common go-grpc-prometheus / py-grpc-prometheus interceptors) ---
# grpc_server_started_total, grpc_server_handled_total{grpc_code}, grpc_server_handling_seconds, each with
# grpc_type, grpc_service, grpc_method: updated on every RPC, so kept as plain counters (rpc_counters.py).
grpc_server = RpcCounters(buckets=_LATENCY_BUCKETS)
registry.register(grpc_server)

# --- store ---
store_apply_seconds = Histogram(
    "vaultd_store_apply_seconds", "Time to apply one log entry (a batch of commands) to SQLite.",
    buckets=_LATENCY_BUCKETS)
store_get_seconds = Histogram("vaultd_store_get_seconds", "Point read latency.", buckets=_LATENCY_BUCKETS)
store_scan_seconds = Histogram("vaultd_store_scan_seconds", "Scan page read latency.", buckets=_LATENCY_BUCKETS)
store_commit_seconds = Histogram(
    "vaultd_store_commit_seconds", "Time from proposing a write to its result on this node.",
    buckets=_LATENCY_BUCKETS)

# --- raft ---
raft_leader_changes_seen_total = Counter(
    "vaultd_raft_leader_changes_seen_total", "Leader changes observed by this node.")
raft_proposals_committed_total = Counter(
    "vaultd_raft_proposals_committed_total", "Commands committed and applied through proposals from this node.")
raft_proposals_failed_total = Counter(
    "vaultd_raft_proposals_failed_total", "Proposals from this node that failed, by reason.", ["reason"])
raft_batch_size = Histogram(
    "vaultd_raft_batch_size", "Commands per proposed log entry (group commit).", buckets=_BATCH_BUCKETS)
raft_apply_seconds = Histogram(
    "vaultd_raft_apply_seconds", "Time the Raft thread spends applying one committed entry.",
    buckets=_LATENCY_BUCKETS)
raft_journal_fsync_seconds = Histogram(
    "vaultd_raft_journal_fsync_seconds", "Duration of one journal flush+fsync.", buckets=_LATENCY_BUCKETS)
raft_snapshot_seconds = Histogram(
    "vaultd_raft_snapshot_seconds", "Duration of taking a snapshot.", buckets=_LATENCY_BUCKETS)
raft_snapshot_size_bytes = Gauge("vaultd_raft_snapshot_size_bytes", "Size of the latest snapshot file.")
raft_snapshots_failed_total = Counter("vaultd_raft_snapshots_failed_total", "Snapshots that failed.")
raft_read_barriers_total = Counter(
    "vaultd_raft_read_barriers_total", "Linearizable read barriers completed, by outcome.", ["outcome"])
raft_read_barrier_seconds = Histogram(
    "vaultd_raft_read_barrier_seconds", "Latency of linearizable read barriers.", buckets=_LATENCY_BUCKETS)
raft_connections_rejected_total = Counter(
    "vaultd_raft_connections_rejected_total",
    "Raft-port connections closed by the transport's hardening, by reason (frame_too_large, bad_frame, "
    "handshake_timeout, first_byte_timeout, too_many_pending, evicted, rate_limited, tls_handshake, tls_identity, "
    "unknown_peer, utility_refused).", ["reason"])

# --- observability itself ---
collector_errors_total = Counter(
    "vaultd_collector_errors_total", "Scrape-time collection sections that failed, by section.", ["section"])
audit_write_errors_total = Counter(
    "vaultd_audit_write_errors_total", "Audit log lines (or reopens) that could not be written.")

# --- security ---
insecure_mode = Gauge(
    "vaultd_insecure_mode", "1 when the node runs an insecure mode asked for by name (plaintext: gRPC without "
    "TLS; no_auth: calls without a token are accepted), else 0.", ["mode"])

# --- process ---
build_info = Info("vaultd_build", "vaultd build information.")
build_info.info({"version": __version__})

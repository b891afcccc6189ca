"""Metrics, health endpoints and logging shared by the layers above the (pure) store.

Entry points for `vaultd.serve` (see DESIGN.md for the exact wiring):
setup_logging, RpcMetrics, NodeCollector, start_http_server / ObservabilityServer, readiness.
"""

from __future__ import annotations

from vaultd.observability.collectors import NodeCollector
from vaultd.observability.endpoints import ObservabilityServer, start_http_server
from vaultd.observability.health import Readiness, readiness
from vaultd.observability.logs import (event, log_leader_change, log_membership_change, log_slow_request,
                                       log_snapshot, setup_logging)
from vaultd.observability.rpc_metrics import RpcMetrics

__all__ = [
    "NodeCollector", "ObservabilityServer", "Readiness", "RpcMetrics", "event", "log_leader_change",
    "log_membership_change", "log_slow_request", "log_snapshot", "readiness", "setup_logging",
    "start_http_server",
]

"""`vaultd dev`: a local 3-node cluster on loopback in one command, for trying vaultd and for development.

Each node is a real `vaultd serve` process (the same code operators run), with data under
<data-dir>/<node-id>/ and its log in <data-dir>/<node-id>/node.log. The first run writes <data-dir>/dev.json
(node ids and ports) and a random cluster secret (<data-dir>/cluster-secret, mode 0600); later runs reuse
both, because Raft membership names fixed addresses: restarting `vaultd dev` brings the same cluster back
with its data. Ports default to fixed ones (gRPC 7101-7103) so the CLI's default endpoints just work;
`--free-ports` picks unused ones instead (tests, or when the defaults are taken).

Runs until Ctrl-C or SIGTERM, then stops every node with SIGTERM (SIGKILL after a grace period).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

HOST = "127.0.0.1"
NODE_IDS = ("n1", "n2", "n3")
DEV_GRPC_PORTS = (7101, 7102, 7103)
DEV_RAFT_PORTS = (7201, 7202, 7203)
DEV_METRICS_PORTS = (7301, 7302, 7303)
DEFAULT_ENDPOINTS = tuple(f"{HOST}:{p}" for p in DEV_GRPC_PORTS)
DEFAULT_DATA_DIR = ".vaultd-dev"
LAYOUT_FILE = "dev.json"
SECRET_FILE = "cluster-secret"
STOP_GRACE_SECONDS = 15.0


@dataclass(frozen=True)
class DevNode:
    node_id: str
    grpc_port: int
    raft_port: int
    metrics_port: int

    @property
    def grpc_addr(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    @property
    def raft_addr(self) -> str:
        return f"{HOST}:{self.raft_port}"

    @property
    def metrics_addr(self) -> str:
        return f"{HOST}:{self.metrics_port}"


def free_ports(count: int) -> list[int]:
    """Distinct ports the OS reports free now (bound together so none repeats)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def load_or_create_layout(data_dir: Path, use_free_ports: bool) -> list[DevNode]:
    """The cluster's node ids and ports: from dev.json if this data dir was used before, else new."""
    path = data_dir / LAYOUT_FILE
    if path.exists():
        return [DevNode(**n) for n in json.loads(path.read_text())["nodes"]]
    if use_free_ports:
        ports = free_ports(3 * len(NODE_IDS))
        grpc_ports, raft_ports, metrics_ports = ports[0:3], ports[3:6], ports[6:9]
    else:
        grpc_ports, raft_ports, metrics_ports = list(DEV_GRPC_PORTS), list(DEV_RAFT_PORTS), list(DEV_METRICS_PORTS)
    nodes = [DevNode(n, g, r, m) for n, g, r, m in zip(NODE_IDS, grpc_ports, raft_ports, metrics_ports)]
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"nodes": [asdict(n) for n in nodes]}, indent=2) + "\n")
    return nodes


def ensure_secret(data_dir: Path) -> Path:
    """A random cluster secret, created once with mode 0600 (the Raft port's authentication key)."""
    path = data_dir / SECRET_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    return path


def serve_command(node: DevNode, nodes: list[DevNode], data_dir: Path, secret: Path,
                  unsafe_no_fsync: bool) -> list[str]:
    cmd = [sys.executable, "-m", "vaultd.cli.main", "serve", "--node-id", node.node_id,
           "--data-dir", str(data_dir / node.node_id), "--raft-addr", node.raft_addr,
           "--grpc-addr", node.grpc_addr, "--metrics-addr", node.metrics_addr,
           "--cluster-secret-file", str(secret), "--insecure-plaintext", "--insecure-no-auth"]
    for peer in nodes:
        if peer.node_id != node.node_id:
            cmd += ["--peer", peer.raft_addr]
    if unsafe_no_fsync:
        cmd.append("--unsafe-no-fsync")
    return cmd


class _Stop(Exception):
    """Raised in the main thread by SIGTERM/SIGINT to leave the wait loop."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop()


def _is_serving(endpoint: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(endpoint) as channel:
        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1.0)
        except grpc.RpcError:
            return False
    return resp.status == health_pb2.HealthCheckResponse.SERVING


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_all(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM every node, wait for all together, SIGKILL whatever outlives the grace period."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for proc in procs.values():
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vaultd dev", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help=f"default ./{DEFAULT_DATA_DIR}")
    parser.add_argument("--free-ports", action="store_true",
                        help="pick unused ports instead of the defaults (first run of a data dir only)")
    parser.add_argument("--unsafe-no-fsync", action="store_true", help="pass --unsafe-no-fsync to the nodes")
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="seconds to wait for a ready cluster")
    args = parser.parse_args(argv)

    data_dir = Path(args.data_dir).resolve()
    nodes = load_or_create_layout(data_dir, args.free_ports)
    secret = ensure_secret(data_dir)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for node in nodes:
            node_dir = data_dir / node.node_id
            node_dir.mkdir(parents=True, exist_ok=True)
            with open(node_dir / "node.log", "ab") as log:
                # A session of its own: a terminal's Ctrl-C reaches only us, and we stop the nodes in order.
                procs[node.node_id] = subprocess.Popen(
                    serve_command(node, nodes, data_dir, secret, args.unsafe_no_fsync),
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        print(f"vaultd dev: starting {len(nodes)} nodes, data in {data_dir}", flush=True)
        if not _wait_ready(nodes, procs, data_dir, args.ready_timeout):
            return 1
        endpoints = ",".join(n.grpc_addr for n in nodes)
        print(f"vaultd dev: cluster ready\n"
              f"  endpoints: {endpoints}\n"
              + "".join(f"  {n.node_id}: grpc {n.grpc_addr}  raft {n.raft_addr}  "
                        f"metrics http://{n.metrics_addr}/metrics  log {data_dir / n.node_id / 'node.log'}\n"
                        for n in nodes)
              + f"try:\n  export VAULTD_ENDPOINTS={endpoints}\n"
              f"  vaultd key put demo greeting hello && vaultd key get demo greeting --reveal\n"
              f"Ctrl-C stops the cluster; running `vaultd dev` again with the same --data-dir resumes it.",
              flush=True)
        _watch(procs)
    except _Stop:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("vaultd dev: stopping nodes", flush=True)
        stop_all(procs)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("vaultd dev: stopped", flush=True)
    return 0


def _wait_ready(nodes: list[DevNode], procs: dict[str, subprocess.Popen[bytes]], data_dir: Path,
                timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    pending = {n.node_id: n for n in nodes}
    while pending:
        for node_id, node in list(pending.items()):
            code = procs[node_id].poll()
            if code is not None:
                print(f"vaultd dev: node {node_id} exited with code {code}; its log ends with:\n"
                      f"{_log_tail(data_dir / node_id / 'node.log')}", file=sys.stderr, flush=True)
                return False
            if _is_serving(node.grpc_addr):
                del pending[node_id]
        if pending and time.monotonic() > deadline:
            print(f"vaultd dev: nodes {sorted(pending)} not ready after {timeout:.0f}s; see their node.log",
                  file=sys.stderr, flush=True)
            return False
        if pending:
            time.sleep(0.2)
    return True


def _watch(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """Wait for a signal, reporting (once) any node that exits on its own; the others keep serving."""
    reported: set[str] = set()
    while True:
        for node_id, proc in procs.items():
            code = proc.poll()
            if code is not None and node_id not in reported:
                reported.add(node_id)
                print(f"vaultd dev: node {node_id} exited with code {code}", file=sys.stderr, flush=True)
        if len(reported) == len(procs):
            return
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())

"""`vaultd dev`: a local 3-node cluster on loopback in one command, for trying vaultd and for development.

Each node is a real `vaultd serve` process (the same code operators run), with data under
<data-dir>/<node-id>/ and its log in <data-dir>/<node-id>/node.log (mode 0600; the data dir is 0700). The
first run writes <data-dir>/dev.json (node ids and ports), a random cluster secret (<data-dir>/cluster-secret)
and a random root token (<data-dir>/root-token), both mode 0600; later runs reuse them, because Raft
membership names fixed addresses: restarting `vaultd dev` brings the same cluster back with its data. Ports
default to fixed ones (gRPC 7101-7103) so the CLI's default endpoints just work; `--free-ports` picks unused
ones instead (tests, or when the defaults are taken).

The cluster runs as production does, with TLS and authentication: every start issues a fresh throwaway CA
and certificates under <data-dir>/tls/ (ca.crt, a certificate per node for 127.0.0.1 and localhost, and
client.crt/client.key; the CA's key is never written, so nothing else can be signed with it). `--mtls` also
requires client certificates. The printed `export` lines point the CLI and VaultClient.from_env() at the CA,
the root token and (with --mtls) the client certificate.

Runs until Ctrl-C or SIGTERM, then stops every node with SIGTERM (SIGKILL after a grace period).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
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
TOKEN_FILE = "root-token"
TLS_DIR = "tls"
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
    path.write_text(json.dumps({"nodes": [asdict(n) for n in nodes]}, indent=2) + "\n")
    return nodes


def private_dir(path: Path) -> Path:
    """`path` created if missing and made 0700: it holds databases, keys and tokens."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def ensure_random_file(path: Path) -> Path:
    """A random line (cluster secret, root token), created once with mode 0600."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    return path


@dataclass(frozen=True)
class DevPKI:
    """Paths of the files `issue_pki` writes."""

    ca: Path
    client_cert: Path
    client_key: Path
    tls_dir: Path

    def node_cert(self, node_id: str) -> tuple[Path, Path]:
        return self.tls_dir / f"{node_id}.crt", self.tls_dir / f"{node_id}.key"


def issue_pki(data_dir: Path, nodes: list[DevNode]) -> DevPKI:
    """A fresh throwaway CA and its certificates, every start (nothing to expire or to keep a CA key for)."""
    from vaultd.tls import CertificateAuthority, write_private

    tls_dir = private_dir(data_dir / TLS_DIR)
    ca = CertificateAuthority("vaultd dev CA")
    pki = DevPKI(tls_dir / "ca.crt", tls_dir / "client.crt", tls_dir / "client.key", tls_dir)
    for node in nodes:
        ca.issue(node.node_id).write(*pki.node_cert(node.node_id))
    ca.issue("vaultd dev client").write(pki.client_cert, pki.client_key)
    write_private(pki.ca, ca.cert_pem)
    return pki


def serve_command(node: DevNode, nodes: list[DevNode], data_dir: Path, secret: Path, pki: DevPKI,
                  token: Path, unsafe_no_fsync: bool, mtls: bool = False) -> list[str]:
    cert, key = pki.node_cert(node.node_id)
    cmd = [sys.executable, "-m", "vaultd.cli.main", "serve", "--node-id", node.node_id,
           "--data-dir", str(data_dir / node.node_id), "--raft-addr", node.raft_addr,
           "--grpc-addr", node.grpc_addr, "--metrics-addr", node.metrics_addr,
           "--cluster-secret-file", str(secret), "--tls-cert", str(cert), "--tls-key", str(key),
           "--tls-ca", str(pki.ca), "--root-token-file", str(token)]
    if mtls:
        cmd += ["--tls-client-ca", str(pki.ca)]
    for peer in nodes:
        if peer.node_id != node.node_id:
            cmd += ["--peer", peer.raft_addr]
    if unsafe_no_fsync:
        cmd.append("--unsafe-no-fsync")
    return cmd


def env_lines(nodes: list[DevNode], pki: DevPKI, token: Path, mtls: bool) -> list[str]:
    """The shell lines that point the CLI and VaultClient.from_env() at this cluster (paths shell-quoted)."""
    values = {"VAULTD_ENDPOINTS": ",".join(n.grpc_addr for n in nodes), "VAULTD_CA_FILE": str(pki.ca),
              "VAULTD_TOKEN_FILE": str(token)}
    if mtls:
        values.update(VAULTD_CERT_FILE=str(pki.client_cert), VAULTD_KEY_FILE=str(pki.client_key))
    return [f"export {name}={shlex.quote(value)}" for name, value in values.items()]


class _Stop(Exception):
    """Raised in the main thread by SIGTERM/SIGINT to leave the wait loop."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop()


def _is_serving(endpoint: str, pki: DevPKI, token: Path) -> bool:
    """Health through the same TLS and token a client uses (so "ready" also proves the certificates work)."""
    from vaultd.client import VaultClient, VaultError, read_token_file

    with VaultClient([endpoint], ca_file=str(pki.ca), cert_file=str(pki.client_cert),
                     key_file=str(pki.client_key), token=read_token_file(str(token))) as client:
        try:
            return client.health(timeout=1.0) == "SERVING"
        except VaultError:
            return False


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
    parser.add_argument("--mtls", action="store_true",
                        help="also require client certificates (the printed lines add VAULTD_CERT_FILE/KEY_FILE)")
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="seconds to wait for a ready cluster")
    args = parser.parse_args(argv)

    data_dir = private_dir(Path(args.data_dir).resolve())
    nodes = load_or_create_layout(data_dir, args.free_ports)
    secret = ensure_random_file(data_dir / SECRET_FILE)
    token = ensure_random_file(data_dir / TOKEN_FILE)
    pki = issue_pki(data_dir, nodes)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for node in nodes:
            node_dir = private_dir(data_dir / node.node_id)
            log_fd = os.open(node_dir / "node.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.fchmod(log_fd, 0o600)   # also a log created by an older vaultd dev
            with os.fdopen(log_fd, "ab") as log:
                # A session of its own: a terminal's Ctrl-C reaches only us, and we stop the nodes in order.
                procs[node.node_id] = subprocess.Popen(
                    serve_command(node, nodes, data_dir, secret, pki, token, args.unsafe_no_fsync, args.mtls),
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        print(f"vaultd dev: starting {len(nodes)} nodes, data in {data_dir}", flush=True)
        if not _wait_ready(nodes, procs, data_dir, args.ready_timeout, pki, token):
            return 1
        endpoints = ",".join(n.grpc_addr for n in nodes)
        print(f"vaultd dev: cluster ready (TLS{' with client certificates' if args.mtls else ''}, "
              f"token authentication)\n"
              f"  endpoints: {endpoints}\n"
              + "".join(f"  {n.node_id}: grpc {n.grpc_addr}  raft {n.raft_addr}  "
                        f"metrics http://{n.metrics_addr}/metrics  log {data_dir / n.node_id / 'node.log'}\n"
                        for n in nodes)
              + f"  CA certificate {pki.ca}, root token in {token}\n"
              "paste into the shell that runs the CLI or the Python client (VaultClient.from_env()):\n"
              + "".join(f"  {line}\n" for line in env_lines(nodes, pki, token, args.mtls))
              + "try:\n  vaultd key put demo greeting hello && vaultd key get demo greeting --reveal\n"
              "Ctrl-C stops the cluster; running `vaultd dev` again with the same --data-dir resumes it.",
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
                timeout: float, pki: DevPKI, token: Path) -> bool:
    deadline = time.monotonic() + timeout
    pending = {n.node_id: n for n in nodes}
    while pending:
        for node_id, node in list(pending.items()):
            code = procs[node_id].poll()
            if code is not None:
                print(f"vaultd dev: node {node_id} exited with code {code}; its log ends with:\n"
                      f"{_log_tail(data_dir / node_id / 'node.log')}", file=sys.stderr, flush=True)
                return False
            if _is_serving(node.grpc_addr, pki, token):
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

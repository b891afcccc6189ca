"""Real-process vaultd clusters for end-to-end tests (used by every layer's tests).

Each node is `python -m vaultd.serve ...` on 127.0.0.1 free ports, with its data directory, a shared
cluster-secret file and a log file (stdout+stderr, appended across restarts) under the cluster's base dir.
Clusters are secure by default, as `serve` is: a throwaway CA (base_dir/tls/ca.crt), a certificate per node
(tls/<node_id>.crt, SANs 127.0.0.1 and localhost) and a root token file (base_dir/root-token, 0600); nodes
run with --tls-cert/--tls-key/--tls-ca/--root-token-file, and `client()` / `channel()` / `call_metadata()`
use the CA and the token. `mtls=True` also requires client certificates (tls/client.crt; `client()` presents
it); `secure=False` runs the nodes with --insecure-plaintext --insecure-no-auth.
Everything is bounded in time; `close()` (also the context manager exit and the fixtures' teardown) always
resumes stopped nodes and kills every process it started.

Stable API (other engineers' tests rely on it; extend, do not change):

    with Cluster(tmp_path, size=3) as cluster:          # or the `cluster3` / `cluster_factory` fixtures
        cluster.start()                                   # starts all nodes, waits until every node is ready
        n1 = cluster.nodes[0]                             # NodeProc: node_id, grpc_addr, raft_addr,
                                                          #   metrics_addr, data_dir, log_path, pid
        cluster.endpoints()                               # gRPC addresses of running nodes
        cluster.client()                                  # vaultd.client.VaultClient over endpoints()
        leader = cluster.wait_leader()                    # NodeProc that reports itself leader
        cluster.followers()                               # running nodes that are not the leader
        cluster.kill(n1)                                  # SIGKILL (kill -9), waits for exit
        cluster.stop(n1)                                  # SIGTERM, waits, returns the exit code
        cluster.pause(n1); cluster.resume(n1)             # SIGSTOP / SIGCONT
        cluster.restart(n1)                               # start again on the same data dir and ports
        cluster.wipe(n1)                                  # delete its data dir (node must be down)
        n4 = cluster.add_node()                           # start a new node (peers = current members);
                                                          #   the test then calls AddMember through the API
        cluster.wait_ready([n1], timeout=30)
        cluster.logs()                                    # {node_id: log text} for grepping (secrets!)
        cluster.metrics(n1)                               # /metrics text ; cluster.metric(n1, name) -> float
        cluster.channel(n1)                               # a raw grpc channel to n1 (TLS when secure)
        cluster.call_metadata()                           # [("authorization", "Bearer <root token>")] or []
        cluster.ca_file, cluster.token, cluster.client_cert  # the PKI (None / "" when not secure)

Readiness is the node's own /readyz (HTTP 200 when it has a leader and has caught up), the same definition
as gRPC health. Node flags can be extended per cluster (`extra_args`) or per node (`add_node(extra_args=)`).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_READY_TIMEOUT = 30.0

_port_lock = threading.Lock()
_ports_handed_out: set[int] = set()


def free_port() -> int:
    """A currently free 127.0.0.1 TCP port not handed out before in this process."""
    with _port_lock:
        for _ in range(200):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in _ports_handed_out:
                _ports_handed_out.add(port)
                return port
    raise RuntimeError("no free port found")


@dataclass
class NodeProc:
    node_id: str
    raft_addr: str
    grpc_addr: str
    metrics_addr: str
    data_dir: Path
    log_path: Path
    extra_args: list[str] = field(default_factory=list)
    peers: list[str] = field(default_factory=list)      # "id=host:port" of the other members at creation
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def peer_spec(self) -> str:
        return f"{self.node_id}={self.raft_addr}"

    def read_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def http_get(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        """(status, body) of GET http://metrics_addr/path; (0, error) when it cannot connect."""
        try:
            with urllib.request.urlopen(f"http://{self.metrics_addr}{path}", timeout=timeout) as resp:
                return resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")
        except (OSError, urllib.error.URLError) as exc:
            return 0, str(exc)

    def is_ready(self) -> bool:
        return self.is_running() and not self.paused and self.http_get("/readyz", timeout=1.0)[0] == 200


class Cluster:
    """A set of node processes under `base_dir`. Not thread-safe: drive it from the test thread."""

    def __init__(self, base_dir: str | os.PathLike[str], size: int = 3, *, fsync: bool = True,
                 extra_args: Sequence[str] = (), env: dict[str, str] | None = None,
                 config_toml: str | None = None, secret: str | None = None, secure: bool = True,
                 mtls: bool = False) -> None:
        self.base_dir = Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.secure = secure
        self.mtls = mtls and secure
        self.tls_dir = self.base_dir / "tls"
        self._ca: Any = None
        self.ca_file: Path | None = None
        self.client_cert: tuple[Path, Path] | None = None     # (cert, key); presented by client() when mtls
        self.token = ""
        self.token_file = self.base_dir / "root-token"
        if secure:
            from vaultd.tls import CertificateAuthority, write_private

            self.tls_dir.mkdir(exist_ok=True)
            self._ca = CertificateAuthority("vaultd test CA")
            self.ca_file = self.tls_dir / "ca.crt"
            self.ca_file.write_bytes(self._ca.cert_pem)
            self.client_cert = (self.tls_dir / "client.crt", self.tls_dir / "client.key")
            self._ca.issue("test-client").write(*self.client_cert)
            self.token = secrets.token_urlsafe(32)
            write_private(self.token_file, (self.token + "\n").encode())
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.secret = secret or secrets.token_urlsafe(32)
        self.secret_file = self.base_dir / "cluster-secret"
        self.secret_file.write_text(self.secret + "\n")
        self.secret_file.chmod(0o600)
        self.config_file: Path | None = None
        if config_toml is not None:
            self.config_file = self.base_dir / "vaultd.toml"
            self.config_file.write_text(config_toml)
        self.nodes: list[NodeProc] = []
        self._clients: list[Any] = []
        for _ in range(size):
            self._new_node()
        for node in self.nodes:
            node.peers = [n.peer_spec for n in self.nodes if n is not node]

    # --- construction ------------------------------------------------------------------------------------
    def _new_node(self, extra_args: Sequence[str] = ()) -> NodeProc:
        node_id = f"n{len(self.nodes) + 1}"
        node = NodeProc(node_id=node_id, raft_addr=f"127.0.0.1:{free_port()}",
                        grpc_addr=f"127.0.0.1:{free_port()}", metrics_addr=f"127.0.0.1:{free_port()}",
                        data_dir=self.base_dir / node_id, log_path=self.base_dir / f"{node_id}.log",
                        extra_args=list(extra_args))
        if self._ca is not None:
            self._ca.issue(node_id).write(*self.node_cert(node))
        self.nodes.append(node)
        return node

    def node_cert(self, node: NodeProc) -> tuple[Path, Path]:
        """(certificate, key) paths `node` serves with (replace their content and SIGHUP to rotate)."""
        return self.tls_dir / f"{node.node_id}.crt", self.tls_dir / f"{node.node_id}.key"

    def command(self, node: NodeProc) -> list[str]:
        """The exact command line used to start `node`."""
        cmd = [sys.executable, "-m", "vaultd.serve", "--node-id", node.node_id, "--data-dir", str(node.data_dir),
               "--raft-addr", node.raft_addr, "--grpc-addr", node.grpc_addr, "--metrics-addr", node.metrics_addr,
               "--cluster-secret-file", str(self.secret_file)]
        for peer in node.peers:
            cmd += ["--peer", peer]
        if self.config_file is not None:
            cmd += ["--config", str(self.config_file)]
        if not self.fsync:
            cmd.append("--unsafe-no-fsync")
        if self.secure:
            cert, key = self.node_cert(node)
            cmd += ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(self.ca_file),
                    "--root-token-file", str(self.token_file)]
            if self.mtls:
                cmd += ["--tls-client-ca", str(self.ca_file)]
        else:
            cmd += ["--insecure-plaintext", "--insecure-no-auth"]
        return cmd + self.extra_args + node.extra_args

    # --- lifecycle ---------------------------------------------------------------------------------------
    def start(self, wait: bool = True, timeout: float = DEFAULT_READY_TIMEOUT) -> Cluster:
        return self.start_nodes(self.nodes, wait=wait, timeout=timeout)

    def start_nodes(self, nodes: Iterable[NodeProc], wait: bool = True,
                    timeout: float = DEFAULT_READY_TIMEOUT) -> Cluster:
        """Start the given nodes that are not running (e.g. one node alone, which can never elect a leader)."""
        targets = list(nodes)
        for node in targets:
            if not node.is_running():
                self._spawn(node)
        if wait:
            self.wait_ready(targets, timeout=timeout)
        return self

    def _spawn(self, node: NodeProc) -> None:
        env = {**os.environ, **self.env}
        env.pop("VAULTD_CLUSTER_SECRET", None)
        env["PYTHONUNBUFFERED"] = "1"
        with open(node.log_path, "ab") as log:
            log.write(f"--- start {' '.join(self.command(node)[1:])}\n".encode())
            log.flush()
            # Through tests.pdeathsig: the node dies with the test process (no orphans after a crash).
            wrapped = [sys.executable, "-m", "tests.pdeathsig", str(os.getpid()), *self.command(node)]
            node.proc = subprocess.Popen(wrapped, cwd=str(REPO), env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        node.paused = False

    def running(self) -> list[NodeProc]:
        return [n for n in self.nodes if n.is_running()]

    def node(self, node_id: str) -> NodeProc:
        return next(n for n in self.nodes if n.node_id == node_id)

    def endpoints(self, nodes: Iterable[NodeProc] | None = None) -> list[str]:
        return [n.grpc_addr for n in (nodes if nodes is not None else self.running())]

    def wait_ready(self, nodes: Iterable[NodeProc] | None = None, timeout: float = DEFAULT_READY_TIMEOUT) -> None:
        """Wait until every given (default: running) node answers /readyz 200; raise with log tails if not."""
        targets = list(nodes if nodes is not None else self.running())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in targets:
                if not n.is_running():
                    raise RuntimeError(f"node {n.node_id} exited with {n.proc.returncode if n.proc else None}:\n"
                                       + n.read_log()[-3000:])
            if all(n.is_ready() for n in targets):
                return
            time.sleep(0.1)
        not_ready = [n for n in targets if not n.is_ready()]
        raise TimeoutError("nodes not ready after %.0fs: %s\n%s" % (
            timeout, [n.node_id for n in not_ready],
            "\n".join(f"--- {n.node_id}\n{n.read_log()[-2000:]}" for n in not_ready)))

    def metrics(self, node: NodeProc) -> str:
        status, body = node.http_get("/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics of {node.node_id}: {status} {body[:200]}")
        return body

    def metric(self, node: NodeProc, name: str, labels: str = "") -> float | None:
        """Value of one sample `name{labels}` (labels as written in the exposition, e.g. 'peer="n2"')."""
        status, body = node.http_get("/metrics")
        if status != 200:
            return None
        pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else r"(?:\{\})?") + r" (\S+)"
        match = re.search(r"^" + pattern + r"$", body, re.M)
        return float(match.group(1)) if match else None

    def leader(self) -> NodeProc | None:
        """The running, unpaused node whose vaultd_raft_is_leader is 1 (None if none right now)."""
        for n in self.running():
            if not n.paused and self.metric(n, "vaultd_raft_is_leader") == 1.0:
                return n
        return None

    def wait_leader(self, timeout: float = 15.0, exclude: Iterable[NodeProc] = ()) -> NodeProc:
        excluded = {n.node_id for n in exclude}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in self.running():
                if n.node_id not in excluded and not n.paused and self.metric(n, "vaultd_raft_is_leader") == 1.0:
                    return n
            time.sleep(0.1)
        raise TimeoutError(f"no leader (excluding {sorted(excluded)}) within {timeout}s")

    def followers(self) -> list[NodeProc]:
        lead = self.wait_leader()
        return [n for n in self.running() if n is not lead]

    def kill(self, node: NodeProc, sig: int = signal.SIGKILL) -> None:
        if node.proc is None:
            return
        if node.is_running():
            if node.paused:
                os.kill(node.proc.pid, signal.SIGCONT)
            node.proc.send_signal(sig)
        node.proc.wait(timeout=30)
        node.paused = False

    def stop(self, node: NodeProc, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; returns the exit code (SIGKILL after `timeout`, then the code is negative)."""
        if node.proc is None:
            return None
        if node.is_running():
            if node.paused:
                self.resume(node)
            node.proc.send_signal(signal.SIGTERM)
            try:
                node.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait(timeout=10)
        return node.proc.returncode

    def pause(self, node: NodeProc) -> None:
        assert node.proc is not None and node.is_running()
        os.kill(node.proc.pid, signal.SIGSTOP)
        node.paused = True

    def resume(self, node: NodeProc) -> None:
        if node.proc is not None and node.is_running():
            os.kill(node.proc.pid, signal.SIGCONT)
        node.paused = False

    def restart(self, node: NodeProc, wait: bool = True, timeout: float = DEFAULT_READY_TIMEOUT) -> None:
        if node.is_running():
            self.stop(node)
        self._spawn(node)
        if wait:
            self.wait_ready([node], timeout=timeout)

    def wipe(self, node: NodeProc) -> None:
        assert not node.is_running(), "stop or kill the node before wiping its data"
        shutil.rmtree(node.data_dir, ignore_errors=True)

    def add_node(self, start: bool = True, extra_args: Sequence[str] = ()) -> NodeProc:
        """A new node whose --peer list is every current member. Add it through the API (AddMember)."""
        node = self._new_node(extra_args)
        node.peers = [n.peer_spec for n in self.nodes if n is not node]
        if start:
            self._spawn(node)
        return node

    def client(self, nodes: Iterable[NodeProc] | None = None, **kwargs: Any) -> Any:
        """A vaultd.client.VaultClient over the given (default: running) nodes with the cluster's CA, root
        token and (mtls) client certificate, unless kwargs say otherwise; closed by close()."""
        from vaultd.client import VaultClient

        c = VaultClient(self.endpoints(nodes), **{**self.client_kwargs(), **kwargs})
        self._clients.append(c)
        return c

    def client_kwargs(self) -> dict[str, Any]:
        """What VaultClient needs to reach this cluster (empty for an insecure one)."""
        if not self.secure:
            return {}
        out: dict[str, Any] = {"ca_file": str(self.ca_file), "token": self.token}
        if self.mtls and self.client_cert is not None:
            out.update(cert_file=str(self.client_cert[0]), key_file=str(self.client_cert[1]))
        return out

    def client_env(self) -> dict[str, str]:
        """VAULTD_* variables that point the CLI (or VaultClient.from_env) at this cluster."""
        env = {"VAULTD_ENDPOINTS": ",".join(self.endpoints())}
        if self.secure:
            env.update(VAULTD_CA_FILE=str(self.ca_file), VAULTD_TOKEN_FILE=str(self.token_file))
            if self.mtls and self.client_cert is not None:
                env.update(VAULTD_CERT_FILE=str(self.client_cert[0]), VAULTD_KEY_FILE=str(self.client_cert[1]))
        return env

    def channel(self, node: NodeProc, options: Sequence[tuple[str, Any]] = ()) -> Any:
        """A raw grpc channel to `node`, TLS (and mTLS) as the cluster runs; the caller closes it. Send
        `call_metadata()` with every call."""
        import grpc

        if not self.secure:
            return grpc.insecure_channel(node.grpc_addr, options=list(options))
        from vaultd.tls import channel_credentials

        mtls = self.mtls and self.client_cert is not None
        cert, key = (str(self.client_cert[0]), str(self.client_cert[1])) if mtls else (None, None)
        return grpc.secure_channel(node.grpc_addr, channel_credentials(str(self.ca_file), cert, key),
                                   options=list(options))

    def call_metadata(self) -> list[tuple[str, str]]:
        """The metadata every call needs: the root token as a bearer token (nothing on an insecure cluster)."""
        return [("authorization", f"Bearer {self.token}")] if self.token else []

    def logs(self) -> dict[str, str]:
        return {n.node_id: n.read_log() for n in self.nodes}

    def close(self) -> None:
        for c in self._clients:
            try:
                c.close()
            except Exception:
                pass
        self._clients = []
        for node in self.nodes:
            if node.proc is None or node.proc.poll() is not None:
                continue
            try:
                os.kill(node.proc.pid, signal.SIGCONT)
                node.proc.kill()
            except ProcessLookupError:
                pass
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

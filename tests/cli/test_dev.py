"""`vaultd dev` as a user runs it: starts 3 real nodes with TLS and token authentication, prints endpoints and
the `export` lines that make the CLI work, stops cleanly, resumes its data."""

from __future__ import annotations

import json
import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.cluster import REPO
from vaultd.client import VaultClient

pytestmark = pytest.mark.timeout(150)


class DevProcess:
    """`vaultd dev` in a subprocess with its stdout read line by line on a helper thread (bounded waits)."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vaultd.cli.main", "dev", "--data-dir", str(data_dir), "--free-ports",
             "--unsafe-no-fsync", *extra], cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode(errors="replace").rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.output.append(line)
            if text in line:
                return line
        raise AssertionError(f"{text!r} not printed; output so far:\n" + "\n".join(self.output))

    def endpoints(self) -> list[str]:
        line = self.wait_for("endpoints:")
        return line.split("endpoints:", 1)[1].strip().split(",")

    def exports(self) -> dict[str, str]:
        """The `export NAME=VALUE` lines printed after "cluster ready", as the shell would apply them."""
        self.wait_for("paste into the shell")
        out = {}
        while True:
            line = self.wait_for("", timeout=5).strip()
            if not line.startswith("export "):
                return out
            name, _, value = line.removeprefix("export ").partition("=")
            out[name] = shlex.split(value)[0]

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=40)

    def kill(self) -> None:
        """Teardown: SIGTERM first (dev then stops its nodes, which live in their own sessions), SIGKILL last."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def _port_closed(endpoint: str) -> bool:
    host, port = endpoint.rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, int(port))) != 0


def _cli(env: dict[str, str], *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VAULTD_")}
    return subprocess.run([sys.executable, "-m", "vaultd.cli.main", *args], input=stdin, capture_output=True,
                          env={**clean, **env}, cwd=str(REPO), timeout=60)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_dev_cluster_starts_stops_cleanly_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "dev"
    dev = DevProcess(data_dir)
    try:
        dev.wait_for("cluster ready (TLS, token authentication)")
        endpoints = dev.endpoints()
        assert len(endpoints) == 3
        env = dev.exports()
        assert set(env) == {"VAULTD_ENDPOINTS", "VAULTD_CA_FILE", "VAULTD_TOKEN_FILE"}
        assert env["VAULTD_ENDPOINTS"].split(",") == endpoints
        dev.wait_for("vaultd key put")               # the first command to try
        # the printed lines are all the CLI needs: TLS against the dev CA, the root token as bearer
        put = _cli(env, "key", "put", "demo", "greeting", "-", stdin=b"hello")
        assert put.returncode == 0, put.stderr.decode()
        got = _cli(env, "key", "get", "demo", "greeting", "--raw")
        assert (got.returncode, got.stdout) == (0, b"hello"), got.stderr.decode()
        # without the CA the CLI speaks plaintext to a TLS port: a clear failure, exit 4
        plain = _cli({"VAULTD_ENDPOINTS": env["VAULTD_ENDPOINTS"]}, "--timeout", "2", "key", "get", "demo",
                     "greeting")
        assert plain.returncode == 4 and b"CONNECTION_FAILED" in plain.stderr
        for name, value in env.items():               # the Python client reads the same lines
            monkeypatch.setenv(name, value)
        with VaultClient.from_env(timeout=10.0) as client:
            assert client.uses_tls and client.get("demo", "greeting").value == b"hello"
        assert _mode(data_dir) == 0o700
        for private in ("cluster-secret", "root-token", "tls/client.key", "tls/n1.key", "n1/node.log"):
            assert _mode(data_dir / private) == 0o600, private
        assert dev.stop(signal.SIGTERM) == 0
        dev.wait_for("stopped", timeout=5)
        assert all(_port_closed(e) for e in endpoints)   # every node process is gone
    finally:
        dev.kill()

    again = DevProcess(data_dir)
    try:
        again.wait_for("cluster ready")
        assert again.endpoints() == endpoints            # same layout, same ports
        got = _cli(again.exports(), "key", "get", "demo", "greeting", "--raw")   # new certificates, same token
        assert (got.returncode, got.stdout) == (0, b"hello"), got.stderr.decode()
        assert again.stop(signal.SIGINT) == 0            # Ctrl-C
        assert all(_port_closed(e) for e in endpoints)
    finally:
        again.kill()


def test_dev_mtls_prints_the_client_certificate_lines(tmp_path: Path) -> None:
    dev = DevProcess(tmp_path / "dev", "--mtls")
    try:
        dev.wait_for("cluster ready (TLS with client certificates")
        env = dev.exports()
        assert {"VAULTD_CERT_FILE", "VAULTD_KEY_FILE"} <= set(env)
        assert _cli(env, "key", "put", "demo", "k", "-", stdin=b"v").returncode == 0
        # stats fan out node to node: each node verifies the others and presents its own certificate
        got = _cli(env, "-o", "json", "vault", "stats", "demo")
        assert got.returncode == 0, got.stderr.decode()
        stats = json.loads(got.stdout)
        assert sorted(stats["reporting_members"]) == ["n1", "n2", "n3"] and not stats["unreachable_members"]
        without_cert = {k: v for k, v in env.items() if k not in ("VAULTD_CERT_FILE", "VAULTD_KEY_FILE")}
        refused = _cli(without_cert, "--timeout", "2", "vault", "list")
        assert refused.returncode == 4, refused.stderr.decode()
        assert dev.stop(signal.SIGTERM) == 0
    finally:
        dev.kill()

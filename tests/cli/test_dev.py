"""`vaultd dev` as a user runs it: starts 3 real nodes, prints endpoints, stops cleanly, resumes its data."""

from __future__ import annotations

import os
import queue
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

    def __init__(self, data_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vaultd.cli.main", "dev", "--data-dir", str(data_dir), "--free-ports",
             "--unsafe-no-fsync"], cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
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


def test_dev_cluster_starts_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    data_dir = tmp_path / "dev"
    dev = DevProcess(data_dir)
    try:
        dev.wait_for("cluster ready")
        endpoints = dev.endpoints()
        assert len(endpoints) == 3
        dev.wait_for("vaultd key put")               # the first command to try
        with VaultClient(endpoints, timeout=10.0) as client:
            assert client.put("demo", "greeting", b"hello").version == 1
        assert (data_dir / "cluster-secret").stat().st_mode & 0o777 == 0o600
        assert dev.stop(signal.SIGTERM) == 0
        dev.wait_for("stopped", timeout=5)
        assert all(_port_closed(e) for e in endpoints)   # every node process is gone
    finally:
        dev.kill()

    again = DevProcess(data_dir)
    try:
        again.wait_for("cluster ready")
        assert again.endpoints() == endpoints            # same layout, same ports
        with VaultClient(endpoints, timeout=10.0) as client:
            assert client.get("demo", "greeting").value == b"hello"
        assert again.stop(signal.SIGINT) == 0            # Ctrl-C
        assert all(_port_closed(e) for e in endpoints)
    finally:
        again.kill()

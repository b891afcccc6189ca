"""A real Prometheus server for tests: own storage dir, free loopback port, 1 s scrape and evaluation.

Why a real one: the point is that deploy/prometheus's rules and vaultd's /metrics work together in the
server operators run, including `up`, rule evaluation and the alerts API.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.observability.promtool import PROMETHEUS, TEST_RULES


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrometheusServer:
    """Scrapes `targets` (node id -> HOST:PORT) as job "vaultd" with the test copy of the alert rules."""

    def __init__(self, workdir: Path, targets: dict[str, str], rules: Path = TEST_RULES) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [{
                "job_name": "vaultd",
                "static_configs": [{"targets": [addr], "labels": {"node": node}} for node, addr in targets.items()],
            }],
        }
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(json.dumps(config, indent=1))  # JSON is valid YAML
        self.log_path = workdir / "prometheus.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        assert PROMETHEUS is not None
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={self.config_path}", f"--storage.tsdb.path={self.workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
                 "--storage.tsdb.retention.time=1h"],
                stdout=log, stderr=subprocess.STDOUT)
        self.wait_for(lambda: self._get("/-/ready", raw=True) == "ready", timeout, "prometheus ready")
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None

    def _get(self, path: str, raw: bool = False, **params: str) -> Any:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"prometheus exited: {self.log_path.read_text()[-2000:]}")
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                body = resp.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None
        if raw:
            return "ready" if "Ready" in body else body
        doc = json.loads(body)
        assert doc["status"] == "success", doc
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the vector result (each {"metric": labels, "value": [ts, "v"]})."""
        data = self._get("/api/v1/query", query=expr)
        return [] if data is None else data["result"]

    def scalar_values(self, expr: str) -> dict[str, float]:
        """Instant query result keyed by the `node` label ("" when absent)."""
        return {r["metric"].get("node", ""): float(r["value"][1]) for r in self.query(expr)}

    def alerts(self) -> list[dict[str, Any]]:
        data = self._get("/api/v1/alerts")
        return [] if data is None else data["alerts"]

    def targets(self) -> list[dict[str, Any]]:
        data = self._get("/api/v1/targets")
        return [] if data is None else data["activeTargets"]

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll until predicate() is truthy (bounded); returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.25)

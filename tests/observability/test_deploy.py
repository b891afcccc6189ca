"""deploy/: the example node config loads with the real config loader and agrees with the scrape config;
the systemd unit passes systemd-analyze."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.observability.promtool import PROM_DIR, REPO
from vaultd import config

EXAMPLE = REPO / "deploy" / "vaultd.toml"
UNIT = REPO / "deploy" / "systemd" / "vaultd@.service"


def test_example_config_is_valid_and_scraped() -> None:
    cfg = config.load(["--config", str(EXAMPLE)], env={})
    cfg.validate()
    cfg.validate_security()   # secure as shipped: TLS, peer TLS and a root token, no insecure mode
    assert cfg.tls_enabled and cfg.peer_tls_enabled and cfg.auth_enabled and not cfg.insecure_plaintext
    assert cfg.node_id == "n1" and cfg.log_format == "json" and not cfg.unsafe_no_fsync
    assert cfg.peer_ids == {"10.0.0.12:7000": "n2", "10.0.0.13:7000": "n3"}
    assert cfg.bootstrap_limits()["max_keys_per_vault"] == 10000
    assert all(src.startswith("file ") for name, src in cfg.sources.items()
               if name in ("node_id", "metrics_addr", "peers", "slow_request_ms"))
    targets = re.findall(r'targets: \["([^"]+)"\]\s+labels: \{node: (\w+)\}', (PROM_DIR / "prometheus.yml").read_text())
    assert (cfg.metrics_addr, cfg.node_id) in targets
    # The other two nodes' metrics ports, as the comments in the example describe them, are scraped too.
    described = re.findall(r"#\s+(n\d): .*metrics_addr (\S+?),", EXAMPLE.read_text())
    assert {(addr, node) for node, addr in described} | {(cfg.metrics_addr, cfg.node_id)} == set(targets)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    # Point ExecStart at an executable that exists here; everything else is verified as shipped.
    unit = tmp_path / "vaultd@n1.service"
    unit.write_text(UNIT.read_text().replace("/opt/vaultd/bin/vaultd", sys.executable))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    assert "ExecStart=/opt/vaultd/bin/vaultd serve --config /etc/vaultd/%i.toml" in UNIT.read_text()


def test_runbook_commands_in_the_alert_rules_parse() -> None:
    """The descriptions tell the on-call engineer what to run: every `vaultd ...` command in them must be one
    the CLI accepts (N and other placeholders stand for numbers)."""
    from vaultd.cli.main import build_parser

    parser = build_parser()
    for rules in (PROM_DIR / "rules" / "vaultd.rules.yml", PROM_DIR / "tests" / "vaultd.rules.test.yml"):
        commands = re.findall(r"`vaultd ([^`]+)`", rules.read_text())
        assert commands, rules
        for command in commands:
            argv = [word if word != "N" else "1" for word in command.split()]
            try:
                parser.parse_args(argv)
            except SystemExit:
                pytest.fail(f"{rules.name}: `vaultd {command}` is not a valid command")

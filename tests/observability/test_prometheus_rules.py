"""deploy/prometheus: promtool accepts the config and rules, the test copy only shortens `for:`, and every
alert fires on the situation it is meant for (promtool unit tests over synthetic series)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.observability.promtool import PROM_DIR, RULES, TEST_RULES, promtool, requires_promtool

pytestmark = [requires_promtool, pytest.mark.timeout(120)]

MIB = 1024 * 1024


def test_promtool_check_config() -> None:
    result = promtool("check", "config", str(PROM_DIR / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(RULES), str(TEST_RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS: 13 rules found") == 2, result.stdout


def test_test_copy_differs_only_in_for_durations() -> None:
    def body(path: Path) -> list[str]:
        return [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]

    real, short = body(RULES), body(TEST_RULES)
    assert len(real) == len(short)
    diffs = [(a, b) for a, b in zip(real, short) if a != b]
    assert diffs, "the test copy must shorten the for: durations"
    for a, b in diffs:
        assert re.fullmatch(r"\s+for: \d+[smh]", a) and b == re.sub(r"for: \d+[smh]", "for: 1s", a), (a, b)


def _rules_without_annotations(tmp: Path) -> Path:
    """promtool compares annotations verbatim; drop them so the unit tests check expressions and labels."""
    out, skip_indent = [], None
    for line in RULES.read_text().splitlines():
        indent = len(line) - len(line.lstrip())
        if skip_indent is not None and (not line.strip() or indent > skip_indent):
            continue
        skip_indent = None
        if line.strip() == "annotations:":
            skip_indent = indent
            continue
        out.append(line)
    path = tmp / "rules.yml"
    path.write_text("\n".join(out) + "\n")
    return path


def _case(series: dict[str, str], eval_time: str, alert: str, expected: list[dict[str, str]]) -> dict[str, Any]:
    return {"interval": "15s",
            "input_series": [{"series": s, "values": v} for s, v in series.items()],
            "alert_rule_test": [{"eval_time": eval_time, "alertname": alert,
                                 "exp_alerts": [{"exp_labels": labels} for labels in expected]}]}


def _inst(n: int) -> str:
    return f'job="vaultd",instance="vaultd-{n}:9100",node="n{n}"'


def _labels(n: int, **extra: str) -> dict[str, str]:
    return {"job": "vaultd", "instance": f"vaultd-{n}:9100", "node": f"n{n}", "severity": "warning", **extra}


W = {"severity": "warning"}
CASES = [
    # no leader anywhere for a minute -> critical; one leader -> nothing
    _case({f"vaultd_raft_is_leader{{{_inst(n)}}}": "0x12" for n in (1, 2, 3)}, "2m", "VaultdNoLeader",
          [{"job": "vaultd", "severity": "critical"}]),
    _case({f"vaultd_raft_is_leader{{{_inst(1)}}}": "1x12", f"vaultd_raft_is_leader{{{_inst(2)}}}": "0x12"},
          "2m", "VaultdNoLeader", []),
    _case({f"vaultd_raft_is_leader{{{_inst(n)}}}": "1x20" for n in (1, 2)}, "3m", "VaultdMultipleLeaders",
          [{"job": "vaultd", **W}]),
    # three leader changes within 10 minutes; one change is normal
    _case({f"vaultd_raft_leader_changes_seen_total{{{_inst(1)}}}": "0x8 1x8 2x8 3x8"}, "8m",
          "VaultdFrequentLeaderChanges", [{"job": "vaultd", **W}]),
    _case({f"vaultd_raft_leader_changes_seen_total{{{_inst(1)}}}": "0x8 1x32"}, "8m",
          "VaultdFrequentLeaderChanges", []),
    _case({f'vaultd_raft_proposals_failed_total{{{_inst(1)},reason="unavailable"}}': "0+1x60",
           f"vaultd_raft_proposals_committed_total{{{_inst(1)}}}": "0+1x60"}, "12m", "VaultdProposalsFailing",
          [{"job": "vaultd", "instance": "vaultd-1:9100", **W}]),
    _case({f'vaultd_raft_peer_reachable{{{_inst(1)},peer="n3"}}': "0x8",
           f'vaultd_raft_peer_reachable{{{_inst(1)},peer="n2"}}': "1x8"}, "2m", "VaultdPeerUnreachable",
          [_labels(1, peer="n3")]),
    _case({f"up{{{_inst(2)}}}": "1 1 0x8", f"up{{{_inst(1)}}}": "1x10"}, "2m", "VaultdNodeDown", [_labels(2)]),
    _case({f"vaultd_ready{{{_inst(3)}}}": "0x12"}, "3m", "VaultdNodeNotReady", [_labels(3)]),
    _case({f"vaultd_raft_commit_index{{{_inst(1)}}}": "5000+10x30",
           f"vaultd_raft_applied_index{{{_inst(1)}}}": "100+10x30"}, "6m", "VaultdAppliedLagging", [_labels(1)]),
    _case({f"vaultd_raft_snapshots_failed_total{{{_inst(1)}}}": "0 0 1x8"}, "2m", "VaultdSnapshotFailures",
          [_labels(1)]),
    _case({f'vaultd_raft_journal_fsync_seconds_bucket{{{_inst(1)},le="0.1"}}': "0x60",
           f'vaultd_raft_journal_fsync_seconds_bucket{{{_inst(1)},le="0.5"}}': "0+10x60",
           f'vaultd_raft_journal_fsync_seconds_bucket{{{_inst(1)},le="+Inf"}}': "0+10x60"}, "15m",
          "VaultdSlowJournalFsync", [{"job": "vaultd", "instance": "vaultd-1:9100", **W}]),
    # the same vault reported by two replicas gives one alert
    _case({f'vaultd_vault_key_limit_ratio{{{_inst(n)},vault="payments"}}': "0.95x30" for n in (1, 2)}
          | {f'vaultd_vault_key_limit_ratio{{{_inst(1)},vault="app"}}': "0.5x30"}, "6m",
          "VaultdVaultNearKeyLimit", [{"job": "vaultd", "vault": "payments", **W}]),
    _case({f"vaultd_db_size_bytes{{{_inst(1)}}}": f"{100 * MIB}+{MIB}x600"}, "2h", "VaultdDatabaseGrowingFast",
          [_labels(1)]),
    _case({f"vaultd_db_size_bytes{{{_inst(1)}}}": f"{100 * MIB}+1000x600"}, "2h", "VaultdDatabaseGrowingFast", []),
    _case({f"vaultd_wal_size_bytes{{{_inst(1)}}}": f"{2048 * MIB}x100"}, "20m", "VaultdWalTooLarge", [_labels(1)]),
]


def test_every_alert_fires_on_its_situation(tmp_path: Path) -> None:
    rules = _rules_without_annotations(tmp_path)
    alerts_in_rules = set(re.findall(r"- alert: (\w+)", RULES.read_text()))
    assert alerts_in_rules == {c["alert_rule_test"][0]["alertname"] for c in CASES}, "every alert needs a case"
    spec = {"rule_files": [str(rules)], "evaluation_interval": "15s", "tests": CASES}
    test_file = tmp_path / "alerts.test.yml"
    test_file.write_text(json.dumps(spec, indent=1))  # JSON is YAML
    result = promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout

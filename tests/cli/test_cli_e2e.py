"""The `vaultd` CLI run as real subprocesses against a real 3-node cluster: exit codes and JSON output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import REPO, Cluster

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cli-e2e"), 3, fsync=False)
    try:
        c.start()
        yield c
    finally:
        c.close()


class Run:
    def __init__(self, cluster: Cluster) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("VAULTD_")}
        self.env = {**clean, **cluster.client_env()}     # TLS with the cluster's CA, the root token

    def __call__(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "vaultd.cli.main", *args], input=stdin, capture_output=True,
                              env=self.env, cwd=str(REPO), timeout=60)

    def json(self, *args: str, stdin: bytes | None = None) -> Any:
        proc = self("-o", "json", *args, stdin=stdin)
        assert proc.returncode == 0, proc.stderr.decode()
        return json.loads(proc.stdout)

    def error(self, code: int, *args: str, stdin: bytes | None = None) -> dict[str, Any]:
        proc = self("-o", "json", *args, stdin=stdin)
        assert proc.returncode == code, (proc.returncode, proc.stderr.decode())
        return json.loads(proc.stderr)["error"]


@pytest.fixture(scope="module")
def run(cluster: Cluster) -> Run:
    return Run(cluster)


SECRET = "sk_live_cli_secret_value"


def test_vault_commands(run: Run, tmp_path: Path) -> None:
    created = run.json("vault", "create", "cli-app", "--description", "d", "--owner", "me", "--tag", "a", "--tag", "b")
    assert (created["name"], created["owner"], created["tags"]) == ("cli-app", "me", ["a", "b"])
    err = run.error(3, "vault", "create", "cli-app")
    assert (err["code"], err["reason"], err["metadata"]["vault"]) == ("ALREADY_EXISTS", "VAULT_EXISTS", "cli-app")
    assert run.error(2, "vault", "create", "bad name!")["reason"] == "INVALID_VAULT_NAME"
    assert run.error(1, "vault", "get", "cli-missing")["reason"] == "VAULT_NOT_FOUND"
    assert run.json("vault", "update", "cli-app", "--owner", "you")["owner"] == "you"
    assert run.json("vault", "update", "cli-app", "--clear-tags")["tags"] == []
    assert run.json("vault", "get", "cli-app", "--local")["description"] == "d"
    listed = run.json("vault", "list")
    assert "cli-app" in [v["name"] for v in listed["vaults"]] and listed["next_page_token"] == ""
    page = run.json("vault", "list", "--page-size", "1")
    assert len(page["vaults"]) == 1
    table = run("vault", "list")
    assert table.returncode == 0 and b"cli-app" in table.stdout and table.stdout.startswith(b"NAME")
    run.json("key", "put", "cli-app", "k", "v")
    assert run.json("vault", "copy", "cli-app", "cli-app2")["copied_keys"] == 1
    stats = run.json("vault", "stats", "cli-app")
    assert stats["key_count"] == 1 and sorted(stats["reporting_members"]) == ["n1", "n2", "n3"]
    assert run.json("vault", "delete", "cli-app2")["deleted_keys"] == 1
    assert run.error(1, "vault", "delete", "cli-app2")["reason"] == "VAULT_NOT_FOUND"


def test_key_commands_and_secret_handling(run: Run, tmp_path: Path) -> None:
    put = run.json("key", "put", "cli-keys", "api", SECRET)
    assert put["version"] == 1 and SECRET not in json.dumps(put)
    value_file = tmp_path / "value.bin"
    value_file.write_bytes(b"\x00\x01binary")
    assert run.json("key", "put", "cli-keys", "bin", "--file", str(value_file))["version"] == 1
    assert run.json("key", "put", "cli-keys", "piped", stdin=b"from stdin")["version"] == 1
    assert run.json("key", "put", "cli-keys", "dash", "-", stdin=b"dash stdin")["version"] == 1

    hidden = run("key", "get", "cli-keys", "api")
    assert hidden.returncode == 0 and SECRET.encode() not in hidden.stdout and b"--reveal" in hidden.stdout
    hidden_json = run.json("key", "get", "cli-keys", "api")
    assert "value" not in hidden_json and hidden_json["value_size"] == len(SECRET)
    shown = run("key", "get", "cli-keys", "api", "--reveal")
    assert SECRET.encode() in shown.stdout
    revealed = run.json("key", "get", "cli-keys", "api", "--reveal")
    assert revealed["value"] == SECRET and revealed["version"] == 1
    assert run("key", "get", "cli-keys", "bin", "--raw").stdout == b"\x00\x01binary"
    assert run.json("key", "get", "cli-keys", "bin", "--reveal")["value_base64"] == "AAFiaW5hcnk="
    assert run("key", "get", "cli-keys", "piped", "--raw").stdout == b"from stdin"

    assert run.error(1, "key", "get", "cli-keys", "nope")["reason"] == "KEY_NOT_FOUND"
    err = run.error(3, "key", "put", "cli-keys", "api", "x", "--expected-version", "7")
    assert err["reason"] == "VERSION_MISMATCH" and err["metadata"]["actual_version"] == "1"
    assert run.error(2, "key", "put", "cli-keys", "", "x")["reason"] == "INVALID_KEY"
    big = tmp_path / "big"
    big.write_bytes(b"x" * ((1 << 20) + 1))
    assert run.error(5, "key", "put", "cli-keys", "big", "--file", str(big))["reason"] == "VALUE_TOO_LARGE"
    assert run("key", "put", "cli-keys", "x", "inline", "--file", str(big)).returncode == 2

    scan = run.json("key", "scan", "cli-keys")
    assert [e["key"] for e in scan["entries"]] == ["api", "bin", "dash", "piped"]
    assert all("value" not in e for e in scan["entries"])
    scan = run.json("key", "scan", "cli-keys", "--prefix", "p", "--reveal")
    assert [(e["key"], e["value"]) for e in scan["entries"]] == [("piped", "from stdin")]
    page = run.json("key", "scan", "cli-keys", "--page-size", "2")
    assert len(page["entries"]) == 2 and page["next_page_token"]
    rest = run.json("key", "scan", "cli-keys", "--page-size", "2", "--page-token", page["next_page_token"])
    assert [e["key"] for e in rest["entries"]] == ["dash", "piped"]

    assert run.json("key", "delete", "cli-keys", "dash")["deleted"] is True
    assert run.json("key", "delete", "cli-keys", "dash")["deleted"] is False
    assert run.error(3, "key", "delete", "cli-keys", "dash", "--expected-version", "1")["reason"] == \
        "VERSION_MISMATCH"


def test_txn_from_file(run: Run, tmp_path: Path) -> None:
    run.json("key", "put", "cli-txn", "a", "1")
    ops = tmp_path / "ops.json"
    ops.write_text(json.dumps({"ops": [{"put": {"key": "a", "value": "2", "expected_version": 1}},
                                       {"put": {"key": "b", "value_base64": "AAE="}},
                                       {"delete": {"key": "zzz"}}]}))
    result = run.json("key", "txn", "cli-txn", str(ops))
    assert [(r["key"], r["version"]) for r in result["results"]] == [("a", 2), ("b", 1), ("zzz", 0)]
    assert run.error(3, "key", "txn", "cli-txn", str(ops))["reason"] == "VERSION_MISMATCH"
    assert run("key", "get", "cli-txn", "b", "--raw").stdout == b"\x00\x01"
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    assert run("key", "txn", "cli-txn", str(bad)).returncode == 2


def test_export_import_with_progress(run: Run, tmp_path: Path) -> None:
    dotenv = tmp_path / "app.env"
    dotenv.write_text("".join(f"KEY_{i}=value-{i}\n" for i in range(300)))
    imported = run.json("vault", "import", "cli-exp", str(dotenv), "--format", "dotenv")
    assert imported["imported"] == 300
    out = tmp_path / "export.json"
    proc = run("vault", "export", "cli-exp", "--file", str(out), "--progress")
    assert proc.returncode == 0 and b"export cli-exp" in proc.stderr
    doc = json.loads(out.read_bytes())
    assert len(doc["entries"]) == 300
    proc = run("-o", "json", "vault", "import", "cli-exp2", str(out), "--progress")
    assert proc.returncode == 0 and b"100.0%" in proc.stderr
    assert json.loads(proc.stdout)["imported"] == 300
    piped = run("vault", "export", "cli-exp2")                       # to stdout, no progress unless a tty
    assert piped.returncode == 0 and piped.stderr == b""
    assert json.loads(piped.stdout)["vault"]["name"] == "cli-exp2"
    again = run.json("vault", "import", "cli-exp2", "-", "--mode", "skip-existing", stdin=out.read_bytes())
    assert (again["imported"], again["skipped"]) == (0, 300)
    assert run.error(3, "vault", "import", "cli-exp2", str(out))["reason"] == "VERSION_MISMATCH"
    bad = tmp_path / "bad.env"
    bad.write_text("=novalue\n")
    err = run.error(2, "vault", "import", "cli-bad", str(bad), "--format", "dotenv")
    assert err["reason"] == "MALFORMED_IMPORT" and err["metadata"]["line"] == "1"


def test_cluster_commands(run: Run, cluster: Cluster) -> None:
    status = run.json("cluster", "status", "--endpoint", cluster.nodes[1].grpc_addr)
    assert status["node_id"] == "n2" and status["ready"] is True and len(status["members"]) == 3
    members = run.json("cluster", "members")
    assert sorted(m["node_id"] for m in members["members"]) == ["n1", "n2", "n3"] and members["leader_id"]
    table = run("cluster", "status")
    assert table.returncode == 0 and b"leader" in table.stdout
    limits = run.json("cluster", "limits", "get")
    assert limits["max_scan_results"] == 1000
    try:
        changed = run.json("cluster", "limits", "set", "--max-scan-results", "500")
        assert (changed["max_scan_results"], changed["max_vaults"]) == (500, 1000)
    finally:
        restored = run.json("cluster", "limits", "set", "--max-scan-results", "1000")
    assert restored == limits
    assert run("cluster", "limits", "set").returncode == 2
    err = run.error(4, "--endpoints", "127.0.0.1:1", "--timeout", "0.5", "cluster", "status")
    assert err["code"] == "UNAVAILABLE"


def test_secret_not_in_node_logs(run: Run, cluster: Cluster) -> None:
    run.json("key", "put", "cli-leak", "k", SECRET)
    run.error(3, "key", "put", "cli-leak", "k", SECRET, "--expected-version", "9")
    for text in cluster.logs().values():
        assert SECRET not in text


def test_import_from_a_pipe_fails_over_to_a_working_node(run: Run, cluster: Cluster) -> None:
    """stdin is a pipe (not seekable): the first endpoint is dead, so the upload must be re-sent to the next."""
    endpoints = ",".join(["127.0.0.1:1", *cluster.endpoints()])  # nothing listens on port 1
    result = run.json("--endpoints", endpoints, "vault", "import", "cli-pipe", "--format", "dotenv",
                      stdin=b"A=1\nB=2\n")
    assert result["imported"] == 2
    assert run.json("key", "get", "cli-pipe", "B", "--reveal")["value"] == "2"

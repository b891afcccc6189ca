"""`vaultd token ...` and `vaultd policy ...` as real subprocesses against real single-node clusters, and
exit code 7 for UNAUTHENTICATED. The commands run with the cluster's CA and root token from the environment;
one cluster runs --insecure-no-auth, where AuthService still works."""

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
from vaultd.cli.main import EXIT_AUTH

pytestmark = pytest.mark.timeout(120)


def _run(cluster: Cluster, *args: str, stdin: bytes | None = None,
         token: bool = True) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULTD_")}
    env.update(cluster.client_env())
    if not token:
        env.pop("VAULTD_TOKEN_FILE", None)
    return subprocess.run([sys.executable, "-m", "vaultd.cli.main", *args], input=stdin, capture_output=True,
                          env=env, cwd=str(REPO), timeout=60)


def _json(cluster: Cluster, *args: str, stdin: bytes | None = None) -> Any:
    proc = _run(cluster, "-o", "json", *args, stdin=stdin)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout) if proc.stdout.strip() else None


@pytest.fixture(scope="module")
def open_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cli-auth-open"), 1, fsync=False, secure=False)
    try:
        c.start()
        yield c
    finally:
        c.close()


def test_policy_commands_from_json_and_toml(open_node: Cluster, tmp_path: Path) -> None:
    toml_file = tmp_path / "dev.toml"
    toml_file.write_text('[[rules]]\nvault_glob = "app-*"\ncapabilities = ["read", "list"]\n'
                         '[[rules]]\nvault_glob = "*"\ncapabilities = []\n')
    put = _json(open_node, "policy", "put", "dev", str(toml_file))
    assert put["name"] == "dev"
    assert put["rules"] == [{"vault_glob": "app-*", "capabilities": ["read", "list"]},
                            {"vault_glob": "*", "capabilities": []}]
    doc = {"rules": [{"vault_glob": "ops", "capabilities": ["admin", "write"]}]}
    _json(open_node, "policy", "put", "ops", "-", stdin=json.dumps(doc).encode())
    assert _json(open_node, "policy", "get", "ops")["rules"] == [{"vault_glob": "ops",
                                                                   "capabilities": ["write", "admin"]}]
    assert [p["name"] for p in _json(open_node, "policy", "list")["policies"]] == ["dev", "ops"]
    table = _run(open_node, "policy", "list")
    assert table.returncode == 0 and b"app-*: read,list" in table.stdout
    _json(open_node, "policy", "delete", "ops")
    gone = _run(open_node, "-o", "json", "policy", "get", "ops")
    assert gone.returncode == 1 and json.loads(gone.stderr)["error"]["reason"] == "POLICY_NOT_FOUND"
    bad = _run(open_node, "policy", "put", "x", "-",
               stdin=b'{"rules": [{"vault_glob": "a", "capabilities": ["root"]}]}')
    assert bad.returncode == 2 and b"INVALID_ARGUMENT" in bad.stderr
    not_json = _run(open_node, "policy", "put", "x", "-", stdin=b"rules = 1")
    assert not_json.returncode == 2 and b"not valid JSON" in not_json.stderr


def test_token_commands(open_node: Cluster) -> None:
    _json(open_node, "policy", "put", "t-pol", "-", stdin=b'{"rules": [{"vault_glob": "*", "capabilities": ["read"]}]}')
    created = _json(open_node, "token", "create", "ci", "--policy", "t-pol", "--ttl", "3600")
    assert created["secret"].startswith(f"vt.{created['token_id']}.")
    assert created["token"]["policies"] == ["t-pol"] and created["token"]["expires_at"]
    listed = _run(open_node, "-o", "json", "token", "list")
    assert listed.returncode == 0 and created["secret"].encode() not in listed.stdout
    assert created["token_id"] in [t["token_id"] for t in json.loads(listed.stdout)["tokens"]]
    table = _run(open_node, "token", "create", "human")
    assert table.returncode == 0 and b"vt." in table.stdout and b"shown only now" in table.stderr
    revoked = _json(open_node, "token", "revoke", created["token_id"])
    assert revoked["revoked"] is True
    unknown = _run(open_node, "-o", "json", "token", "revoke", "f" * 16)
    assert unknown.returncode == 1 and json.loads(unknown.stderr)["error"]["reason"] == "TOKEN_NOT_FOUND"
    typo = _run(open_node, "token", "create", "x", "--policy", "nope")
    assert typo.returncode == 1 and b"POLICY_NOT_FOUND" in typo.stderr
    me = _json(open_node, "token", "lookup")          # no auth on this node: an anonymous root
    assert me["root"] is True


def test_calls_without_a_token_exit_7(tmp_path: Path) -> None:
    with Cluster(tmp_path, 1, fsync=False) as secured:
        secured.start()
        for args in (("token", "list"), ("vault", "list"), ("policy", "get", "x")):
            proc = _run(secured, "-o", "json", *args, token=False)
            assert proc.returncode == EXIT_AUTH == 7, proc.stderr.decode()
            assert json.loads(proc.stderr)["error"]["reason"] == "UNAUTHENTICATED"

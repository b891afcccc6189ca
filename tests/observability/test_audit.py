"""The audit log through real node processes (a 3-node cluster, each node with its own `--audit-log`): one
JSON line per request with its fields, failures with their reason, never a value (Put, Txn, Import, Export),
each request on the node that received it, reopened on SIGHUP after a rename, created 0600. The writer's
failure path (counted, logged once, never failing a request) is checked in-process."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY

from tests.cluster import REPO, Cluster, NodeProc, free_port
from vaultd import client as vc
from vaultd.api import errors
from vaultd.api.targets import keys_of, vaults_of
from vaultd.api.wrapping import Registrar
from vaultd.observability.audit import AuditLog
from vaultd.observability.context import current_caller
from vaultd.store.errors import KeyNotFound
from vaultd.v1 import vault_pb2, vault_pb2_grpc

pytestmark = pytest.mark.timeout(120)

SECRET = "sk_live_audit_do_not_leak_4711"
FIELDS = {"time", "node", "token_id", "token_name", "method", "vaults", "keys", "keys_omitted", "code", "reason",
          "request_id", "peer"}


def _audit_path(node: NodeProc) -> Path:
    return node.data_dir.parent / f"{node.node_id}-audit.log"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("audit"), 3, fsync=False)
    for node in c.nodes:
        node.extra_args += ["--audit-log", str(_audit_path(node))]
    try:
        c.start()
        yield c
    finally:
        c.close()


def _lines(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines()]
    except FileNotFoundError:
        return []


def _wait_line(path: Path, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The line of `request_id` (lines are written as the RPC ends, just before or after the client sees it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [line for line in _lines(path) if line["request_id"] == request_id]
        if found:
            assert len(found) == 1, found
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no audit line for {request_id} in {path}")


def test_lines_name_who_what_and_outcome_on_the_receiving_node(cluster: Cluster) -> None:
    follower = cluster.followers()[0]
    leader = cluster.wait_leader()
    path = _audit_path(follower)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    root = cluster.client([follower], timeout=10.0)
    root.put_policy("audit-all", [("audit-*", ["read", "write", "delete", "export", "import"])])
    bot = root.create_token("audit-bot", ["audit-all"])
    with vc.VaultClient([follower.grpc_addr], timeout=10.0, ca_file=str(cluster.ca_file),
                        token=bot.secret) as client:
        client.put("audit-app", "db/password", SECRET, request_id="audit-put-1")
        with cluster.channel(follower) as channel, pytest.raises(grpc.RpcError):
            vault_pb2_grpc.VaultServiceStub(channel).Get(vault_pb2.GetRequest(vault="audit-app", key="nope"),
                                                         timeout=5, metadata=[("x-request-id", "audit-get-missing"),
                                                                              *cluster.call_metadata()])
        with cluster.channel(follower) as channel, pytest.raises(grpc.RpcError):
            vault_pb2_grpc.VaultServiceStub(channel).Get(vault_pb2.GetRequest(vault="audit-app", key="k"),
                                                         timeout=5, metadata=[("x-request-id", "audit-no-token")])
        client.txn("audit-app", [vc.txn_put("api/key", SECRET), vc.txn_delete("db/password")],
                   request_id="audit-txn-1")
        client.import_vault("audit-imp", f"TOKEN={SECRET}\n".encode(), format="dotenv", request_id="audit-imp-1")
        exported = b"".join(client.export_vault("audit-imp"))
    assert base64.b64encode(SECRET.encode()) in exported  # the export did carry the value

    put = _wait_line(path, "audit-put-1")
    assert set(put) == FIELDS
    assert (put["node"], put["method"], put["vaults"], put["keys"], put["code"], put["reason"]) == (
        follower.node_id, "vaultd.v1.VaultService/Put", ["audit-app"], ["db/password"], "OK", "")
    assert (put["token_id"], put["token_name"]) == (bot.token_id, "audit-bot")   # never the secret
    assert bot.secret.split(".")[-1] not in path.read_text()
    assert put["peer"].startswith("ipv4:127.0.0.1:")
    when = dt.datetime.fromisoformat(put["time"])
    assert when.tzinfo is not None and abs((dt.datetime.now(dt.timezone.utc) - when).total_seconds()) < 60

    missing = _wait_line(path, "audit-get-missing")
    assert (missing["method"], missing["keys"], missing["code"], missing["reason"], missing["token_id"]) == (
        "vaultd.v1.VaultService/Get", ["nope"], "NOT_FOUND", "KEY_NOT_FOUND", "root")
    anonymous = _wait_line(path, "audit-no-token")   # refused before any handler: still audited
    assert (anonymous["code"], anonymous["reason"], anonymous["token_id"], anonymous["vaults"], anonymous["keys"]) \
        == ("UNAUTHENTICATED", "UNAUTHENTICATED", "", [], [])    # an anonymous caller's names are not logged
    txn = _wait_line(path, "audit-txn-1")
    assert (txn["vaults"], txn["keys"], txn["code"]) == (["audit-app"], ["api/key", "db/password"], "OK")
    imported = _wait_line(path, "audit-imp-1")  # vault and request id from the stream's header
    assert (imported["method"], imported["vaults"], imported["code"]) == (
        "vaultd.v1.VaultService/ImportVault", ["audit-imp"], "OK")
    exports = [line for line in _lines(path) if line["method"] == "vaultd.v1.VaultService/ExportVault"]
    assert [(e["vaults"], e["code"]) for e in exports] == [(["audit-imp"], "OK")]
    assert exports[0]["request_id"]

    # The leader applied these writes through Raft but did not receive them: nothing in its audit log.
    leader_ids = {line["request_id"] for line in _lines(_audit_path(leader))}
    assert not leader_ids & {"audit-put-1", "audit-txn-1", "audit-imp-1"}

    # Never a value, in any audit log or node log, plain or base64.
    encoded = base64.b64encode(SECRET.encode()).decode()
    for node in cluster.nodes:
        audit_text = _audit_path(node).read_text()
        assert SECRET not in audit_text and encoded not in audit_text
    for node_id, text in cluster.logs().items():
        assert SECRET not in text and encoded not in text, node_id


def test_sighup_reopens_the_file_after_logrotate_renamed_it(cluster: Cluster) -> None:
    node = cluster.nodes[2]
    path = _audit_path(node)
    rotated = path.with_name(path.name + ".1")
    with cluster.client([node], timeout=10.0) as client:
        client.put("audit-rot", "k", b"v", request_id="audit-before-rotate")
        _wait_line(path, "audit-before-rotate")
        os.rename(path, rotated)
        client.put("audit-rot", "k", b"v", request_id="audit-after-rename")  # still the renamed file
        _wait_line(rotated, "audit-after-rename")
        assert node.pid is not None
        os.kill(node.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
        client.put("audit-rot", "k", b"v", request_id="audit-after-reopen")
        assert _wait_line(path, "audit-after-reopen")["code"] == "OK"
    assert "audit-after-reopen" not in rotated.read_text()
    assert node.is_running() and "audit log reopened" in node.read_log()


def _failed_writes() -> float:
    return REGISTRY.get_sample_value("vaultd_audit_write_errors_total") or 0.0


def test_a_failing_write_is_counted_and_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """/dev/full refuses every write (ENOSPC): the line is counted as an error, logged once while it lasts,
    and write() returns normally, so the request it describes is not failed."""
    audit = AuditLog("/dev/full", "n1", vaults_of, keys_of)
    before = _failed_writes()
    try:
        with caplog.at_level(logging.ERROR, logger="vaultd.audit"):
            for _ in range(3):
                audit.write({"method": "vaultd.v1.VaultService/Put"})
        assert _failed_writes() == before + 3
        assert len([r for r in caplog.records if "audit log write failed" in r.getMessage()]) == 1
    finally:
        audit.close()
    audit = AuditLog(str(tmp_path / "audit.log"), "n1", vaults_of, keys_of)
    try:
        audit.write({"method": "m", "code": "OK"})
        assert _lines(tmp_path / "audit.log") == [{"method": "m", "code": "OK"}]
    finally:
        audit.close()


def test_a_txn_naming_many_keys_gets_a_bounded_line(cluster: Cluster) -> None:
    node = cluster.nodes[1]
    with cluster.client([node], timeout=10.0) as client:
        client.txn("audit-many", [vc.txn_put(f"k{i:03d}", b"v") for i in range(150)], request_id="audit-many-1")
    line = _wait_line(_audit_path(node), "audit-many-1")
    assert line["keys"] == [f"k{i:03d}" for i in range(100)] and line["keys_omitted"] == 50


def test_an_existing_loose_file_is_made_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_text("")
    path.chmod(0o644)
    audit = AuditLog(str(path), "n1", vaults_of, keys_of)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        audit.close()


def test_undecodable_request_is_audited_without_names(cluster: Cluster) -> None:
    """Bytes that are not a PutRequest still get their line (INVALID_ARGUMENT), naming no vault or key."""
    node = cluster.nodes[0]
    with cluster.channel(node) as channel:
        put = channel.unary_unary("/vaultd.v1.VaultService/Put")
        with pytest.raises(grpc.RpcError) as err:
            put(b"\xff\xff\xff", timeout=5, metadata=[("x-request-id", "audit-garbage"), *cluster.call_metadata()])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    line = _wait_line(_audit_path(node), "audit-garbage")
    assert (line["vaults"], line["keys"], line["code"], line["reason"]) == ([], [], "INVALID_ARGUMENT",
                                                                           "INVALID_ARGUMENT")


def test_the_caller_filled_in_by_an_inner_wrapper_is_audited(tmp_path: Path) -> None:
    """The contract with authentication: the audit wrapper sets a Caller, a wrapper inside it (authentication
    on a secured node; here a stand-in that names a fixed token) fills it in, and the line, written after
    the call failed, carries the token id and name."""
    def authenticate(_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        def behavior(request: Any, context: grpc.ServicerContext) -> Any:
            caller = current_caller.get()
            assert caller is not None
            caller.token_id, caller.name = "tok-123", "deploy-bot"
            return handler.unary_unary(request, context)
        return grpc.unary_unary_rpc_method_handler(behavior, handler.request_deserializer,
                                                   handler.response_serializer)

    def get(request: vault_pb2.GetRequest, context: grpc.ServicerContext) -> vault_pb2.Entry:
        errors.abort(context, errors.from_store_error(KeyNotFound(request.vault, request.key)))

    audit = AuditLog(str(tmp_path / "audit.log"), "n1", vaults_of, keys_of)
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    Registrar(server, [audit, authenticate]).add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "vaultd.v1.VaultService", {"Get": grpc.unary_unary_rpc_method_handler(
            get, vault_pb2.GetRequest.FromString, vault_pb2.Entry.SerializeToString)})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, pytest.raises(grpc.RpcError):
            vault_pb2_grpc.VaultServiceStub(channel).Get(vault_pb2.GetRequest(vault="v", key="k"), timeout=5,
                                                         metadata=[("x-request-id", "with-caller")])
        line = _wait_line(tmp_path / "audit.log", "with-caller")
        assert (line["token_id"], line["token_name"], line["code"], line["reason"], line["keys"]) == (
            "tok-123", "deploy-bot", "NOT_FOUND", "KEY_NOT_FOUND", ["k"])
    finally:
        server.stop(None).wait()
        audit.close()


def test_a_node_that_cannot_open_its_audit_log_does_not_start(tmp_path: Path) -> None:
    """Asked to audit, a node never serves unaudited: an audit path it cannot open is a startup failure."""
    secret = tmp_path / "secret"
    secret.write_text("x" * 40 + "\n")
    secret.chmod(0o600)
    proc = subprocess.run(
        [sys.executable, "-m", "vaultd.serve", "--node-id", "n1", "--data-dir", str(tmp_path / "data"),
         "--raft-addr", f"127.0.0.1:{free_port()}", "--grpc-addr", f"127.0.0.1:{free_port()}", "--metrics-addr", "",
         "--cluster-secret-file", str(secret), "--insecure-plaintext", "--insecure-no-auth",
         "--audit-log", str(tmp_path / "missing-dir" / "audit.log")],
        cwd=str(REPO), capture_output=True, timeout=60)
    assert proc.returncode == 1, proc.stderr.decode()
    assert b"cannot open the audit log" in proc.stderr

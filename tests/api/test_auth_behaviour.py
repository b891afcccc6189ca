"""Authentication behaviour beyond the matrix, through real node processes: ListVaults filtering, request ids
scoped by principal, policy and token changes taking effect at once (cache invalidation), LookupSelf,
CreateToken retries, replication of tokens to other nodes, and no secret in any log."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from tests.cluster import Cluster
from vaultd.client import error_from_rpc
from vaultd.v1 import auth_pb2, auth_pb2_grpc, vault_pb2, vault_pb2_grpc


def _md(token: str | None) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")] if token else []


class Node:
    """Raw stubs on one node's channel (TLS), each call with a given token."""

    def __init__(self, channel: grpc.Channel, root: str) -> None:
        self.channel = channel
        self.root = root
        self.vault = vault_pb2_grpc.VaultServiceStub(self.channel)
        self.auth = auth_pb2_grpc.AuthServiceStub(self.channel)

    def as_(self, token: str | None, stub: Any, method: str, request: Any) -> Any:
        return getattr(stub, method)(request, metadata=_md(token), timeout=10)

    def policy(self, name: str, *rules: tuple[str, list[str]]) -> None:
        self.as_(self.root, self.auth, "PutPolicy", auth_pb2.Policy(name=name, rules=[
            auth_pb2.PolicyRule(vault_glob=g, capabilities=caps) for g, caps in rules]))

    def token(self, name: str, *policies: str, request_id: str = "") -> auth_pb2.CreateTokenResponse:
        return self.as_(self.root, self.auth, "CreateToken",
                        auth_pb2.CreateTokenRequest(name=name, policies=list(policies), request_id=request_id))

    def code(self, fn: Callable[[], Any]) -> grpc.StatusCode:
        try:
            fn()
        except grpc.RpcError as err:
            return err.code()
        return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def one(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Node]]:
    cluster = Cluster(tmp_path_factory.mktemp("auth1"), size=1, fsync=False)
    try:
        cluster.start()
        assert cluster.token
        node = Node(cluster.channel(cluster.nodes[0]), cluster.token)
        yield cluster, node
        node.channel.close()
    finally:
        cluster.close()


def _decoded(page_token: str) -> bytes:
    import base64
    return base64.urlsafe_b64decode(page_token + "=" * (-len(page_token) % 4)) if page_token else b""


def test_list_vaults_shows_only_vaults_the_token_may_list(one: tuple[Cluster, Node]) -> None:
    _, n = one
    for name in ("team-a-db", "team-a-web", "team-b-db", "shared"):
        n.as_(n.root, n.vault, "CreateVault", vault_pb2.CreateVaultRequest(name=name))
    n.policy("team-a", ("team-a-*", ["list", "read"]), ("shared", ["list"]), ("team-a-web", ["read"]))
    token = n.token("a", "team-a").secret
    listed = n.as_(token, n.vault, "ListVaults", vault_pb2.ListVaultsRequest())
    # team-a-web: the exact rule (read only) is more specific than team-a-* and does not grant list
    assert [v.name for v in listed.vaults] == ["shared", "team-a-db"]
    assert [v.name for v in n.as_(n.root, n.vault, "ListVaults", vault_pb2.ListVaultsRequest()).vaults] == [
        "shared", "team-a-db", "team-a-web", "team-b-db"]
    pages, page_token, tokens = [], "", []
    for _ in range(10):
        page = n.as_(token, n.vault, "ListVaults", vault_pb2.ListVaultsRequest(page_size=1, page_token=page_token))
        pages.append([v.name for v in page.vaults])
        page_token = page.next_page_token
        tokens.append(page_token)
        if not page_token:
            break
    assert pages == [["shared"], ["team-a-db"]]     # full pages: the listing skips what the token may not see
    # A page token names only a vault the token was shown (it once named the last vault scanned, visible or
    # not, which let anyone page through every name with page_size=1).
    for t in tokens:
        assert all(hidden.encode() not in _decoded(t) for hidden in ("team-a-web", "team-b-db"))


def test_another_principal_reusing_a_request_id_gets_its_own_outcome(one: tuple[Cluster, Node]) -> None:
    _, n = one
    n.policy("rw-dedup", ("dedup", ["read", "write"]))
    a, b = n.token("a", "rw-dedup").secret, n.token("b", "rw-dedup").secret
    first = n.as_(a, n.vault, "Put", vault_pb2.PutRequest(vault="dedup", key="k", value=b"A", request_id="same"))
    assert first.version == 1
    # B's identical request id is a different entry: applied (version 2), not A's recorded answer.
    other = n.as_(b, n.vault, "Put", vault_pb2.PutRequest(vault="dedup", key="k", value=b"B", request_id="same"))
    assert other.version == 2 and other.revision > first.revision
    # A's retry still replays A's own first outcome.
    again = n.as_(a, n.vault, "Put", vault_pb2.PutRequest(vault="dedup", key="k", value=b"A", request_id="same"))
    assert (again.version, again.revision) == (first.version, first.revision)
    assert n.as_(a, n.vault, "Get", vault_pb2.GetRequest(vault="dedup", key="k")).value == b"B"


def test_policy_changes_and_revocation_take_effect_on_the_next_call(one: tuple[Cluster, Node]) -> None:
    _, n = one
    n.as_(n.root, n.vault, "Put", vault_pb2.PutRequest(vault="live", key="k", value=b"v"))
    n.policy("reader", ("live", ["read"]))
    created = n.token("r", "reader")
    get = lambda: n.as_(created.secret, n.vault, "Get", vault_pb2.GetRequest(vault="live", key="k"))  # noqa: E731
    assert n.code(get) == grpc.StatusCode.OK
    n.policy("reader", ("live", ["list"]))                       # replaced: read withdrawn
    assert n.code(get) == grpc.StatusCode.PERMISSION_DENIED
    n.policy("reader", ("live", ["read"]))
    assert n.code(get) == grpc.StatusCode.OK
    n.as_(n.root, n.auth, "DeletePolicy", auth_pb2.DeletePolicyRequest(name="reader"))
    assert n.code(get) == grpc.StatusCode.PERMISSION_DENIED      # a deleted policy grants nothing
    n.policy("reader", ("live", ["read"]))                       # the same name applies again
    assert n.code(get) == grpc.StatusCode.OK
    n.as_(n.root, n.auth, "RevokeToken", auth_pb2.RevokeTokenRequest(token_id=created.token_id))
    assert n.code(get) == grpc.StatusCode.UNAUTHENTICATED
    listed = {t.token_id: t for t in n.as_(n.root, n.auth, "ListTokens", auth_pb2.ListTokensRequest()).tokens}
    assert listed[created.token_id].revoked


def test_a_wrong_secret_for_a_real_token_id_is_unauthenticated(one: tuple[Cluster, Node]) -> None:
    _, n = one
    created = n.token("w")
    forged = f"vt.{created.token_id}.{'A' * 43}"
    with pytest.raises(grpc.RpcError) as info:
        n.as_(forged, n.auth, "LookupSelf", auth_pb2.LookupSelfRequest())
    err = error_from_rpc(info.value)
    assert (err.code, err.reason) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    assert created.secret not in err.message and forged not in err.message


def test_lookup_self_and_tokens_never_show_secrets(one: tuple[Cluster, Node]) -> None:
    _, n = one
    n.policy("p-self", ("x", ["read"]))
    created = n.token("ci-deploy", "p-self")
    assert created.secret.startswith(f"vt.{created.token_id}.")
    me = n.as_(created.secret, n.auth, "LookupSelf", auth_pb2.LookupSelfRequest())
    assert (me.token_id, me.name, list(me.policies), me.root) == (created.token_id, "ci-deploy", ["p-self"], False)
    assert not me.HasField("expires_at")
    root = n.as_(n.root, n.auth, "LookupSelf", auth_pb2.LookupSelfRequest())
    assert (root.token_id, root.root) == ("root", True)
    listing = n.as_(n.root, n.auth, "ListTokens", auth_pb2.ListTokensRequest())
    assert created.secret.split(".")[2] not in listing.SerializeToString().decode(errors="replace")


def test_create_token_retry_never_returns_a_secret_that_does_not_work(one: tuple[Cluster, Node]) -> None:
    _, n = one
    first = n.token("retry", request_id="create-once")
    with pytest.raises(grpc.RpcError) as info:
        n.token("retry", request_id="create-once")
    err = error_from_rpc(info.value)
    assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "TOKEN_ALREADY_CREATED")
    assert err.metadata == {"token_id": first.token_id}


def test_no_token_secret_reaches_the_logs(one: tuple[Cluster, Node]) -> None:
    cluster, n = one
    created = n.token("logged")
    for bad in (created.secret + "x", "vt.0123456789abcdef.wrong", cluster.token + "x"):
        assert n.code(lambda: n.as_(bad, n.auth, "LookupSelf", auth_pb2.LookupSelfRequest())) == \
            grpc.StatusCode.UNAUTHENTICATED
    text = "\n".join(cluster.logs().values())
    assert cluster.token not in text and created.secret.split(".")[2] not in text


def test_tokens_replicate_and_work_on_every_node(tmp_path) -> None:
    with Cluster(tmp_path, size=3, fsync=False) as cluster:
        cluster.start()
        assert cluster.token
        nodes = [Node(cluster.channel(p), cluster.token) for p in cluster.nodes]
        try:
            nodes[1].policy("everywhere", ("*", ["read", "write", "list"]))
            token = nodes[2].token("t", "everywhere").secret
            # A node knows a token once it applied its creation (within a heartbeat or so): wait for that.
            deadline = time.monotonic() + 10
            pending = list(nodes)
            while pending and time.monotonic() < deadline:
                pending = [node for node in pending if node.code(lambda node=node: node.as_(
                    token, node.auth, "LookupSelf", auth_pb2.LookupSelfRequest())) != grpc.StatusCode.OK]
                time.sleep(0.05 if pending else 0)
            assert not pending
            nodes[0].as_(token, nodes[0].vault, "Put", vault_pb2.PutRequest(vault="rep", key="k", value=b"v"))
            for node in nodes:   # linearizable reads: each node's barrier makes the token and value visible
                got = node.as_(token, node.vault, "Get", vault_pb2.GetRequest(vault="rep", key="k"))
                assert got.value == b"v"
            # GetVaultStats asks every peer with the root token: all three report, none is unreachable.
            stats = nodes[0].as_(token, nodes[0].vault, "GetVaultStats", vault_pb2.GetVaultStatsRequest(name="rep"))
            assert (list(stats.reporting_members), list(stats.unreachable_members)) == (["n1", "n2", "n3"], [])
        finally:
            for node in nodes:
                node.channel.close()


def test_imports_with_the_same_request_id_from_two_tokens_are_two_imports(one: tuple[Cluster, Node]) -> None:
    _, n = one
    n.policy("importer", ("imp-*", ["import", "write", "read"]))
    tokens = {"imp-a": n.token("a", "importer").secret, "imp-b": n.token("b", "importer").secret}

    def send(token: str, vault: str) -> vault_pb2.ImportVaultResponse:
        data = b'{"k": "v"}'
        header = vault_pb2.ImportHeader(vault=vault, format=vault_pb2.IMPORT_FORMAT_FLAT_JSON, size=len(data),
                                        request_id="same-import")
        chunks = iter([vault_pb2.ImportChunk(header=header), vault_pb2.ImportChunk(data=data)])
        return n.vault.ImportVault(chunks, metadata=_md(token), timeout=10)

    for vault, token in tokens.items():
        assert send(token, vault).imported == 1
    for vault, token in tokens.items():
        assert n.as_(token, n.vault, "Get", vault_pb2.GetRequest(vault=vault, key="k")).value == b"v"
    assert send(tokens["imp-a"], "imp-a").imported == 1      # A's retry replays A's outcome


def test_a_root_token_file_others_can_read_stops_the_node(tmp_path) -> None:
    with Cluster(tmp_path, size=1, fsync=False) as cluster:
        cluster.token_file.chmod(0o644)
        with pytest.raises(RuntimeError) as info:
            cluster.start(timeout=20)
        assert "root token file" in str(info.value) and cluster.token not in str(info.value)

"""The authorization matrix through a real node process over real gRPC: every RPC x {no token, expired,
revoked, token without the capability, token with it}, plus health (open) and reflection (needs a token).

One single-node cluster (--root-token-file) serves the whole module; tokens and policies are made through
AuthService with the root token, as an operator would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.cluster import Cluster
from vaultd.api import targets
from vaultd.client import error_from_rpc
from vaultd.store.policies import CAPABILITIES
from vaultd.v1 import auth_pb2, auth_pb2_grpc, cluster_pb2, cluster_pb2_grpc, vault_pb2, vault_pb2_grpc

UNAUTH, DENIED = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED


@dataclass
class Env:
    cluster: Cluster
    channel: grpc.Channel
    tokens: dict[str, str]          # label -> bearer token


def bearer(token: str | None) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")] if token else []


def root_call(env: Env, method: str, request: Any) -> Any:
    stub = auth_pb2_grpc.AuthServiceStub(env.channel)
    return getattr(stub, method)(request, metadata=bearer(env.cluster.token), timeout=10)


def _token(env: Env, name: str, policies: list[str], ttl: int = 0) -> str:
    return root_call(env, "CreateToken", auth_pb2.CreateTokenRequest(name=name, policies=policies,
                                                                     ttl_seconds=ttl)).secret


def _wait_unauthenticated(env: Env, token: str, timeout: float = 10.0) -> None:
    stub = auth_pb2_grpc.AuthServiceStub(env.channel)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stub.LookupSelf(auth_pb2.LookupSelfRequest(), metadata=bearer(token), timeout=5)
        except grpc.RpcError as err:
            assert err.code() == UNAUTH
            return
        time.sleep(0.1)
    raise AssertionError("token still accepted")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    cluster = Cluster(tmp_path_factory.mktemp("authz"), size=1, fsync=False)
    try:
        cluster.start()
        channel = cluster.channel(cluster.nodes[0])
        e = Env(cluster, channel, {})
        root_call(e, "PutPolicy", auth_pb2.Policy(name="all", rules=[
            auth_pb2.PolicyRule(vault_glob="*", capabilities=list(CAPABILITIES))]))
        for cap in CAPABILITIES:
            root_call(e, "PutPolicy", auth_pb2.Policy(name=f"no-{cap}", rules=[
                auth_pb2.PolicyRule(vault_glob="*", capabilities=[c for c in CAPABILITIES if c != cap])]))
            e.tokens[f"no-{cap}"] = _token(e, f"no-{cap}", [f"no-{cap}"])
        e.tokens["all"] = _token(e, "all", ["all"])
        e.tokens["none"] = _token(e, "none", [])
        e.tokens["expired"] = _token(e, "expired", ["all"], ttl=1)
        revoked = root_call(e, "CreateToken", auth_pb2.CreateTokenRequest(name="revoked", policies=["all"]))
        root_call(e, "RevokeToken", auth_pb2.RevokeTokenRequest(token_id=revoked.token_id))
        e.tokens["revoked"] = revoked.secret
        e.tokens["malformed"] = "vt.nothing"
        vault = vault_pb2_grpc.VaultServiceStub(channel)
        vault.Put(vault_pb2.PutRequest(vault="src", key="k", value=b"v"), metadata=bearer(cluster.token),
                  timeout=10)
        _wait_unauthenticated(e, e.tokens["expired"])
        yield e
    finally:
        cluster.close()


def _import(stub: Any, vault: str, md: list[tuple[str, str]]) -> Any:
    data = b'{"a": "1"}'
    chunks = [vault_pb2.ImportChunk(header=vault_pb2.ImportHeader(vault=vault, format=vault_pb2.IMPORT_FORMAT_FLAT_JSON,
                                                                  size=len(data))),
              vault_pb2.ImportChunk(data=data)]
    return stub.ImportVault(iter(chunks), metadata=md, timeout=10)


# method -> (service, call(stub, unique suffix, metadata)); each "with" call uses fresh vault names.
Call = Callable[[Any, str, list[tuple[str, str]]], Any]
V = vault_pb2
CALLS: dict[str, tuple[str, Call]] = {
    "CreateVault": ("vault", lambda s, u, m: s.CreateVault(V.CreateVaultRequest(name=f"c{u}"), metadata=m, timeout=10)),
    "GetVault": ("vault", lambda s, u, m: s.GetVault(V.GetVaultRequest(name="src"), metadata=m, timeout=10)),
    "UpdateVault": ("vault", lambda s, u, m: s.UpdateVault(V.UpdateVaultRequest(name="src", owner="o"), metadata=m,
                                                           timeout=10)),
    "ListVaults": ("vault", lambda s, u, m: s.ListVaults(V.ListVaultsRequest(), metadata=m, timeout=10)),
    "DeleteVault": ("vault", lambda s, u, m: s.DeleteVault(V.DeleteVaultRequest(name=f"d{u}"), metadata=m,
                                                           timeout=10)),
    "CopyVault": ("vault", lambda s, u, m: s.CopyVault(V.CopyVaultRequest(source="src", destination=f"cp{u}"),
                                                       metadata=m, timeout=10)),
    "Put": ("vault", lambda s, u, m: s.Put(V.PutRequest(vault="src", key=f"p{u}", value=b"x"), metadata=m,
                                           timeout=10)),
    "Get": ("vault", lambda s, u, m: s.Get(V.GetRequest(vault="src", key="k"), metadata=m, timeout=10)),
    "Delete": ("vault", lambda s, u, m: s.Delete(V.DeleteRequest(vault="src", key=f"x{u}"), metadata=m, timeout=10)),
    "Scan": ("vault", lambda s, u, m: s.Scan(V.ScanRequest(vault="src"), metadata=m, timeout=10)),
    "Txn": ("vault", lambda s, u, m: s.Txn(V.TxnRequest(vault="src", ops=[
        V.TxnOp(put=V.TxnPut(key=f"t{u}", value=b"v")), V.TxnOp(delete=V.TxnDelete(key=f"y{u}"))]),
        metadata=m, timeout=10)),
    "ExportVault": ("vault", lambda s, u, m: list(s.ExportVault(V.ExportVaultRequest(name="src"), metadata=m,
                                                                timeout=10))),
    "ImportVault": ("vault", lambda s, u, m: _import(s, f"i{u}", m)),
    "GetVaultStats": ("vault", lambda s, u, m: s.GetVaultStats(V.GetVaultStatsRequest(name="src"), metadata=m,
                                                               timeout=10)),
    "GetStatus": ("cluster", lambda s, u, m: s.GetStatus(cluster_pb2.GetStatusRequest(), metadata=m, timeout=10)),
    # Invalid ids: with the capability they pass authorization and are refused as INVALID_ARGUMENT,
    # so the one-node cluster keeps its membership.
    "AddMember": ("cluster", lambda s, u, m: s.AddMember(cluster_pb2.AddMemberRequest(node_id="bad id"),
                                                         metadata=m, timeout=10)),
    "RemoveMember": ("cluster", lambda s, u, m: s.RemoveMember(cluster_pb2.RemoveMemberRequest(node_id="bad id"),
                                                               metadata=m, timeout=10)),
    "GetLimits": ("cluster", lambda s, u, m: s.GetLimits(cluster_pb2.GetLimitsRequest(), metadata=m, timeout=10)),
    "SetLimits": ("cluster", lambda s, u, m: s.SetLimits(cluster_pb2.Limits(), metadata=m, timeout=10)),
    "GetLocalStats": ("cluster", lambda s, u, m: s.GetLocalStats(cluster_pb2.GetLocalStatsRequest(name="src"),
                                                                 metadata=m, timeout=10)),
    "PutPolicy": ("auth", lambda s, u, m: s.PutPolicy(auth_pb2.Policy(name=f"p{u}"), metadata=m, timeout=10)),
    "GetPolicy": ("auth", lambda s, u, m: s.GetPolicy(auth_pb2.GetPolicyRequest(name="all"), metadata=m,
                                                      timeout=10)),
    "ListPolicies": ("auth", lambda s, u, m: s.ListPolicies(auth_pb2.ListPoliciesRequest(), metadata=m, timeout=10)),
    "DeletePolicy": ("auth", lambda s, u, m: s.DeletePolicy(auth_pb2.DeletePolicyRequest(name=f"gone{u}"),
                                                            metadata=m, timeout=10)),
    "CreateToken": ("auth", lambda s, u, m: s.CreateToken(auth_pb2.CreateTokenRequest(name=f"t{u}"), metadata=m,
                                                          timeout=10)),
    "RevokeToken": ("auth", lambda s, u, m: s.RevokeToken(auth_pb2.RevokeTokenRequest(token_id="f" * 16),
                                                          metadata=m, timeout=10)),
    "ListTokens": ("auth", lambda s, u, m: s.ListTokens(auth_pb2.ListTokensRequest(), metadata=m, timeout=10)),
    "LookupSelf": ("auth", lambda s, u, m: s.LookupSelf(auth_pb2.LookupSelfRequest(), metadata=m, timeout=10)),
}
_STUBS = {"vault": vault_pb2_grpc.VaultServiceStub, "cluster": cluster_pb2_grpc.ClusterServiceStub,
          "auth": auth_pb2_grpc.AuthServiceStub}
_PREFIX = {"vault": targets.VAULT_SERVICE, "cluster": targets.CLUSTER_SERVICE, "auth": targets.AUTH_SERVICE}
_counter = iter(range(1_000_000))


def _full(name: str) -> str:
    return _PREFIX[CALLS[name][0]] + name


def _needed(name: str) -> list[str]:
    """Capabilities the method table requires for these requests (Txn deletes, so it needs delete too)."""
    rule = targets.rule_for(_full(name))
    assert rule is not None
    return sorted({c.capability for c in rule.checks if c.capability is not None})


def _invoke(env: Env, name: str, token: str | None) -> grpc.StatusCode:
    service, call = CALLS[name]
    try:
        call(_STUBS[service](env.channel), str(next(_counter)), bearer(token))
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def test_every_served_method_is_in_the_matrix() -> None:
    from vaultd.v1 import auth_pb2 as a, cluster_pb2 as c, vault_pb2 as v
    served = {m.name for mod, svc in ((v, "VaultService"), (c, "ClusterService"), (a, "AuthService"))
              for m in mod.DESCRIPTOR.services_by_name[svc].methods}
    assert served == set(CALLS)


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("who", ["no token", "expired", "revoked", "malformed"])
def test_without_a_valid_token_every_method_is_unauthenticated(env: Env, name: str, who: str) -> None:
    token = None if who == "no token" else env.tokens[who]
    assert _invoke(env, name, token) == UNAUTH


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_token_without_the_capability_is_denied_with_capability_and_vault(env: Env, name: str) -> None:
    needed = _needed(name)
    if not needed:   # token-only methods: a token with no policy at all suffices
        assert _invoke(env, name, env.tokens["none"]) not in (UNAUTH, DENIED)
        return
    for cap in needed:
        service, call = CALLS[name]
        with pytest.raises(grpc.RpcError) as info:
            call(_STUBS[service](env.channel), str(next(_counter)), bearer(env.tokens[f"no-{cap}"]))
        err = error_from_rpc(info.value)
        assert err.code == DENIED and err.reason == "PERMISSION_DENIED", (cap, err)
        assert err.metadata["capability"] == cap
        assert err.metadata["vault"] in ("src", "*") or err.metadata["vault"].startswith(("c", "d", "cp", "i"))


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_token_with_the_capability_passes(env: Env, name: str) -> None:
    code = _invoke(env, name, env.tokens["all"])
    if name in ("AddMember", "RemoveMember"):
        assert code == grpc.StatusCode.INVALID_ARGUMENT     # authorized, then refused on its bad input
    elif name in ("DeleteVault", "DeletePolicy", "RevokeToken"):
        assert code == grpc.StatusCode.NOT_FOUND            # authorized; nothing by that name
    else:
        assert code == grpc.StatusCode.OK


def test_health_is_open_and_reflection_needs_a_token(env: Env) -> None:
    health = health_pb2_grpc.HealthStub(env.channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(env.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    with pytest.raises(grpc.RpcError) as info:
        list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    assert info.value.code() == UNAUTH
    answers = list(stub.ServerReflectionInfo(iter([request]), metadata=bearer(env.tokens["none"]), timeout=10))
    names = {s.name for s in answers[0].list_services_response.service}
    assert "vaultd.v1.AuthService" in names

"""The method table (vaultd.api.targets) covers every RPC the server serves, and extracts names, not values."""

from __future__ import annotations

from vaultd.api import targets
from vaultd.v1 import cluster_pb2, vault_pb2


def _methods(module: object, service: str) -> list[str]:
    desc = module.DESCRIPTOR.services_by_name[service]  # type: ignore[attr-defined]
    return [f"/{desc.full_name}/{m.name}" for m in desc.methods]


def test_every_vault_and_cluster_method_has_a_row() -> None:
    served = _methods(vault_pb2, "VaultService") + _methods(cluster_pb2, "ClusterService")
    assert sorted(m for m in served if m not in targets.RULES) == []


def test_default_deny_health_open_reflection_needs_a_token() -> None:
    assert targets.rule_for("/vaultd.v1.AuthService/CreateToken") == targets.ADMIN_ONLY
    assert targets.rule_for("/vaultd.v1.VaultService/NoSuchMethod") == targets.ADMIN_ONLY
    assert targets.rule_for("/grpc.health.v1.Health/Check") is None
    assert targets.rule_for("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo") == targets.TOKEN_ONLY


def test_names_extracted_never_values() -> None:
    put = vault_pb2.PutRequest(vault="pay", key="stripe", value=b"sk_live_secret")
    assert targets.vaults_of("/vaultd.v1.VaultService/Put", put) == ["pay"]
    assert targets.keys_of(put) == ["stripe"]
    txn = vault_pb2.TxnRequest(vault="pay", ops=[vault_pb2.TxnOp(put=vault_pb2.TxnPut(key="a", value=b"v")),
                                                 vault_pb2.TxnOp(delete=vault_pb2.TxnDelete(key="b"))])
    assert targets.keys_of(txn) == ["a", "b"]
    checks = targets.RULES["/vaultd.v1.VaultService/Txn"].checks
    assert [(c.capability, c.vaults(txn)) for c in checks] == [("write", ["pay"]), ("delete", ["pay"])]
    copy = vault_pb2.CopyVaultRequest(source="a", destination="b")
    assert targets.vaults_of("/vaultd.v1.VaultService/CopyVault", copy) == ["a", "b"]

"""What each RPC touches: the capability it needs on which vault, and the key names it names.

One table for every method of the public API, read by authorization (which capability on which vault) and
the audit log (which vault and keys a request named). Why a table and not checks inside each servicer: a new
RPC without a row fails `tests/api/test_targets.py`, so no method can be served unchecked by forgetting a
line, and the audit log can never disagree with what was authorized.

A rule's `vaults(request)` returns the vault names the capability is checked against. Rules with no vault
(`scope=CLUSTER`) need the capability cluster-wide (admin), or only a valid token (`capability=None`).
ListVaults is filtered per vault by `list` instead of checked once. ImportVault's vault arrives in the first
message of its request stream, so its check runs when the header is read (`IMPORT_METHOD`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The capability names are the store's (it validates the policies that grant them).
from vaultd.store.policies import ADMIN, CAPABILITIES, DELETE, EXPORT, IMPORT, LIST, READ, WRITE  # noqa: F401

VAULT_SERVICE = "/vaultd.v1.VaultService/"
CLUSTER_SERVICE = "/vaultd.v1.ClusterService/"
AUTH_SERVICE = "/vaultd.v1.AuthService/"
IMPORT_METHOD = VAULT_SERVICE + "ImportVault"
LIST_VAULTS_METHOD = VAULT_SERVICE + "ListVaults"


@dataclass(frozen=True)
class Check:
    """`capability` on each vault `vaults(request)` returns; on the cluster when `vaults` is None."""

    capability: str | None
    vaults: Callable[[Any], list[str]] | None = None


@dataclass(frozen=True)
class Rule:
    checks: tuple[Check, ...]


def _field(name: str) -> Callable[[Any], list[str]]:
    return lambda request: [getattr(request, name)]


def _rule(*checks: Check) -> Rule:
    return Rule(tuple(checks))


_NAME, _VAULT = _field("name"), _field("vault")
TOKEN_ONLY = _rule(Check(None))
ADMIN_ONLY = _rule(Check(ADMIN))

RULES: dict[str, Rule] = {
    VAULT_SERVICE + "CreateVault": _rule(Check(WRITE, _NAME)),
    VAULT_SERVICE + "GetVault": _rule(Check(READ, _NAME)),
    VAULT_SERVICE + "UpdateVault": _rule(Check(WRITE, _NAME)),
    LIST_VAULTS_METHOD: TOKEN_ONLY,                        # filtered per vault by LIST
    VAULT_SERVICE + "DeleteVault": _rule(Check(DELETE, _NAME)),
    VAULT_SERVICE + "CopyVault": _rule(Check(EXPORT, _field("source")), Check(IMPORT, _field("destination")),
                                       Check(WRITE, _field("destination"))),
    VAULT_SERVICE + "Put": _rule(Check(WRITE, _VAULT)),
    VAULT_SERVICE + "Get": _rule(Check(READ, _VAULT)),
    VAULT_SERVICE + "Delete": _rule(Check(DELETE, _VAULT)),
    VAULT_SERVICE + "Scan": _rule(Check(READ, _VAULT)),
    # A transaction that deletes needs `delete` too: otherwise `write` alone could delete through Txn.
    VAULT_SERVICE + "Txn": _rule(Check(WRITE, _VAULT),
                                 Check(DELETE, lambda r: [r.vault] if any(op.HasField("delete")
                                                                           for op in r.ops) else [])),
    VAULT_SERVICE + "ExportVault": _rule(Check(EXPORT, _NAME)),
    # Applied to the ImportHeader. An import creates the vault and (mode overwrite) replaces values: a write,
    # as for CopyVault's destination.
    IMPORT_METHOD: _rule(Check(IMPORT, _VAULT), Check(WRITE, _VAULT)),
    VAULT_SERVICE + "GetVaultStats": _rule(Check(READ, _NAME)),
    CLUSTER_SERVICE + "GetStatus": TOKEN_ONLY,
    CLUSTER_SERVICE + "AddMember": ADMIN_ONLY,
    CLUSTER_SERVICE + "RemoveMember": ADMIN_ONLY,
    CLUSTER_SERVICE + "GetLimits": TOKEN_ONLY,
    CLUSTER_SERVICE + "SetLimits": ADMIN_ONLY,
    CLUSTER_SERVICE + "GetLocalStats": _rule(Check(READ, _NAME)),   # node-to-node, with the root token
    AUTH_SERVICE + "LookupSelf": TOKEN_ONLY,
}
# Every other AuthService method needs admin (tests/api/test_targets.py checks the proto has no other
# service without rows).
OPEN_SERVICES = ("/grpc.health.v1.Health/",)               # health stays open for load balancers
TOKEN_SERVICES = ("/grpc.reflection.v1alpha.ServerReflection/", "/grpc.reflection.v1.ServerReflection/")


def rule_for(method: str) -> Rule | None:
    """The rule for a full method name; None for the open health service. Unknown vaultd methods and every
    AuthService method without a row need admin (default deny)."""
    if method.startswith(OPEN_SERVICES):
        return None
    if method.startswith(TOKEN_SERVICES):
        return TOKEN_ONLY
    return RULES.get(method, ADMIN_ONLY)


def vaults_of(method: str, request: Any) -> list[str]:
    """Every vault a request names (deduplicated, in order), for the audit log."""
    rule = RULES.get(method)
    out: list[str] = []
    if rule is None or request is None:
        return out
    for check in rule.checks:
        if check.vaults is not None:
            for name in check.vaults(request):
                if name and name not in out:
                    out.append(name)
    return out


def keys_of(request: Any) -> list[str]:
    """The key names a request names (Put/Get/Delete: one; Txn: each op's; Scan: none), never values."""
    if request is None:
        return []
    key = getattr(request, "key", None)
    if isinstance(key, str) and key:
        return [key]
    ops = getattr(request, "ops", None)
    if ops is not None:
        return [getattr(op, op.WhichOneof("op")).key for op in ops if op.WhichOneof("op")]
    return []

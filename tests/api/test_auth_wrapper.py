"""The Authenticator against a real StateMachine (clock injected to test expiry at its edge), and the wrapper
in a real in-process server: what it leaves in `current_caller` for an outer wrapper (the audit log)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.api.conftest import in_process_node
from vaultd.api import errors
from vaultd.api.auth import ROOT_PRINCIPAL, Authenticator, new_token
from vaultd.observability.context import Caller, current_caller
from vaultd.store import StateMachine
from vaultd.store import commands as c
from vaultd.store.results import PolicyRule
from vaultd.v1 import auth_pb2, auth_pb2_grpc, vault_pb2, vault_pb2_grpc

ROOT = "r" * 43
T0 = 1_700_000_000_000_000_000


class Log:
    """Applies commands like the replication layer would (consecutive indexes, batch timestamp T0)."""

    def __init__(self, machine: StateMachine) -> None:
        self.machine, self.index = machine, 0

    def apply(self, *commands: c.Command) -> None:
        self.index += 1
        results = self.machine.apply(self.index, 1, c.Batch(T0, tuple(c.Envelope("", x) for x in commands)))
        assert all(r.ok for r in results), results


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[StateMachine, Log]]:
    machine = StateMachine(str(tmp_path / "s.db"))
    yield machine, Log(machine)
    machine.close()


def _md(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def _reason(fn: Any) -> str:
    with pytest.raises(errors.ApiError) as info:
        fn()
    return info.value.failure.reason


def test_root_token_and_malformed_or_missing_metadata(store: tuple[StateMachine, Log]) -> None:
    machine, _ = store
    auth = Authenticator(machine, ROOT)
    root = auth.authenticate(_md(ROOT))
    assert root.token_id == ROOT_PRINCIPAL and root.root and root.allows("admin", "*")
    assert auth.authenticate([("authorization", f"bearer {ROOT}")]).root        # the scheme is case-insensitive
    for metadata in ([], [("authorization", ROOT)], _md(ROOT + "x"), _md("vt.abc"), _md("vt..x"), _md("")):
        assert _reason(lambda: auth.authenticate(metadata)) == "UNAUTHENTICATED"
    # Without a root token configured, nothing equals it (not even an empty bearer).
    assert _reason(lambda: Authenticator(machine, None).authenticate(_md(""))) == "UNAUTHENTICATED"


def test_expiry_is_judged_by_the_clock_at_request_time(store: tuple[StateMachine, Log]) -> None:
    machine, log = store
    now = [T0]
    auth = Authenticator(machine, ROOT, clock=lambda: now[0])
    token_id, bearer, digest = new_token()
    log.apply(c.CreateToken(token_id, "short", (), digest, 30))
    now[0] = T0 + 30 * 10**9 - 1
    assert auth.authenticate(_md(bearer)).token_id == token_id
    now[0] = T0 + 30 * 10**9
    assert _reason(lambda: auth.authenticate(_md(bearer))) == "UNAUTHENTICATED"


def test_cached_tokens_and_policies_follow_every_applied_change(store: tuple[StateMachine, Log]) -> None:
    machine, log = store
    auth = Authenticator(machine, ROOT)
    token_id, bearer, digest = new_token()
    log.apply(c.PutPolicy("p", (PolicyRule("app", ("read",)),)), c.CreateToken(token_id, "t", ("p",), digest))
    assert auth.authenticate(_md(bearer)).allows("read", "app")
    log.apply(c.PutPolicy("p", (PolicyRule("app", ("list",)),)))
    assert not auth.authenticate(_md(bearer)).allows("read", "app")
    log.apply(c.DeletePolicy("p"))
    assert auth.authenticate(_md(bearer)).allows("list", "app") is False
    log.apply(c.RevokeToken(token_id))
    assert _reason(lambda: auth.authenticate(_md(bearer))) == "UNAUTHENTICATED"
    secret = bearer.split(".", 2)[2]
    assert _reason(lambda: auth.authenticate(_md(f"vt.{token_id}.{secret[:-1]}"))) == "UNAUTHENTICATED"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, list[Caller]]]:
    """A real single-node server with auth on, and an outermost wrapper that keeps each call's Caller."""
    root_file = tmp_path / "root-token"
    root_file.write_text(ROOT + "\n")
    root_file.chmod(0o600)
    seen: list[Caller] = []

    def audit(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.request_streaming or handler.response_streaming:
            return handler
        inner = handler.unary_unary

        def behavior(request: Any, context: grpc.ServicerContext) -> Any:
            caller = Caller()
            current_caller.set(caller)
            seen.append(caller)
            return inner(request, context)
        return grpc.unary_unary_rpc_method_handler(behavior, handler.request_deserializer,
                                                   handler.response_serializer)

    with in_process_node(tmp_path, [audit], root_token_file=str(root_file), insecure_no_auth=False) as (cfg, _):
        yield cfg.grpc_addr, seen


def test_the_wrapper_fills_the_outer_callers_identity_never_the_secret(served: tuple[str, list[Caller]]) -> None:
    addr, seen = served
    with grpc.insecure_channel(addr) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        auth.PutPolicy(auth_pb2.Policy(name="r", rules=[auth_pb2.PolicyRule(vault_glob="x", capabilities=["read"])]),
                       metadata=_md(ROOT), timeout=10)
        created = auth.CreateToken(auth_pb2.CreateTokenRequest(name="ci", policies=["r"]), metadata=_md(ROOT),
                                   timeout=10)
        seen.clear()
        vault = vault_pb2_grpc.VaultServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            vault.Put(vault_pb2.PutRequest(vault="x", key="k", value=b"v"), metadata=_md(created.secret), timeout=10)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError):
            vault.Get(vault_pb2.GetRequest(vault="x", key="k"), metadata=_md("vt.0.bad"), timeout=10)
    denied, rejected = seen
    assert (denied.token_id, denied.name, denied.policies) == (created.token_id, "ci", ("r",))
    assert (rejected.token_id, rejected.name) == ("", "")          # unauthenticated: nobody
    assert created.secret.split(".", 2)[2] not in repr([getattr(denied, s) for s in Caller.__slots__])

"""The failure -> status table, checked over real gRPC: the server side (api/errors.py through the servicer
wrapper) and the client side (vaultd.client typed exceptions) must agree on code, reason and metadata."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from vaultd import client as vc
from vaultd.api import errors
from vaultd.api.base import unary
from vaultd.replication import errors as repl
from vaultd.store import errors as se
from vaultd.v1 import vault_pb2, vault_pb2_grpc

SECRET = b"sk_live_do_not_leak"


class RaisingServicer(vault_pb2_grpc.VaultServiceServicer):
    """Get raises whatever the test put in `self.exc`; Put echoes, proving the server survived."""

    exc: BaseException = RuntimeError("unset")

    @unary
    def Get(self, request: vault_pb2.GetRequest, context: grpc.ServicerContext) -> vault_pb2.Entry:
        raise self.exc

    @unary
    def Put(self, request: vault_pb2.PutRequest, context: grpc.ServicerContext) -> vault_pb2.PutResponse:
        return vault_pb2.PutResponse(version=len(request.value))


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[RaisingServicer, vc.VaultClient]]:
    servicer = RaisingServicer()
    server = grpc.server(ThreadPoolExecutor(max_workers=4),
                         options=[("grpc.max_receive_message_length", 4 * 1024 * 1024)])
    vault_pb2_grpc.add_VaultServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    client = vc.VaultClient([f"127.0.0.1:{port}"], timeout=2.0)
    try:
        yield servicer, client
    finally:
        client.close()
        server.stop(None).wait()


CASES = [
    (se.InvalidName("Bad Name", "must be [A-Za-z0-9_.-]"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_VAULT_NAME",
     vc.InvalidArgument),
    (se.InvalidKey("", "must not be empty"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_KEY", vc.InvalidArgument),
    (se.InvalidArgument("page_size", "bad"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT",
     vc.InvalidArgument),
    (se.MalformedImport("not JSON", line=3), grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_IMPORT",
     vc.InvalidArgument),
    (se.VaultNotFound("app"), grpc.StatusCode.NOT_FOUND, "VAULT_NOT_FOUND", vc.NotFound),
    (se.KeyNotFound("app", "k"), grpc.StatusCode.NOT_FOUND, "KEY_NOT_FOUND", vc.NotFound),
    (se.VaultExists("app"), grpc.StatusCode.ALREADY_EXISTS, "VAULT_EXISTS", vc.AlreadyExists),
    (se.VersionMismatch(3, 4, "k"), grpc.StatusCode.FAILED_PRECONDITION, "VERSION_MISMATCH", vc.VersionMismatch),
    (se.TooManyVaults(1000), grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_VAULTS", vc.LimitExceeded),
    (se.VaultFull("app", 10), grpc.StatusCode.RESOURCE_EXHAUSTED, "VAULT_FULL", vc.LimitExceeded),
    (se.ValueTooLarge(2 << 20, 1 << 20, "k"), grpc.StatusCode.RESOURCE_EXHAUSTED, "VALUE_TOO_LARGE",
     vc.LimitExceeded),
    (repl.Unavailable("no leader", reason="NO_LEADER"), grpc.StatusCode.UNAVAILABLE, "NO_LEADER", vc.Unavailable),
    (repl.Unavailable("catching up", reason="NOT_READY"), grpc.StatusCode.UNAVAILABLE, "NOT_READY",
     vc.Unavailable),
    (repl.Unavailable("queue full", reason="OVERLOADED"), grpc.StatusCode.UNAVAILABLE, "OVERLOADED",
     vc.Unavailable),
    (repl.Timeout("slow"), grpc.StatusCode.DEADLINE_EXCEEDED, errors.AMBIGUOUS_TIMEOUT, vc.DeadlineExceeded),
    (repl.LeaderChanged("moved"), grpc.StatusCode.UNAVAILABLE, errors.AMBIGUOUS_LEADER_CHANGE, vc.Unavailable),
    (repl.UnknownOutcome("lost"), grpc.StatusCode.UNAVAILABLE, errors.AMBIGUOUS_LEADER_CHANGE, vc.Unavailable),
    (repl.MembershipError("busy"), grpc.StatusCode.FAILED_PRECONDITION, "MEMBERSHIP_CHANGE_REJECTED",
     vc.FailedPrecondition),
    (se.PolicyNotFound("dev"), grpc.StatusCode.NOT_FOUND, "POLICY_NOT_FOUND", vc.NotFound),
    (se.TokenNotFound("0" * 16), grpc.StatusCode.NOT_FOUND, "TOKEN_NOT_FOUND", vc.NotFound),
    (se.TooManyPolicies(1000), grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_POLICIES", vc.LimitExceeded),
    (se.TooManyTokens(10000), grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_TOKENS", vc.LimitExceeded),
    (errors.unauthenticated("missing token"), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED",
     vc.Unauthenticated),
    (errors.permission_denied("read", "app"), grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED",
     vc.PermissionDenied),
]


@pytest.mark.parametrize("exc,code,reason,cls", CASES, ids=[c[2] + "-" + type(c[0]).__name__ for c in CASES])
def test_each_failure_maps_to_one_status_with_error_info(served, exc, code, reason, cls) -> None:
    servicer, client = served
    servicer.exc = exc
    with pytest.raises(cls) as info:
        client.get("app", "k", timeout=0.5)  # retryable ones are retried until this budget, then raised
    err = info.value
    assert err.code == code
    assert err.reason == reason
    if isinstance(exc, se.StoreError):
        assert err.metadata == exc.metadata
    if isinstance(err, vc.VersionMismatch):
        assert (err.expected, err.actual) == (3, 4)
    if isinstance(err, vc.PermissionDenied):
        assert (err.capability, err.vault) == ("read", "app")


def test_unknown_exception_is_internal_logged_without_args_and_server_keeps_serving(served, caplog) -> None:
    servicer, client = served
    servicer.exc = ValueError(SECRET.decode())
    with caplog.at_level(logging.ERROR, logger="vaultd.api"):
        with pytest.raises(vc.InternalError) as info:
            client.get("app", "k")
    assert info.value.code == grpc.StatusCode.INTERNAL and info.value.reason == "INTERNAL"
    assert SECRET.decode() not in str(info.value)
    assert any("ValueError" in r.getMessage() for r in caplog.records)
    assert all(SECRET.decode() not in r.getMessage() for r in caplog.records)
    assert client.put("app", "k", b"abc").version == 3


def test_every_store_reason_is_in_the_table() -> None:
    reasons = {cls.reason for cls in se._BY_REASON.values()}
    assert reasons <= set(errors.STORE_REASON_CODES)


def test_oversize_request_is_resource_exhausted_and_connection_survives(served) -> None:
    _, client = served
    with pytest.raises(vc.LimitExceeded) as info:
        client.put("app", "k", b"x" * (5 * 1024 * 1024))
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.reason == "REQUEST_TOO_LARGE"
    assert client.put("app", "k", b"x" * (1024 * 1024)).version == 1024 * 1024

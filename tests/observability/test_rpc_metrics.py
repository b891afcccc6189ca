"""RpcMetrics on a real gRPC server over loopback (a small servicer of the real vaultd.v1 service), wrapped at
registration by vaultd.api.wrapping.Registrar as build_server does."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from prometheus_client import REGISTRY

from vaultd.api.wrapping import Registrar
from vaultd.observability.context import current_ids
from vaultd.observability.logs import setup_logging
from vaultd.observability.rpc_metrics import RpcMetrics, _final_code
from vaultd.v1 import vault_pb2, vault_pb2_grpc

pytestmark = pytest.mark.timeout(60)
SERVICE = "vaultd.v1.VaultService"


class Servicer(vault_pb2_grpc.VaultServiceServicer):
    """Behaviour chosen by the request so each status path is reachable."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[str, str]] = {}

    def Put(self, request: vault_pb2.PutRequest, context: grpc.ServicerContext) -> vault_pb2.PutResponse:
        self.seen[request.key] = current_ids()
        if request.key == "abort":
            context.abort(grpc.StatusCode.NOT_FOUND, "vault not found")
        if request.key == "set_code":
            context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
            context.set_details("version mismatch")
            return vault_pb2.PutResponse()
        if request.key == "raise":
            raise RuntimeError("unexpected failure")
        if request.key == "slow":
            time.sleep(0.3)
        logging.getLogger("vaultd.test").info("handled put")
        return vault_pb2.PutResponse(version=1, revision=1)

    def Get(self, request: vault_pb2.GetRequest, context: grpc.ServicerContext) -> vault_pb2.Entry:
        time.sleep(0.5)  # longer than the client's deadline
        return vault_pb2.Entry(key=request.key)

    def ExportVault(self, request: vault_pb2.ExportVaultRequest,
                    context: grpc.ServicerContext) -> Iterator[vault_pb2.ExportChunk]:
        yield vault_pb2.ExportChunk(data=b"{")
        if request.name == "abort":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "no")
        if request.name == "raise":
            raise RuntimeError("broken stream")
        yield vault_pb2.ExportChunk(data=b"}")

    def ImportVault(self, request_iterator: Iterator[vault_pb2.ImportChunk],
                    context: grpc.ServicerContext) -> vault_pb2.ImportVaultResponse:
        count = sum(1 for _ in request_iterator)
        return vault_pb2.ImportVaultResponse(imported=count)


def _bidi_echo(request_iterator: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    yield from request_iterator


@pytest.fixture
def server() -> Iterator[tuple[vault_pb2_grpc.VaultServiceStub, grpc.Channel, Servicer]]:
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    registrar = Registrar(srv, [RpcMetrics(slow_request_seconds=0.2)])
    servicer = Servicer()
    vault_pb2_grpc.add_VaultServiceServicer_to_server(servicer, registrar)
    # Only a generic handler (no registered methods): the fallback path grpcio asks on every call.
    registrar.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "test.Echo", {"Chat": grpc.stream_stream_rpc_method_handler(_bidi_echo)})])
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield vault_pb2_grpc.VaultServiceStub(channel), channel, servicer
    finally:
        channel.close()
        srv.stop(None).wait(5)


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _handled(grpc_type: str, method: str, code: str, service: str = SERVICE) -> float:
    return _value("grpc_server_handled_total", grpc_type=grpc_type, grpc_service=service, grpc_method=method,
                  grpc_code=code)


def _started(grpc_type: str, method: str, service: str = SERVICE) -> float:
    return _value("grpc_server_started_total", grpc_type=grpc_type, grpc_service=service, grpc_method=method)


def _wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def test_unary_codes_counted_with_full_names(server) -> None:
    stub, _, _ = server
    before = {code: _handled("unary", "Put", code) for code in
              ("OK", "NOT_FOUND", "FAILED_PRECONDITION", "UNKNOWN")}
    started = _started("unary", "Put")
    hist = _value("grpc_server_handling_seconds_count", grpc_type="unary", grpc_service=SERVICE, grpc_method="Put")

    assert stub.Put(vault_pb2.PutRequest(vault="v", key="ok", value=b"x")).version == 1
    expected = {"abort": grpc.StatusCode.NOT_FOUND, "set_code": grpc.StatusCode.FAILED_PRECONDITION,
                "raise": grpc.StatusCode.UNKNOWN}
    for key, code in expected.items():
        with pytest.raises(grpc.RpcError) as err:
            stub.Put(vault_pb2.PutRequest(vault="v", key=key, value=b"x"))
        assert err.value.code() == code

    after = {code: _handled("unary", "Put", code) for code in before}
    assert {code: after[code] - before[code] for code in before} == {
        "OK": 1, "NOT_FOUND": 1, "FAILED_PRECONDITION": 1, "UNKNOWN": 1}
    assert _started("unary", "Put") - started == 4
    assert _value("grpc_server_handling_seconds_count", grpc_type="unary", grpc_service=SERVICE,
                  grpc_method="Put") - hist == 4


def test_server_stream_ok_abort_and_exception(server) -> None:
    stub, _, _ = server
    before = {code: _handled("server_stream", "ExportVault", code) for code in ("OK", "PERMISSION_DENIED", "UNKNOWN")}
    assert [c.data for c in stub.ExportVault(vault_pb2.ExportVaultRequest(name="ok"))] == [b"{", b"}"]
    for name, code in (("abort", grpc.StatusCode.PERMISSION_DENIED), ("raise", grpc.StatusCode.UNKNOWN)):
        with pytest.raises(grpc.RpcError) as err:
            list(stub.ExportVault(vault_pb2.ExportVaultRequest(name=name)))
        assert err.value.code() == code
    # The server records the outcome after the last message is sent: wait for it rather than race it.
    _wait_for(lambda: all(_handled("server_stream", "ExportVault", c) - before[c] == 1 for c in before))


def test_client_stream_and_bidi(server) -> None:
    stub, channel, _ = server
    ok_import = _handled("client_stream", "ImportVault", "OK")
    chunks = [vault_pb2.ImportChunk(data=b"a"), vault_pb2.ImportChunk(data=b"b")]
    assert stub.ImportVault(iter(chunks)).imported == 2
    assert _handled("client_stream", "ImportVault", "OK") - ok_import == 1

    ok_chat = _handled("bidi_stream", "Chat", "OK", service="test.Echo")
    chat = channel.stream_stream("/test.Echo/Chat")
    assert list(chat(iter([b"1", b"2"]))) == [b"1", b"2"]
    _wait_for(lambda: _handled("bidi_stream", "Chat", "OK", service="test.Echo") - ok_chat == 1)
    assert _started("bidi_stream", "Chat", service="test.Echo") >= 1


def test_deadline_exceeded_is_recorded(server) -> None:
    stub, _, _ = server
    before = _handled("unary", "Get", "DEADLINE_EXCEEDED")
    with pytest.raises(grpc.RpcError) as err:
        stub.Get(vault_pb2.GetRequest(vault="v", key="k"), timeout=0.1)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    _wait_for(lambda: _handled("unary", "Get", "DEADLINE_EXCEEDED") - before == 1)


def test_request_context_and_slow_request_log(server) -> None:
    stub, _, servicer = server
    out = io.StringIO()
    handler = setup_logging("n7", "json", "INFO", stream=out)
    try:
        stub.Put(vault_pb2.PutRequest(vault="v", key="ok", value=b"x", request_id="rid-from-request"))
        stub.Put(vault_pb2.PutRequest(vault="v", key="slow", value=b"x"),
                 metadata=[("x-request-id", "rid-from-metadata")])
    finally:
        logging.getLogger().removeHandler(handler)
    assert servicer.seen["ok"] == ("/vaultd.v1.VaultService/Put", "rid-from-request")
    assert servicer.seen["slow"] == ("/vaultd.v1.VaultService/Put", "rid-from-metadata")
    lines = out.getvalue().splitlines()
    handled = [ln for ln in lines if '"msg":"handled put"' in ln]
    assert handled and '"request_id":"rid-from-request"' in handled[0] and '"node":"n7"' in handled[0]
    slow = [ln for ln in lines if '"msg":"slow_request"' in ln]
    assert len(slow) == 1
    assert '"request_id":"rid-from-metadata"' in slow[0] and '"code":"OK"' in slow[0]
    assert '"method":"/vaultd.v1.VaultService/Put"' in slow[0]


def test_request_without_id_gets_one(server) -> None:
    stub, _, servicer = server
    stub.Put(vault_pb2.PutRequest(vault="v", key="ok", value=b"x"))
    method, rid = servicer.seen["ok"]
    assert method == "/vaultd.v1.VaultService/Put" and len(rid) == 16


def test_unknown_method_not_counted(server) -> None:
    _, channel, _ = server
    with pytest.raises(grpc.RpcError) as err:
        channel.unary_unary("/vaultd.v1.VaultService/NoSuchMethod")(b"")
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert _started("unary", "NoSuchMethod") == 0


def test_request_id_from_the_request_is_bounded_like_the_metadata_one(server) -> None:
    """Both sources are client text: each log line carries at most 64 characters of it, so a client cannot
    inflate every line of its request (the store alone accepts ids of up to 512)."""
    stub, _, servicer = server
    stub.Put(vault_pb2.PutRequest(vault="v", key="ok", value=b"x", request_id="r" * 5000))
    assert servicer.seen["ok"][1] == "r" * 64
    stub.Put(vault_pb2.PutRequest(vault="v", key="ok", value=b"x"), metadata=[("x-request-id", "m" * 5000)])
    assert servicer.seen["ok"][1] == "m" * 64


def test_a_generated_request_id_is_the_same_in_every_line_of_the_rpc(server) -> None:
    """The id is found lazily, at the first log line; the handler's line and the slow-request line that the
    wrapper writes after it must still agree."""
    stub, _, servicer = server
    out = io.StringIO()
    handler = setup_logging("n7", "json", "INFO", stream=out)
    try:
        stub.Put(vault_pb2.PutRequest(vault="v", key="slow", value=b"x"))
    finally:
        logging.getLogger().removeHandler(handler)
    _, rid = servicer.seen["slow"]
    slow = [ln for ln in out.getvalue().splitlines() if '"msg":"slow_request"' in ln]
    assert len(rid) == 16 and len(slow) == 1 and f'"request_id":"{rid}"' in slow[0]


class _EndedCall:
    """A ServicerContext as the handler finds it once it returned or raised."""

    def __init__(self, code: grpc.StatusCode | None, active: bool, remaining: float) -> None:
        self._code, self._active, self._remaining = code, active, remaining

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def is_active(self) -> bool:
        return self._active

    def time_remaining(self) -> float:
        return self._remaining


@pytest.mark.parametrize("code, active, remaining, raised, expected", [
    (grpc.StatusCode.NOT_FOUND, True, 5.0, True, "NOT_FOUND"),       # aborted: the code it set
    (None, True, 5.0, False, "OK"),
    (None, True, 5.0, True, "UNKNOWN"),                               # a bug: grpcio answers UNKNOWN
    (None, False, 5.0, True, "CANCELLED"),     # the client left; its request stream raised in the handler
    (None, False, 0.0, True, "DEADLINE_EXCEEDED"),
    (None, False, 5.0, False, "CANCELLED"),
])
def test_final_code(code, active, remaining, raised, expected) -> None:
    assert _final_code(_EndedCall(code, active, remaining), raised) == expected

"""Registrar wraps each method handler once: registered handlers at registration, generic ones on first use
and again only when the generic handler hands out a different handler object (grpcio asks it per RPC)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import grpc

from vaultd.api.wrapping import Registrar


class _FakeServer:
    def __init__(self) -> None:
        self.registered: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
        self.generic: list[grpc.GenericRpcHandler] = []

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.registered[service] = handlers

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self.generic.extend(handlers)


class _Generic(grpc.GenericRpcHandler):
    def __init__(self) -> None:
        self.handler = grpc.unary_unary_rpc_method_handler(lambda request, context: request)

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler | None:
        return self.handler if handler_call_details.method == "/test.S/M" else None


def _recording_wrapper(log: list[str], tag: str) -> Any:
    def wrap(full_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        log.append(f"{tag}:{full_method}")
        def behavior(request: Any, context: Any) -> Any:
            return tag, handler.unary_unary(request, context)
        return grpc.unary_unary_rpc_method_handler(behavior)
    return wrap


def test_registered_handlers_are_wrapped_at_registration_outermost_first() -> None:
    log: list[str] = []
    server = _FakeServer()
    registrar = Registrar(server, [_recording_wrapper(log, "outer"), _recording_wrapper(log, "inner")])
    registrar.add_registered_method_handlers("test.S", {"M": grpc.unary_unary_rpc_method_handler(lambda r, c: r)})
    assert log == ["inner:/test.S/M", "outer:/test.S/M"]
    assert server.registered["test.S"]["M"].unary_unary("x", None) == ("outer", ("inner", "x"))


def test_generic_handlers_are_wrapped_once_per_handler_object() -> None:
    log: list[str] = []
    server = _FakeServer()
    inner = _Generic()
    Registrar(server, [_recording_wrapper(log, "w")]).add_generic_rpc_handlers([inner])
    (wrapped,) = server.generic
    details = SimpleNamespace(method="/test.S/M", invocation_metadata=())
    first = wrapped.service(details)
    assert wrapped.service(details) is first and log == ["w:/test.S/M"]
    inner.handler = grpc.unary_unary_rpc_method_handler(lambda request, context: request * 2)
    assert wrapped.service(details).unary_unary("x", None) == ("w", "xx") and len(log) == 2
    assert wrapped.service(SimpleNamespace(method="/test.S/Other", invocation_metadata=())) is None

"""Undecodable request messages get INVALID_ARGUMENT with an ErrorInfo, like every other bad input.

grpcio decodes each request before any handler runs. When the bytes are not a valid message (truncated, or
a string field holding invalid UTF-8, which some clients' libraries do send) it answers INTERNAL "Exception
deserializing request!" without an ErrorInfo and logs a traceback, as if the server were broken. This
interceptor gives each vaultd method a decoder that turns a failure into a marker, and answers the marker
with INVALID_ARGUMENT (reason INVALID_ARGUMENT, field "request") through the one error table. Other
services (health, reflection) keep grpcio's behaviour.

build_server installs it innermost, so the metrics interceptor records the final status.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc

from vaultd.api import errors

_PREFIX = "/vaultd."


class _Undecodable:
    """Stands in for a request message whose bytes could not be decoded."""

    __slots__ = ()


UNDECODABLE = _Undecodable()


def _invalid() -> errors.ApiError:
    return errors.invalid_argument("the request is not a valid protobuf message for this method", field="request")


def _tolerant(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:  # noqa: BLE001 - whatever the decoder raises, the bytes were the client's
            return UNDECODABLE
    return parse


def _checked(requests: Iterator[Any]) -> Iterator[Any]:
    """A request stream that raises ApiError (mapped by the servicer's wrapper) at an undecodable message."""
    for request in requests:
        if request is UNDECODABLE:
            raise _invalid()
        yield request


def _guard(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    parse = _tolerant(handler.request_deserializer)
    serialize = handler.response_serializer
    if handler.request_streaming:
        behavior = handler.stream_unary or handler.stream_stream

        def from_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            return behavior(_checked(requests), context)
        make = (grpc.stream_unary_rpc_method_handler if handler.stream_unary is not None
                else grpc.stream_stream_rpc_method_handler)
        return make(from_stream, parse, serialize)
    behavior = handler.unary_unary or handler.unary_stream

    def from_message(request: Any, context: grpc.ServicerContext) -> Any:
        if request is UNDECODABLE:
            errors.abort(context, _invalid().failure)
        return behavior(request, context)
    make = (grpc.unary_unary_rpc_method_handler if handler.unary_unary is not None
            else grpc.unary_stream_rpc_method_handler)
    return make(from_message, parse, serialize)


class DecodeGuard(grpc.ServerInterceptor):
    """Wraps each vaultd method's handler once (grpcio calls intercept_service for every RPC)."""

    def __init__(self) -> None:
        # method -> (the servicer's handler, our wrapper); a dict swap is atomic, races only rebuild
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
                          handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or handler.request_deserializer is None or not method.startswith(_PREFIX):
            return handler
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = _guard(handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

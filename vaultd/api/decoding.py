"""Undecodable request messages get INVALID_ARGUMENT with an ErrorInfo, like every other bad input.

grpcio decodes each request before any handler runs. When the bytes are not a valid message (truncated, or
a string field holding invalid UTF-8, which some clients' libraries do send) it answers INTERNAL "Exception
deserializing request!" without an ErrorInfo and logs a traceback, as if the server were broken. This
wrapper gives each vaultd method a decoder that turns a failure into a marker, and answers the marker
with INVALID_ARGUMENT (reason INVALID_ARGUMENT, field "request") through the one error table. Other
services (health, reflection) keep grpcio's behaviour.

build_server applies it innermost, so the metrics wrapper records the final status.
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


def guard_decoding(full_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """The handler wrapper (vaultd.api.wrapping) for vaultd's own methods; others are returned unchanged."""
    if handler.request_deserializer is None or not full_method.startswith(_PREFIX):
        return handler
    return _guard(handler)

"""Per-RPC observability: the go-grpc-prometheus metrics, the request context for logs, the slow-request log.

`RpcMetrics` wraps a method handler once, when the server registers it (vaultd.api.server applies it to
every service: VaultService, ClusterService, health, reflection), so it sees each RPC's final status code,
including calls that end in `context.abort`, `context.set_code` or an uncaught exception (which grpcio
reports as UNKNOWN).

Why a wrapper applied at registration rather than a grpc.ServerInterceptor: grpcio runs every interceptor's
`intercept_service` for every RPC, on the server's one polling thread, while holding the server's lock. On a
busy, GIL-bound node that per-RPC work, and every microsecond on the request thread, costs several times
what it costs in a hot loop (README "Cost of observability"). So the request thread does only what it must:
one contextvar set (the request id is resolved only if a log line asks for it), one locked increment at the
start, and at the end the final code plus one locked update of the method's counters (rpc_counters.py).

Threading: grpcio runs each RPC (handler and response iteration) in a pool thread inside its own
contextvars.Context, so the request context set here is scoped to that RPC.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from vaultd.observability import metrics
from vaultd.observability.context import current_request, new_request_id
from vaultd.observability.logs import log_slow_request
from vaultd.observability.rpc_counters import MethodCounters

REQUEST_ID_METADATA_KEY = "x-request-id"
DEFAULT_SLOW_REQUEST_SECONDS = 1.0
# Request ids are client text; log lines carry at most this much of one (ours are 16, uuids 36).
MAX_LOGGED_REQUEST_ID = 64


class _Call:
    """The request context of one RPC; the request id is found on first use (most RPCs never log).

    It holds the metadata, not the ServicerContext: the context's RPC state holds the contextvars.Context
    this object is stored in, and that cycle would keep every RPC's state alive until a GC pass.
    """

    __slots__ = ("method", "_metadata", "_request", "_request_id")

    def __init__(self, method: str, metadata: Any, request: Any) -> None:
        self.method = method
        self._metadata = metadata
        self._request = request
        self._request_id: str | None = None

    @property
    def request_id(self) -> str:
        """`x-request-id` metadata, else the request's `request_id` field (writes), else a fresh id."""
        if self._request_id is None:
            rid = _metadata_request_id(self._metadata) or getattr(self._request, "request_id", "")
            self._request_id = rid[:MAX_LOGGED_REQUEST_ID] if rid and isinstance(rid, str) else new_request_id()
        return self._request_id


def _metadata_request_id(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == REQUEST_ID_METADATA_KEY and isinstance(value, str):
            return value
    return ""


def _grpc_type(handler: grpc.RpcMethodHandler) -> str:
    if handler.request_streaming and handler.response_streaming:
        return "bidi_stream"
    if handler.request_streaming:
        return "client_stream"
    if handler.response_streaming:
        return "server_stream"
    return "unary"


def _final_code(context: grpc.ServicerContext, raised: bool) -> str:
    """The status the client sees, as far as the handler's outcome tells: a set or aborted code first, then
    CANCELLED / DEADLINE_EXCEEDED for a call the client has left (a request stream then raises in the
    handler), UNKNOWN for any other uncaught exception. What fails after the handler returned (a response
    that does not serialize) is not seen here."""
    code = context.code()
    if code is not None:
        return getattr(code, "name", str(code))
    if not context.is_active():
        remaining = context.time_remaining()
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
    return "UNKNOWN" if raised else "OK"


class RpcMetrics:
    """Counts and times every RPC; sets the request context for logs; logs single-response RPCs slower than
    a threshold.

    A handler wrapper for `build_server(..., wrappers=[RpcMetrics(cfg.slow_request_seconds)])`: called once
    per method with its full name and handler, it returns the instrumented handler. Leaving it out is the
    "metrics off" switch for the gRPC side.
    """

    def __init__(self, slow_request_seconds: float = DEFAULT_SLOW_REQUEST_SECONDS) -> None:
        self.slow_request_seconds = slow_request_seconds

    def __call__(self, full_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        service, _, method = full_method.lstrip("/").partition("/")
        counters = metrics.grpc_server.method(_grpc_type(handler), service, method)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary_response(handler.unary_unary, full_method, counters, request_has_id=True),
                handler.request_deserializer, handler.response_serializer)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._unary_response(handler.stream_unary, full_method, counters, request_has_id=False),
                handler.request_deserializer, handler.response_serializer)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _stream_response(handler.unary_stream, full_method, counters, request_has_id=True),
                handler.request_deserializer, handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(
            _stream_response(handler.stream_stream, full_method, counters, request_has_id=False),
            handler.request_deserializer, handler.response_serializer)

    def _finish(self, full_method: str, counters: MethodCounters, context: grpc.ServicerContext, start: float,
                raised: bool) -> None:
        """Single responses are checked against the slow-request threshold (a stream's length is not slowness)."""
        elapsed = time.perf_counter() - start
        code = _final_code(context, raised)
        counters.finish(code, elapsed)
        if elapsed > self.slow_request_seconds:
            log_slow_request(full_method, elapsed, code, self.slow_request_seconds)

    def _unary_response(self, behavior: Callable[..., Any], full_method: str, counters: MethodCounters,
                        request_has_id: bool) -> Callable[..., Any]:
        finish = self._finish

        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            # _begin, inlined: nearly every RPC takes this path, and a call costs ~0.1 us
            current_request.set(_Call(full_method, context.invocation_metadata(), request if request_has_id else None))
            counters.start()
            start = time.perf_counter()
            try:
                response = behavior(request, context)
            except BaseException:
                finish(full_method, counters, context, start, raised=True)
                raise
            finish(full_method, counters, context, start, raised=False)
            return response
        return wrapped


def _begin(full_method: str, counters: MethodCounters, context: grpc.ServicerContext, request: Any) -> float:
    """Start a streaming RPC: request context, started count; the start time."""
    current_request.set(_Call(full_method, context.invocation_metadata(), request))
    counters.start()
    return time.perf_counter()


def _stream_response(behavior: Callable[..., Any], full_method: str, counters: MethodCounters,
                     request_has_id: bool) -> Callable[..., Any]:
    if getattr(behavior, "experimental_non_blocking", False):
        return _non_blocking_stream_response(behavior, full_method, counters, request_has_id)

    def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        start = _begin(full_method, counters, context, request if request_has_id else None)
        raised = True
        try:
            yield from behavior(request, context)
            raised = False
        except GeneratorExit:  # the client went away mid-stream; grpcio stopped iterating
            raised = False
            raise
        finally:
            counters.finish(_final_code(context, raised), time.perf_counter() - start)
    return wrapped


def _non_blocking_stream_response(behavior: Callable[..., Any], full_method: str, counters: MethodCounters,
                                  request_has_id: bool) -> Callable[..., Any]:
    """A handler that returns at once and sends through a callback, None ending the stream (gRPC health's
    Watch): it must stay non-blocking, or every open Watch would hold one of the server's worker threads."""

    def wrapped(request: Any, context: grpc.ServicerContext, send_response_callback: Callable[[Any], None]) -> Any:
        start = _begin(full_method, counters, context, request if request_has_id else None)
        unfinished = [True]  # popped once: the stream may be ended from two threads (close, shutdown)

        def finish(raised: bool) -> None:
            try:
                unfinished.pop()
            except IndexError:
                return
            counters.finish(_final_code(context, raised), time.perf_counter() - start)

        def send(response: Any) -> None:
            if response is None:
                finish(raised=False)  # before the end is sent: then the call is no longer active
            send_response_callback(response)

        # gRPC health's Watch sends its first response before it registers its own close callback, so a
        # client that cancels at once can end the RPC before that callback exists: it never ends the
        # stream and the call would never be counted. Our callback, registered first, always runs.
        if not context.add_callback(lambda: finish(raised=False)):
            finish(raised=False)  # the RPC ended before the handler ran
        try:
            return behavior(request, context, send)
        except BaseException:
            finish(raised=True)
            raise

    wrapped.experimental_non_blocking = True  # type: ignore[attr-defined]
    wrapped.experimental_thread_pool = getattr(behavior, "experimental_thread_pool", None)  # type: ignore[attr-defined]
    return wrapped

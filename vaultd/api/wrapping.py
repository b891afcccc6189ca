"""Method handlers wrapped once, when a service is registered, instead of by grpc.ServerInterceptors.

grpcio runs each interceptor's `intercept_service` for every RPC, on the server's single polling thread and
under the server's lock, before the RPC reaches a pool thread; even an interceptor that only hands back a
cached handler is Python on that serial path. What vaultd needs from interception (decoding guard, metrics)
is fixed per method, so `Registrar` applies it while the generated `add_*Servicer_to_server` functions
register the handlers, and the server runs without interceptors.

A wrapper is `(full_method, handler) -> handler`, `full_method` being "/package.Service/Method". Wrappers
apply outermost first, like an interceptor list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc

HandlerWrapper = Callable[[str, grpc.RpcMethodHandler], grpc.RpcMethodHandler]


class _WrappedGenericHandler(grpc.GenericRpcHandler):
    """A generic handler whose answers are wrapped (once per method: grpcio asks per RPC)."""

    def __init__(self, inner: grpc.GenericRpcHandler, wrap: HandlerWrapper) -> None:
        self._inner = inner
        self._wrap = wrap
        # method -> (inner handler, wrapped); a dict assignment is atomic, a race only wraps twice
        self._cache: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is None or cached[0] is not handler:
            cached = self._cache[method] = (handler, self._wrap(method, handler))
        return cached[1]


class Registrar:
    """Stands in for the grpc.Server in `add_*Servicer_to_server(servicer, registrar)` calls.

    The generated functions register each service twice, as registered methods (matched by grpc core, the
    path every call takes) and as a generic handler (the fallback); both are wrapped.
    """

    def __init__(self, server: grpc.Server, wrappers: Sequence[HandlerWrapper]) -> None:
        self._server = server
        self._wrappers = tuple(reversed(wrappers))  # innermost first

    def wrap(self, full_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        for wrapper in self._wrappers:
            handler = wrapper(full_method, handler)
        return handler

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self._server.add_registered_method_handlers(
            service, {name: self.wrap(f"/{service}/{name}", handler) for name, handler in handlers.items()})

    def add_generic_rpc_handlers(self, generic_handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(tuple(_WrappedGenericHandler(g, self.wrap) for g in generic_handlers))

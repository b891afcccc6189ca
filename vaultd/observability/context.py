"""Per-request context (request id, gRPC method) carried in contextvars so every log line can name them.

grpcio runs each RPC's handler and response iteration inside its own `contextvars.Context`, so values set
by the interceptor are scoped to that RPC and need no cleanup. Threads started by a handler do not inherit
them; such code must pass the ids explicitly.
"""

from __future__ import annotations

import contextvars
import itertools
import os

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("vaultd_request_id", default="")
method_var: contextvars.ContextVar[str] = contextvars.ContextVar("vaultd_method", default="")


_process_prefix = os.urandom(4).hex()
_sequence = itertools.count(1)  # next() on a count is atomic under the GIL


def new_request_id() -> str:
    """A 16-hex id for requests that arrive without one (only for correlating log lines): a random
    per-process prefix and a counter, so it costs no system call on the request path."""
    return f"{_process_prefix}{next(_sequence) & 0xFFFFFFFF:08x}"


def bind(method: str, request_id: str) -> None:
    """Set the method and request id for the rest of the current context (one RPC)."""
    method_var.set(method)
    request_id_var.set(request_id)

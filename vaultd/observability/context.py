"""Per-request context (gRPC method, request id) carried in a contextvar so every log line can name them.

grpcio runs each RPC's handler and response iteration inside its own `contextvars.Context`, so the value set
when the RPC starts is scoped to that RPC and needs no cleanup. Threads started by a handler do not inherit
it; such code must pass the ids explicitly.

One variable holding an object with a lazily resolved request id, rather than the id itself: finding the id
(metadata scan, request field, else a fresh one) would cost every RPC about a microsecond, and only RPCs that
log anything need it (README "Cost of observability").
"""

from __future__ import annotations

import contextvars
import itertools
import os
from typing import Protocol


class RequestContext(Protocol):
    """What log lines take from the RPC they were written in."""

    method: str

    @property
    def request_id(self) -> str: ...


current_request: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "vaultd_request", default=None)


_process_prefix = os.urandom(4).hex()
_sequence = itertools.count(1)  # next() on a count is atomic under the GIL


def new_request_id() -> str:
    """A 16-hex id for requests that arrive without one (only for correlating log lines): a random
    per-process prefix and a counter, so it costs no system call on the request path."""
    return f"{_process_prefix}{next(_sequence) & 0xFFFFFFFF:08x}"


def current_ids() -> tuple[str, str]:
    """(method, request id) of the RPC this code runs in, or ("", "") outside one."""
    request = current_request.get()
    if request is None:
        return "", ""
    return request.method, request.request_id


class Caller:
    """Who made the current RPC, filled in by the authentication wrapper and read by the audit log.

    Mutable and created by the outermost wrapper that needs it (the audit log, else authentication itself),
    so that an inner wrapper's verdict is visible to an outer one after the call returns or aborts: a
    contextvar set inside an inner wrapper would not be. Never holds a token secret."""

    __slots__ = ("token_id", "name", "policies")

    def __init__(self) -> None:
        self.token_id = ""
        self.name = ""
        self.policies: tuple[str, ...] = ()


current_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("vaultd_caller", default=None)

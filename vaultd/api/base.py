"""What every servicer shares: deadlines, proposing commands, read barriers, and error translation.

Servicer methods never call `context.abort` themselves: they raise (StoreError, replication errors,
ApiError) and the `unary`/`server_stream` wrappers translate once through api/errors.py. That keeps the
status of every failure in one table and lets an unexpected exception become INTERNAL while the server
keeps serving.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import grpc

from vaultd.api import errors
from vaultd.api.auth import scoped_request_id
from vaultd.store.commands import Command, Envelope
from vaultd.store.results import Limits
from vaultd.v1 import vault_pb2

DEFAULT_TIMEOUT_SECONDS = 10.0
MAX_TIMEOUT_SECONDS = 60.0
# Answer a little before the client's deadline so the client sees our status rather than its own timeout.
DEADLINE_MARGIN_SECONDS = 0.05
# The server's send limit: the largest response message (a scan page of large values is the biggest).
MAX_SEND_BYTES = 64 * 1024 * 1024

R = TypeVar("R")
S = TypeVar("S")


class NodeLike(Protocol):
    """The part of vaultd.replication.ReplicatedNode the API uses."""

    def submit(self, commands: list[Envelope], timeout: float) -> list[Any]: ...
    def read_barrier(self, timeout: float) -> None: ...
    def status(self) -> Any: ...
    def is_ready(self) -> bool: ...
    def add_member(self, node_id: str, raft_addr: str, grpc_addr: str, timeout: float) -> Any: ...
    def remove_member(self, node_id: str, timeout: float) -> Any: ...


def timeout_of(context: grpc.ServicerContext) -> float:
    """Seconds this call may still spend: the client's deadline (minus a margin), else the default."""
    remaining = context.time_remaining()
    if remaining is None:
        return DEFAULT_TIMEOUT_SECONDS
    return max(min(remaining, MAX_TIMEOUT_SECONDS) - DEADLINE_MARGIN_SECONDS, 0.001)


class ServicerBase:
    def __init__(self, node: NodeLike, machine: Any, stats: Any, cfg: Any) -> None:
        self.node = node
        self.machine = machine
        self.stats = stats
        self.cfg = cfg

    def submit(self, context: grpc.ServicerContext, request_id: str, command: Command) -> Any:
        """Propose one command and return its value; a rejected command raises its StoreError.

        A request without a client request id gets one here: the store then answers a re-delivered log entry
        (replay after a snapshot install) with the recorded result instead of ALREADY_APPLIED. Only the client's
        own id makes its retries exactly-once. A client's id is scoped by its principal (`<token_id>/<id>`):
        another token reusing the id gets its own entry, never this one's outcome.
        """
        envelope = Envelope(self.scoped(request_id) if request_id else f"srv-{uuid.uuid4().hex}", command)
        results = self.node.submit([envelope], timeout=timeout_of(context))
        return results[0].unwrap()

    @staticmethod
    def scoped(request_id: str) -> str:
        """A client-chosen id (request or import id) in the calling principal's namespace."""
        return scoped_request_id(request_id)

    def reader(self, context: grpc.ServicerContext, consistency: int = vault_pb2.CONSISTENCY_UNSPECIFIED) -> Any:
        """A reader after a read barrier (linearizable), or at once for CONSISTENCY_LOCAL."""
        if consistency == vault_pb2.CONSISTENCY_LOCAL:
            return self.machine.reader()
        if consistency not in (vault_pb2.CONSISTENCY_UNSPECIFIED, vault_pb2.CONSISTENCY_LINEARIZABLE):
            raise errors.invalid_argument("unknown consistency", field="consistency")
        self.node.read_barrier(timeout=timeout_of(context))
        return self.machine.reader()

    def limits(self) -> Limits:
        """This replica's limits, for checks before proposing (apply re-checks against the log's truth)."""
        return self.machine.reader().limits()


def _failure(exc: Exception, fn: Callable[..., Any], context: grpc.ServicerContext) -> errors.Failure:
    # A request stream raises RpcError when the client has gone (cancelled, deadline passed): not a bug.
    if isinstance(exc, grpc.RpcError) and not context.is_active():
        return errors.client_gone(context.time_remaining())
    return errors.from_exception(exc, fn.__qualname__)


def unary(fn: Callable[[Any, Any, grpc.ServicerContext], R]) -> Callable[[Any, Any, grpc.ServicerContext], R]:
    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> R:
        try:
            return fn(self, request, context)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status
            errors.abort(context, _failure(exc, fn, context))
    return wrapper


def server_stream(fn: Callable[[Any, Any, grpc.ServicerContext], Iterator[S]],
                  ) -> Callable[[Any, Any, grpc.ServicerContext], Iterator[S]]:
    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[S]:
        try:
            yield from fn(self, request, context)
        except Exception as exc:  # noqa: BLE001
            errors.abort(context, _failure(exc, fn, context))
    return wrapper

"""The audit log (`--audit-log FILE`): one JSON line per vaultd RPC, on the node that received it.

Each line says who (token id and name, never the token), what (method, vaults, key names, never a value),
the outcome (final status code and ErrorInfo reason) and when, with the request id that ties it to the
node's log lines and to the client. A write forwarded through Raft is audited once, where the client sent
it: the wrapper runs on the receiving node's request path, and nothing is audited in apply (which must stay
deterministic and knows no caller).

`AuditLog` is a handler wrapper (vaultd.api.wrapping) placed after RpcMetrics and before authentication:
it creates the RPC's `Caller` and sets `current_caller`, the authentication wrapper fills it in, and after
the call (returned, aborted, failed, cancelled or timed out) one line is written with what the caller turned
out to be. Only vaultd's own services are audited; health checks and reflection, which touch no secret and
which load balancers call every second, are not.

Writing: the file is opened O_APPEND (created 0600), each line is one os.write of a complete line under a
lock, so it is on disk as far as the kernel is concerned when the RPC returns (no buffer to lose on a crash)
and concurrent lines never interleave. A local append costs microseconds, so there is no queue and no line
is dropped. `reopen()` (SIGHUP, after logrotate renamed the file) opens the configured path again. A failed
write or reopen never fails the request: it is counted in `vaultd_audit_write_errors_total` and logged once
until writing works again.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from vaultd.observability import metrics
from vaultd.observability.context import Caller, current_caller, current_request, new_request_id
from vaultd.observability.rpc_metrics import MAX_LOGGED_REQUEST_ID, _final_code, _metadata_request_id

log = logging.getLogger("vaultd.audit")

AUDITED_PREFIX = "/vaultd."
_STATUS_DETAILS_KEY = "grpc-status-details-bin"
# One encoder: json.dumps with any argument builds a new JSONEncoder per call (a third of a line's cost).
_ENCODER = json.JSONEncoder(separators=(",", ":"))

# One line per request must stay small whatever a request names: a Txn may name thousands of keys and a
# refused request any garbage. Valid names fit (keys <= 1024 bytes, vaults <= 64); a longer name was refused
# anyway, and its first 1024 characters identify it.
MAX_AUDITED_KEYS = 100
MAX_AUDITED_NAME_CHARS = 1024


def _utc(timestamp: float) -> str:
    return _dt.datetime.fromtimestamp(timestamp, _dt.timezone.utc).isoformat(timespec="microseconds")


def _reason(context: grpc.ServicerContext) -> str:
    """The ErrorInfo reason of a failed call: vaultd's error table aborts with the status, details included,
    as trailing metadata, which the ServicerContext still holds after the handler returned."""
    try:
        trailing = context.trailing_metadata() or ()
    except Exception:  # noqa: BLE001 - a context without trailing metadata has no reason to tell
        return ""
    for key, value in trailing:
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except Exception:  # noqa: BLE001 - not ours to judge; the code is still recorded
            return ""
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Is(info.DESCRIPTOR) and detail.Unpack(info):
                return info.reason
    return ""


class _Seen:
    """The first message of a request stream, captured as the handler reads it (ImportVault's header)."""

    __slots__ = ("first",)

    def __init__(self) -> None:
        self.first: Any = None


def _tap(requests: Iterator[Any], seen: _Seen) -> Iterator[Any]:
    """Pass a request stream through, keeping its first message's `header` when it has one set (ImportVault
    names its vault and request id there), else the first message itself."""
    for request in requests:
        seen.first = _header_of(request)
        yield request
        break
    yield from requests


def _header_of(message: Any) -> Any:
    try:
        return message.header if message.HasField("header") else message
    except (AttributeError, ValueError):  # no header field; or the decoding guard's marker for bad bytes
        return message


VaultsOf = Callable[[str, Any], list[str]]
KeysOf = Callable[[Any], list[str]]


class AuditLog:
    """The audit file and the handler wrapper that writes to it: `wrappers=[RpcMetrics(...), audit]`.

    `vaults_of(full_method, request)` and `keys_of(request)` are vaultd.api.targets' (the one table that
    authorization also reads), handed in by serve so that this package stays a leaf below the API.
    """

    def __init__(self, path: str, node_id: str, vaults_of: VaultsOf, keys_of: KeysOf) -> None:
        self.path = path
        self.node_id = node_id
        self._vaults_of = vaults_of
        self._keys_of = keys_of
        self._lock = threading.Lock()
        self._failing = False
        self._fd: int | None = self._open()  # a node asked to audit does not start without its file

    def _open(self) -> int:
        """The file, owner-only even when it existed with a looser mode (created by hand or by a tool)."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):   # not e.g. /dev/full or a FIFO to a log shipper
                os.fchmod(fd, 0o600)
        except OSError:
            os.close(fd)
            raise
        return fd

    def reopen(self) -> None:
        """Open the configured path again (logrotate renamed the file); on failure keep writing to the old one."""
        try:
            fd = self._open()
        except OSError as exc:
            self._failed("reopen", exc)
            return
        with self._lock:
            old, self._fd = self._fd, fd
        if old is not None:
            os.close(old)
        log.info("audit log reopened", extra={"fields": {"path": self.path}})

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def write(self, record: dict[str, Any]) -> None:
        """Append one line; never raises (a request is not failed because its audit line could not be written)."""
        line = (_ENCODER.encode(record) + "\n").encode()
        try:
            with self._lock:
                if self._fd is None:
                    raise OSError("audit log is closed")
                view = memoryview(line)
                while view:
                    view = view[os.write(self._fd, view):]
        except OSError as exc:
            self._failed("write", exc)
            return
        if self._failing:
            self._failing = False
            log.info("audit log writable again", extra={"fields": {"path": self.path}})

    def _failed(self, action: str, exc: OSError) -> None:
        metrics.audit_write_errors_total.inc()
        if not self._failing:
            self._failing = True
            log.error("audit log %s failed: %s", action, exc.strerror or str(exc),
                      extra={"fields": {"path": self.path}})

    # --- the handler wrapper ---
    def __call__(self, full_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if not full_method.startswith(AUDITED_PREFIX):
            return handler
        method = full_method.lstrip("/")
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, full_method, method),
                handler.request_deserializer, handler.response_serializer)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(handler.unary_stream, full_method, method, request_streaming=False),
                handler.request_deserializer, handler.response_serializer)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(handler.stream_unary, full_method, method, request_streaming=True),
                handler.request_deserializer, handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(handler.stream_stream, full_method, method, request_streaming=True),
            handler.request_deserializer, handler.response_serializer)

    def _unary(self, behavior: Callable[..., Any], full_method: str, method: str,
               request_streaming: bool = False) -> Callable[..., Any]:
        finish = self._finish

        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            caller = Caller()
            current_caller.set(caller)
            started = time.time()
            seen = _Seen()
            if request_streaming:
                request = _tap(request, seen)
            else:
                seen.first = request
            try:
                response = behavior(request, context)
            except BaseException:
                finish(full_method, method, context, caller, seen.first, started, raised=True)
                raise
            finish(full_method, method, context, caller, seen.first, started, raised=False)
            return response
        return wrapped

    def _streaming(self, behavior: Callable[..., Any], full_method: str, method: str,
                   request_streaming: bool) -> Callable[..., Any]:
        finish = self._finish

        def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            caller = Caller()
            current_caller.set(caller)
            started = time.time()
            seen = _Seen()
            if request_streaming:
                request = _tap(request, seen)
            else:
                seen.first = request
            raised = True
            try:
                yield from behavior(request, context)
                raised = False
            except GeneratorExit:  # the client went away mid-stream, or the stream limit ended it
                raised = False
                raise
            finally:
                finish(full_method, method, context, caller, seen.first, started, raised)
        return wrapped

    def _finish(self, full_method: str, method: str, context: grpc.ServicerContext, caller: Caller,
                request: Any, started: float, raised: bool) -> None:
        code = _final_code(context, raised)
        try:
            if code == "UNAUTHENTICATED":   # an anonymous caller's names are not worth a disk: none logged
                vaults, keys = [], []
            else:
                vaults, keys = self._vaults_of(full_method, request), self._keys_of(request)
        except Exception:  # noqa: BLE001 - an undecodable request names nothing; the line is still written
            vaults, keys = [], []
        omitted = max(len(keys) - MAX_AUDITED_KEYS, 0)
        self.write({
            "time": _utc(started),
            "node": self.node_id,
            "token_id": caller.token_id,
            "token_name": caller.name,
            "method": method,
            "vaults": [name[:MAX_AUDITED_NAME_CHARS] for name in vaults],
            "keys": [name[:MAX_AUDITED_NAME_CHARS] for name in keys[:MAX_AUDITED_KEYS]],
            "keys_omitted": omitted,
            "code": code,
            "reason": _reason(context) if code != "OK" else "",
            "request_id": _request_id(context, request),
            "peer": _peer(context),
        })


def _request_id(context: grpc.ServicerContext, request: Any) -> str:
    """`x-request-id` metadata, else the request's (or import header's) `request_id`, else the id the
    RPC's log lines carry (RpcMetrics' context), so the audit line and the log lines correlate."""
    rid = _metadata_request_id(context.invocation_metadata()) or getattr(request, "request_id", "")
    if not rid or not isinstance(rid, str):
        current = current_request.get()
        rid = current.request_id if current is not None else new_request_id()
    return rid[:MAX_LOGGED_REQUEST_ID]


def _peer(context: grpc.ServicerContext) -> str:
    try:
        return context.peer()
    except Exception:  # noqa: BLE001 - the call is already gone; who it was is not worth failing over
        return ""

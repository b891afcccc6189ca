"""Structured logging: one line per event, tagged with node id, request id and gRPC method.

Why a filter on the handler rather than discipline alone: values are secrets, and a single careless
`log.debug("put %s", request)` would leak one. `RedactFilter` sits on the only handler vaultd installs, so
every record from every library passes through it and anything that can hold a value (bytes, protobuf
messages, dataclasses, non-string messages, value-like extra fields) is replaced by a placeholder before
formatting. No code path in vaultd logs request messages; the filter is the second line of defence.

Events are logged with `event(logger, name, **fields)`: the message is the event name and the fields are
rendered as `key=value` (text) or JSON keys, so logs stay greppable and machine readable.
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
import logging
import sys
from typing import Any, TextIO

from vaultd.observability.context import current_ids

# Extra-field names that may only ever hold a value; they are always redacted, whatever their type.
SENSITIVE_FIELDS = frozenset({
    "value", "values", "secret", "secrets", "data", "payload", "body", "request", "response",
    "password", "cluster_secret", "token", "entry", "entries", "ops", "chunk",
})
REDACTED = "<redacted>"
_SAFE_SCALARS = (str, int, float, bool, type(None), enum.Enum, BaseException)

log = logging.getLogger("vaultd")


def _safe(obj: Any) -> Any:
    """Keep scalars (names, ids, numbers, exceptions whose messages are value-free by contract)."""
    if isinstance(obj, _SAFE_SCALARS):
        return obj
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return f"<{len(obj)} bytes redacted>"
    if isinstance(obj, (list, tuple)) and all(isinstance(x, (str, int, float, bool)) for x in obj):
        return list(obj)
    return f"<{type(obj).__name__} redacted>"


class RedactFilter(logging.Filter):
    """Rewrite a record so that it cannot carry a value; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str):
            if not isinstance(record.msg, BaseException):
                record.msg = f"<{type(record.msg).__name__} redacted>"
            record.args = None
        elif isinstance(record.args, dict):
            record.args = {k: REDACTED if k in SENSITIVE_FIELDS else _safe(v) for k, v in record.args.items()}
        elif record.args:
            record.args = tuple(_safe(a) for a in record.args)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            record.fields = {k: REDACTED if k.lower() in SENSITIVE_FIELDS else _safe(v) for k, v in fields.items()}
        elif fields is not None:
            record.fields = {}
        for name in SENSITIVE_FIELDS & record.__dict__.keys():
            setattr(record, name, REDACTED)
        return True


class ContextFilter(logging.Filter):
    """Stamp node id, request id and method on the record in the thread that logs it."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.node_id = self.node_id
        record.method, record.request_id = current_ids()
        return True


def _timestamp(record: logging.LogRecord) -> str:
    ts = _dt.datetime.fromtimestamp(record.created, tz=_dt.timezone.utc)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"


def _render(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (not text or any(c in text for c in ' "=\n')) else text


class TextFormatter(logging.Formatter):
    """`ts LEVEL node=ID logger: message k=v ... request_id=.. method=..` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname, f"node={getattr(record, 'node_id', '')}",
                 f"{record.name}:", record.getMessage().replace("\n", "\\n")]
        for key, value in (getattr(record, "fields", None) or {}).items():
            parts.append(f"{key}={_render(value)}")
        for key in ("request_id", "method"):  # the request id is client text: quoted like any field
            if getattr(record, key, ""):
                parts.append(f"{key}={_render(getattr(record, key))}")
        line = " ".join(parts)
        if record.exc_info:
            line += " exc=" + json.dumps(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line; event fields become top-level keys (never overriding the fixed ones)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _timestamp(record), "level": record.levelname, "node": getattr(record, "node_id", ""),
            "logger": record.name, "msg": record.getMessage(),
        }
        for key in ("request_id", "method"):
            if getattr(record, key, ""):
                doc[key] = getattr(record, key)
        for key, value in (getattr(record, "fields", None) or {}).items():
            doc.setdefault(key, value if isinstance(value, (int, float, bool, type(None), list)) else str(value))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, separators=(",", ":"))


_installed: logging.Handler | None = None


def setup_logging(node_id: str, fmt: str = "text", level: str | int = "INFO",
                  stream: TextIO | None = None) -> logging.Handler:
    """Install the single vaultd handler on the root logger (idempotent: replaces a previous one).

    fmt is "text" or "json". Every library's records go through the same redaction and context filters.
    """
    global _installed
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', not {fmt!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter(node_id))
    handler.addFilter(RedactFilter())
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    logging.captureWarnings(True)
    _installed = handler
    return handler


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event; field values must be names, ids or numbers, never values."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})


# --- the events the operators' runbooks refer to -----------------------------------------------------------
_raft_log = logging.getLogger("vaultd.raft")
_grpc_log = logging.getLogger("vaultd.grpc")


def log_leader_change(old_leader: str | None, new_leader: str | None, term: int) -> None:
    event(_raft_log, "leader_changed", old_leader=old_leader or "", new_leader=new_leader or "", term=term)


def log_membership_change(action: str, node_id: str, raft_addr: str = "", ok: bool = True,
                          error: str = "") -> None:
    """action: "add" or "remove"."""
    event(_raft_log, "membership_changed", logging.INFO if ok else logging.WARNING,
          action=action, member=node_id, raft_addr=raft_addr, ok=ok, error=error)


def log_snapshot(index: int, size_bytes: int, seconds: float, ok: bool = True, error: str = "",
                 kind: str = "taken") -> None:
    """kind: "taken" (local snapshot), "installed" (received from the leader) or "restored" (on start)."""
    event(_raft_log, "snapshot", logging.INFO if ok else logging.ERROR, kind=kind, index=index,
          size_bytes=size_bytes, seconds=round(seconds, 4), ok=ok, error=error)


def log_slow_request(method: str, seconds: float, code: str, threshold: float) -> None:
    event(_grpc_log, "slow_request", logging.WARNING, rpc=method, seconds=round(seconds, 4), code=code,
          threshold_seconds=threshold)

"""Structured logging: format, context, and the defensive redaction filter (values can never be printed)."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from vaultd.observability import logs
from vaultd.observability.context import current_request
from vaultd.v1 import vault_pb2

SECRET = "sk_live_DO_NOT_LOG_7f3a9c"


@pytest.fixture
def capture() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    out = io.StringIO()
    handler = logs.setup_logging("n1", "json", "DEBUG", stream=out)
    try:
        yield out, handler
    finally:
        logging.getLogger().removeHandler(handler)
        logs._installed = None


def _lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


@dataclasses.dataclass
class _Command:  # shaped like a store command that carries a value
    vault: str
    key: str
    value: bytes


def test_no_path_can_print_a_value(capture) -> None:
    out, _ = capture
    log = logging.getLogger("vaultd.test")
    request = vault_pb2.PutRequest(vault="app", key="stripe", value=SECRET.encode())
    log.info("put %s", request)
    log.info("raw %r and %s", SECRET.encode(), bytearray(SECRET.encode()))
    log.info(request)
    log.info("cmd %s", _Command("app", "k", SECRET.encode()))
    log.info("dict %(value)s %(vault)s", {"value": SECRET, "vault": "app"})
    log.info("extra", extra={"value": SECRET, "secret": SECRET})
    logs.event(log, "put_done", vault="app", value=SECRET, data=SECRET.encode(), password=SECRET,
               entry=request, ops=[SECRET])
    text = out.getvalue()
    assert SECRET not in text
    assert SECRET.encode().hex() not in text
    records = _lines(out)
    assert len(records) == 7  # redaction rewrites records, it never drops one
    assert records[0]["msg"] == "put <PutRequest redacted>"
    assert records[2]["msg"] == "<PutRequest redacted>"
    assert records[6]["vault"] == "app" and records[6]["value"] == "<redacted>"


def test_text_and_json_lines_carry_node_request_and_method() -> None:
    for fmt in ("text", "json"):
        out = io.StringIO()
        handler = logs.setup_logging("n2", fmt, "INFO", stream=out)
        token = current_request.set(SimpleNamespace(method="/vaultd.v1.VaultService/Put", request_id="req-123"))
        try:
            logs.log_leader_change("n1", "n3", 7)
            logs.log_membership_change("add", "n4", "127.0.0.1:7004")
            logs.log_snapshot(index=42, size_bytes=4096, seconds=0.05)
            logs.log_slow_request("/vaultd.v1.VaultService/Put", 1.5, "OK", 1.0)
            logging.getLogger("vaultd.debug").debug("hidden below INFO")
        finally:
            logging.getLogger().removeHandler(handler)
            current_request.reset(token)
        lines = out.getvalue().splitlines()
        assert len(lines) == 4, lines
        if fmt == "json":
            docs = [json.loads(ln) for ln in lines]
            assert [d["msg"] for d in docs] == ["leader_changed", "membership_changed", "snapshot", "slow_request"]
            assert all(d["node"] == "n2" and d["request_id"] == "req-123" for d in docs)
            assert docs[0]["new_leader"] == "n3" and docs[0]["term"] == 7
            assert docs[2]["index"] == 42 and docs[2]["ok"] is True
            assert docs[3]["level"] == "WARNING"
        else:
            assert lines[0].split()[1:4] == ["INFO", "node=n2", "vaultd.raft:"]
            assert "leader_changed old_leader=n1 new_leader=n3 term=7" in lines[0]
            assert lines[0].endswith("request_id=req-123 method=/vaultd.v1.VaultService/Put")


def test_setup_is_idempotent_and_rejects_unknown_format(capture) -> None:
    out, first = capture
    again = logs.setup_logging("n1", "json", "INFO", stream=out)
    try:
        assert first not in logging.getLogger().handlers
        logging.getLogger("vaultd.x").info("once")
        assert len(out.getvalue().splitlines()) == 1
    finally:
        logging.getLogger().removeHandler(again)
    with pytest.raises(ValueError):
        logs.setup_logging("n1", "xml")


def test_a_request_id_cannot_break_a_text_line() -> None:
    """The request id comes from the client (a write's request_id field may hold any text, newlines too):
    in text format it is quoted like every other field, so one event stays one line."""
    out = io.StringIO()
    handler = logs.setup_logging("n1", "text", "INFO", stream=out)
    token = current_request.set(SimpleNamespace(
        method="/vaultd.v1.VaultService/Put", request_id="rid\n2026-01-01T00:00:00.000Z ERROR node=n9 forged: line"))
    try:
        logging.getLogger("vaultd.test").info("handled")
    finally:
        logging.getLogger().removeHandler(handler)
        current_request.reset(token)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert 'request_id="rid\\n2026-01-01T00:00:00.000Z ERROR node=n9 forged: line"' in lines[0]
    assert lines[0].endswith("method=/vaultd.v1.VaultService/Put")

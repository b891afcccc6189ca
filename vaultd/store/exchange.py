"""Export rendering and import parsing (pure functions; import parsing runs on the proposing node).

Native format (what export writes and import reads back), one JSON document:

    {"format": "vaultd.export", "version": 1,
     "vault": {"name", "description", "owner", "tags", "created_at", "updated_at", "key_count", "total_bytes"},
     "entries": [{"key", "value" (standard base64), "version", "created_at", "updated_at", "revision"}, ...]}

Timestamps are integer nanoseconds since the Unix epoch. Import uses key and value only: imported keys get
versions and timestamps from the importing command, like copied keys.

Import also reads the two flat formats secrets usually come from: a JSON object of names to string values,
and dotenv. Errors name the line (dotenv, or JSON syntax) or the field (JSON structure), never the text.
Duplicate names keep the last value (dotenv semantics), at the position of the first.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from vaultd.store.commands import ImportEntry
from vaultd.store.errors import InvalidKey, MalformedImport
from vaultd.store.results import Entry, VaultInfo
from vaultd.store.validation import validate_key

EXPORT_FORMAT = "vaultd.export"
EXPORT_VERSION = 1
EXPORT_CHUNK_SIZE = 64 * 1024
_DOTENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_INLINE_COMMENT = re.compile(r"\s#")
_DOTENV_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$"}


class ImportFormat(str, enum.Enum):
    NATIVE = "native"
    FLAT_JSON = "flat_json"
    DOTENV = "dotenv"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def render_export(info: VaultInfo, entries: Iterable[Entry], chunk_size: int = EXPORT_CHUNK_SIZE) -> Iterator[bytes]:
    """Yield the native document in pieces of about chunk_size bytes, consuming `entries` lazily."""
    vault = {"name": info.name, "description": info.description, "owner": info.owner, "tags": list(info.tags),
             "created_at": info.created_at, "updated_at": info.updated_at, "key_count": info.key_count,
             "total_bytes": info.total_bytes}
    parts = [f'{{"format":{_dumps(EXPORT_FORMAT)},"version":{EXPORT_VERSION},"vault":{_dumps(vault)},"entries":[']
    size = len(parts[0])
    separator = "\n"
    for e in entries:
        item = _dumps({"key": e.key, "value": base64.b64encode(e.value).decode("ascii"), "version": e.version,
                       "created_at": e.created_at, "updated_at": e.updated_at, "revision": e.revision})
        parts.append(separator + item)
        separator = ",\n"
        size += len(item) + 2
        if size >= chunk_size:
            yield "".join(parts).encode()
            parts, size = [], 0
    parts.append("\n]}\n")
    yield "".join(parts).encode()


def parse_import(data: bytes, fmt: ImportFormat | str) -> list[ImportEntry]:
    """Parse a whole import file; MalformedImport (with line or field) on any problem, before any proposal."""
    try:
        kind = ImportFormat(fmt)
    except ValueError:
        raise MalformedImport("unknown import format", field="format") from None
    text = _decode(bytes(data))
    if kind is ImportFormat.DOTENV:
        pairs = _parse_dotenv(text)
    else:
        doc = _load_json(text)
        pairs = _parse_native(doc) if kind is ImportFormat.NATIVE else _parse_flat(doc)
    merged: dict[str, bytes] = {}
    for key, value in pairs:
        merged[key] = value
    return [ImportEntry(k, v) for k, v in merged.items()]


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MalformedImport("not valid UTF-8", line=data[:exc.start].count(b"\n") + 1) from None


def _load_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedImport(f"invalid JSON ({exc.msg}, column {exc.colno})", line=exc.lineno) from None
    except RecursionError:
        raise MalformedImport("JSON nested too deeply", field="$") from None


def _key(key: Any, field: str | None = None, line: int | None = None) -> str:
    try:
        return validate_key(key)
    except InvalidKey as exc:
        raise MalformedImport(f"invalid key: {exc.metadata['rule']}", field=field, line=line) from None


def _parse_native(doc: Any) -> list[tuple[str, bytes]]:
    if not isinstance(doc, dict):
        raise MalformedImport("the document must be a JSON object", field="$")
    if doc.get("format") != EXPORT_FORMAT:
        raise MalformedImport(f"must be {EXPORT_FORMAT!r}", field="format")
    if doc.get("version") != EXPORT_VERSION:
        raise MalformedImport(f"unsupported version (this server reads {EXPORT_VERSION})", field="version")
    entries = doc.get("entries")
    if not isinstance(entries, list):
        raise MalformedImport("must be a list", field="entries")
    out = []
    for i, item in enumerate(entries):
        where = f"entries[{i}]"
        if not isinstance(item, dict):
            raise MalformedImport("must be an object", field=where)
        key = _key(item.get("key"), field=f"{where}.key")
        value = item.get("value")
        if not isinstance(value, str):
            raise MalformedImport("must be a base64 string", field=f"{where}.value")
        try:
            out.append((key, base64.b64decode(value.encode("ascii"), validate=True)))
        except (binascii.Error, UnicodeEncodeError):
            raise MalformedImport("not valid base64", field=f"{where}.value") from None
    return out


def _parse_flat(doc: Any) -> list[tuple[str, bytes]]:
    if not isinstance(doc, dict):
        raise MalformedImport("a flat JSON import must be an object of names to strings", field="$")
    out = []
    for name, value in doc.items():
        key = _key(name, field=name or "$")
        if not isinstance(value, str):
            raise MalformedImport("value must be a string", field=key)
        out.append((key, value.encode()))
    return out


def _parse_dotenv(text: str) -> list[tuple[str, bytes]]:
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    out = []
    i = 0
    while i < len(lines):
        lineno, stripped = i + 1, lines[i].strip()
        i += 1
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith(("export ", "export\t")):
            stripped = stripped[len("export"):].lstrip()
        name, sep, rest = stripped.partition("=")
        if not sep:
            raise MalformedImport("expected NAME=value", line=lineno)
        name = name.strip()
        if not _DOTENV_NAME.fullmatch(name):
            raise MalformedImport("invalid variable name", line=lineno)
        rest = rest.lstrip()
        if rest[:1] in ("'", '"'):
            value, i = _quoted(rest, lines, i, lineno)
        else:
            comment = _INLINE_COMMENT.search(rest)
            value = (rest[:comment.start()] if comment else rest).strip()
        out.append((_key(name, line=lineno), value.encode()))
    return out


def _quoted(rest: str, lines: list[str], i: int, lineno: int) -> tuple[str, int]:
    """A quoted value starting at `rest`, possibly spanning lines; returns (value, next line index)."""
    quote, body, pieces = rest[0], rest[1:], []
    while True:
        end = _closing_quote(body, quote)
        if end >= 0:
            pieces.append(body[:end])
            tail = body[end + 1:].strip()
            break
        pieces.append(body)
        if i >= len(lines):
            raise MalformedImport("unterminated quoted value", line=lineno)
        body = lines[i]
        i += 1
    if tail and not tail.startswith("#"):
        raise MalformedImport("unexpected text after the closing quote", line=lineno)
    value = "\n".join(pieces)
    return (_unescape(value) if quote == '"' else value), i


def _closing_quote(body: str, quote: str) -> int:
    j = 0
    while j < len(body):
        ch = body[j]
        if ch == "\\" and quote == '"':
            j += 2
            continue
        if ch == quote:
            return j
        j += 1
    return -1


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: _DOTENV_ESCAPES.get(m.group(1), m.group(0)), value, flags=re.DOTALL)

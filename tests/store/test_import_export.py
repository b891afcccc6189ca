"""Export (native JSON, chunked, point-in-time) and import (three formats, three modes, staged, atomic)."""

from __future__ import annotations

import base64
import json
import threading

import apsw
import pytest

from vaultd.store import commands as c
from vaultd.store import errors as e
from vaultd.store import handlers, machine as machine_module
from vaultd.store.commands import ImportEntry, ImportMode
from vaultd.store.exchange import parse_import
from vaultd.store.results import ImportResult, ImportStaged

from .conftest import Driver

DOTENV = b"""# a comment
export OPENAI_API_KEY=sk-123
PLAIN = value with spaces   # trailing comment
HASH_IN_VALUE=abc#def
SINGLE='literal \\n $HOME # not a comment'
EMPTY=
EMPTY_QUOTED=""
MULTI="-----BEGIN KEY-----
abc
-----END KEY-----"  # comment after a quoted value
   INDENTED=yes
dotted.name-x=1
WIN=crlf\r
export\tTABBED=t
"""


def test_dotenv_parsing() -> None:
    entries = {x.key: x.value for x in parse_import(DOTENV, "dotenv")}
    assert entries == {
        "OPENAI_API_KEY": b"sk-123", "PLAIN": b"value with spaces", "HASH_IN_VALUE": b"abc#def",
        "SINGLE": b"literal \\n $HOME # not a comment", "EMPTY": b"", "EMPTY_QUOTED": b"",
        "MULTI": b"-----BEGIN KEY-----\nabc\n-----END KEY-----", "INDENTED": b"yes", "dotted.name-x": b"1",
        "WIN": b"crlf", "TABBED": b"t",
    }


def test_dotenv_values_exactly() -> None:
    text = b"""A=1
B='single $X \\n'
C="double\\n\\t\\"q\\" \\\\ \\$x \\z"
D=unquoted # comment
E=  spaced value  
F="multi
line"
export G=g
A=last wins
"""
    entries = parse_import(text, "dotenv")
    assert [(x.key, x.value) for x in entries] == [
        ("A", b"last wins"), ("B", b"single $X \\n"), ("C", b'double\n\t"q" \\ $x \\z'), ("D", b"unquoted"),
        ("E", b"spaced value"), ("F", b"multi\nline"), ("G", b"g")]


@pytest.mark.parametrize("text, line", [
    (b"A=1\nnot a pair SECRET\n", 2), (b"A=1\n\n1BAD=SECRET\n", 3), (b"A='SECRET\nB=2\n", 1),
    (b'A="SECRET" trailing\n', 1), (b"=SECRET\n", 1), (b"A=1\nB=SECRET\xff\n", 2), (b'A=1\nB="SECRET\n', 2),
])
def test_malformed_dotenv_names_the_line_and_never_the_text(text: bytes, line: int) -> None:
    with pytest.raises(e.MalformedImport) as info:
        parse_import(text, "dotenv")
    assert info.value.metadata["line"] == str(line)
    assert "SECRET" not in info.value.message and "SECRET" not in repr(info.value.metadata)


def test_flat_json() -> None:
    entries = parse_import(json.dumps({"openai_api_key": "sk-1", "ünï": "ü", "e": ""}).encode(), "flat_json")
    assert [(x.key, x.value) for x in entries] == [("openai_api_key", b"sk-1"), ("ünï", "ü".encode()), ("e", b"")]


@pytest.mark.parametrize("doc, where", [
    (b"[1, 2]", {"field": "$"}), (b'{"a": 1}', {"field": "a"}), (b'{"a": {"b": "c"}}', {"field": "a"}),
    (b'{"": "x"}', {"field": "$"}), (b'{"a": "x",\n "b": }', {"line": "2"}), (b"\xef\xbb\xbf{\"a\": null}", {"field": "a"}),
])
def test_malformed_flat_json(doc: bytes, where: dict[str, str]) -> None:
    with pytest.raises(e.MalformedImport) as info:
        parse_import(doc, "flat_json")
    for k, v in where.items():
        assert info.value.metadata[k] == v


def _native(entries: list[dict]) -> bytes:
    return json.dumps({"format": "vaultd.export", "version": 1, "vault": {}, "entries": entries}).encode()


@pytest.mark.parametrize("doc, field", [
    (b'{"format": "other", "version": 1, "entries": []}', "format"),
    (b'{"format": "vaultd.export", "version": 2, "entries": []}', "version"),
    (b'{"format": "vaultd.export", "version": 1}', "entries"),
    (_native([{"key": "a", "value": "AA=="}, "x"]), "entries[1]"),
    (_native([{"key": "a", "value": "AA=="}, {"key": "", "value": "AA=="}]), "entries[1].key"),
    (_native([{"key": "a", "value": "not base64!"}]), "entries[0].value"),
    (_native([{"key": "a", "value": 5}]), "entries[0].value"),
    (_native([{"key": "a" * 1025, "value": ""}]), "entries[0].key"),
])
def test_malformed_native(doc: bytes, field: str) -> None:
    with pytest.raises(e.MalformedImport) as info:
        parse_import(doc, "native")
    assert info.value.metadata["field"] == field


def test_unknown_format() -> None:
    with pytest.raises(e.MalformedImport):
        parse_import(b"", "yaml")


def _export(drive: Driver, vault: str, chunk_size: int = 64 * 1024) -> bytes:
    return b"".join(drive.machine.reader().export(vault, chunk_size))


def test_export_document(drive: Driver) -> None:
    drive.ok(c.CreateVault("app", "desc", "me", ("t",)))
    drive.ok(c.Put("app", "b", b"\x00\xffbin"))
    drive.ok(c.Put("app", "a", b"x"))
    drive.ok(c.Put("app", "a", b"xy"))
    doc = json.loads(_export(drive, "app"))
    assert doc["format"] == "vaultd.export" and doc["version"] == 1
    assert doc["vault"]["name"] == "app" and doc["vault"]["tags"] == ["t"] and doc["vault"]["key_count"] == 2
    assert [(x["key"], base64.b64decode(x["value"]), x["version"]) for x in doc["entries"]] == [
        ("a", b"xy", 2), ("b", b"\x00\xffbin", 1)]
    assert set(doc["entries"][0]) == {"key", "value", "version", "created_at", "updated_at", "revision"}


def test_export_of_an_empty_vault(drive: Driver) -> None:
    drive.ok(c.CreateVault("app"))
    assert json.loads(_export(drive, "app"))["entries"] == []


def test_export_is_chunked_and_bounded(drive: Driver) -> None:
    for i in range(10):
        drive.batch(*[c.Put("big", f"k{i:02}{j:03}", bytes(1000)) for j in range(100)])
    chunks = list(drive.machine.reader().export("big", 16 * 1024))
    assert len(chunks) > 50
    assert max(len(x) for x in chunks) < 16 * 1024 + 2000        # about one chunk, never the whole vault
    assert len(json.loads(b"".join(chunks))["entries"]) == 1000


def test_export_is_a_point_in_time_view_while_writes_continue(drive: Driver) -> None:
    drive.batch(*[c.Put("app", f"k{i:04}", b"old") for i in range(500)])
    stream = drive.machine.reader().export("app", 1024)
    first = next(stream)
    done = threading.Event()

    def write() -> None:       # apply runs on its own thread, as in the server
        drive.batch(*[c.Put("app", f"k{i:04}", b"new") for i in range(500)], c.Put("app", "zzz", b"new"))
        done.set()

    t = threading.Thread(target=write)
    t.start()
    assert done.wait(30)
    t.join()
    doc = json.loads(first + b"".join(stream))
    assert len(doc["entries"]) == 500 and {x["value"] for x in doc["entries"]} == {base64.b64encode(b"old").decode()}
    assert drive.machine.reader().get("app", "k0000").value == b"new"


def test_abandoned_export_stream_releases_its_connection(drive: Driver) -> None:
    drive.batch(*[c.Put("app", f"k{i}", bytes(100)) for i in range(100)])
    for _ in range(50):
        stream = drive.machine.reader().export("app", 256)
        next(stream)
        stream.close()
    drive.ok(c.Put("app", "after", b"v"))


def test_export_then_import_into_another_vault_reproduces_every_entry(drive: Driver) -> None:
    keys = ["a", "%", "_x", "😀", "\U0010ffff", "x" * 1024, "k:1"]
    drive.batch(*[c.Put("src", k, k.encode() * 3 + bytes(range(256))) for k in keys])
    entries = parse_import(_export(drive, "src", 512), "native")
    assert drive.ok(c.Import("dst", ImportMode.FAIL_IF_EXISTS, tuple(entries))) == ImportResult(len(keys), 0, 0)
    src = drive.machine.reader().scan("src")[0]
    dst = drive.machine.reader().scan("dst")[0]
    assert [(x.key, x.value) for x in src] == [(x.key, x.value) for x in dst]
    assert drive.machine.reader().get_vault("dst").total_bytes == drive.machine.reader().get_vault("src").total_bytes


def _staged(drive: Driver, import_id: str, vault: str, mode: ImportMode, entries: list[ImportEntry],
            chunk: int = 2) -> object:
    """The API's path: begin, chunks with sequence numbers, commit with the chunk count."""
    drive.ok(c.ImportBegin(import_id, vault, mode))
    chunks = [tuple(entries[i:i + chunk]) for i in range(0, len(entries), chunk)]
    for seq, part in enumerate(chunks):
        drive.ok(c.ImportChunk(import_id, part, seq=seq))
    return drive.one(c.ImportCommit(import_id, chunk_count=len(chunks)))


ENTRIES = [ImportEntry(f"k{i}", f"v{i}".encode()) for i in range(5)]


def test_staged_import_creates_the_vault(drive: Driver) -> None:
    assert _staged(drive, "i1", "new", ImportMode.FAIL_IF_EXISTS, ENTRIES).value == ImportResult(5, 0, 0)
    assert drive.machine.reader().get("new", "k3").value == b"v3"
    assert drive.machine.reader().get_vault("new").key_count == 5


def test_fail_if_exists_mode_is_all_or_nothing(drive: Driver) -> None:
    drive.ok(c.Put("app", "k3", b"mine"))
    before = drive.machine.reader().scan("app")[0]
    err = _staged(drive, "i1", "app", ImportMode.FAIL_IF_EXISTS, ENTRIES).error
    assert isinstance(err, e.VersionMismatch) and err.metadata["key"] == "k3" and err.actual == 1
    assert drive.machine.reader().scan("app")[0] == before


def test_overwrite_mode(drive: Driver) -> None:
    drive.ok(c.Put("app", "k1", b"v1"))          # identical: counted as skipped, version unchanged
    drive.ok(c.Put("app", "k2", b"different"))
    result = _staged(drive, "i1", "app", ImportMode.OVERWRITE, ENTRIES).value
    assert result == ImportResult(imported=3, skipped=1, overwritten=1)
    assert drive.machine.reader().get("app", "k1").version == 1
    k2 = drive.machine.reader().get("app", "k2")
    assert (k2.value, k2.version, k2.revision) == (b"v2", 2, drive.index)
    assert drive.machine.reader().get_vault("app").total_bytes == 10


def test_skip_existing_mode(drive: Driver) -> None:
    drive.ok(c.Put("app", "k2", b"mine"))
    assert _staged(drive, "i1", "app", ImportMode.SKIP_EXISTING, ENTRIES).value == ImportResult(4, 1, 0)
    assert drive.machine.reader().get("app", "k2").value == b"mine"


@pytest.mark.parametrize("mode", list(ImportMode))
def test_import_is_idempotent(drive: Driver, mode: ImportMode) -> None:
    assert _staged(drive, "i1", "app", mode, ENTRIES).value == ImportResult(5, 0, 0)
    state = drive.machine.reader().scan("app")[0]
    second = _staged(drive, "i2", "app", mode, ENTRIES)
    if mode is ImportMode.FAIL_IF_EXISTS:
        assert isinstance(second.error, e.VersionMismatch)
    else:
        assert second.value == ImportResult(0, 5, 0)
    assert drive.machine.reader().scan("app")[0] == state


def test_import_enforces_limits(drive: Driver) -> None:
    drive.ok(c.SetLimits(max_keys_per_vault=6, max_vaults=1))
    drive.ok(c.Put("app", "x", b""))
    drive.ok(c.Put("app", "y", b""))
    err = _staged(drive, "i1", "app", ImportMode.OVERWRITE, ENTRIES).error
    assert isinstance(err, e.VaultFull)
    assert drive.machine.reader().count("app") == 2
    assert isinstance(_staged(drive, "i2", "other", ImportMode.OVERWRITE, ENTRIES[:1]).error, e.TooManyVaults)
    drive.ok(c.SetLimits(max_keys_per_vault=7))
    assert _staged(drive, "i3", "app", ImportMode.OVERWRITE, ENTRIES).value == ImportResult(5, 0, 0)


def test_import_value_limit_checked_at_chunk_and_at_commit(drive: Driver) -> None:
    drive.ok(c.SetLimits(max_value_size=2))
    drive.ok(c.ImportBegin("i1", "app", ImportMode.OVERWRITE))
    assert isinstance(drive.err(c.ImportChunk("i1", (ImportEntry("a", b"123"),))), e.ValueTooLarge)
    drive.ok(c.ImportChunk("i1", (ImportEntry("a", b"12"),)))
    drive.ok(c.SetLimits(max_value_size=1))
    assert isinstance(drive.err(c.ImportCommit("i1")), e.ValueTooLarge)


def test_staging_protocol_errors(drive: Driver) -> None:
    assert isinstance(drive.err(c.ImportChunk("nope", ())), e.InvalidArgument)
    assert isinstance(drive.err(c.ImportCommit("nope")), e.InvalidArgument)
    assert isinstance(drive.err(c.ImportBegin("", "app", ImportMode.OVERWRITE)), e.InvalidArgument)
    assert isinstance(drive.err(c.ImportBegin("i", "-bad", ImportMode.OVERWRITE)), e.InvalidName)
    assert isinstance(drive.err(c.ImportBegin("i", "app", "sideways")), e.InvalidArgument)
    assert drive.ok(c.ImportBegin("i", "app", ImportMode.OVERWRITE)) == ImportStaged(0, 0)
    assert isinstance(drive.err(c.ImportBegin("i", "app", ImportMode.OVERWRITE)), e.InvalidArgument)
    assert drive.ok(c.ImportChunk("i", ENTRIES[:2], seq=0)) == ImportStaged(2, 1)
    err = drive.err(c.ImportChunk("i", ENTRIES[2:], seq=2))          # chunk 1 was lost
    assert err.metadata["field"] == "seq"
    assert isinstance(drive.err(c.ImportChunk("i", (ImportEntry("", b""),))), e.InvalidKey)
    assert drive.err(c.ImportCommit("i", chunk_count=2)).metadata["field"] == "chunk_count"
    with pytest.raises(e.VaultNotFound):
        drive.machine.reader().get_vault("app")
    assert drive.ok(c.ImportCommit("i", chunk_count=1)) == ImportResult(2, 0, 0)
    assert isinstance(drive.err(c.ImportCommit("i")), e.InvalidArgument)   # staging is gone after commit


def test_staged_entries_are_capped_by_the_key_limit(drive: Driver) -> None:
    drive.ok(c.SetLimits(max_keys_per_vault=3))
    drive.ok(c.ImportBegin("i", "app", ImportMode.OVERWRITE))
    drive.ok(c.ImportChunk("i", ENTRIES[:3]))
    assert isinstance(drive.err(c.ImportChunk("i", ENTRIES[3:])), e.VaultFull)


def test_abandoned_imports_are_evicted_by_log_position(drive: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine_module, "IMPORT_TTL", 3)
    monkeypatch.setattr(machine_module, "EVICT_EVERY", 1)
    drive.ok(c.ImportBegin("i", "app", ImportMode.OVERWRITE))
    drive.ok(c.ImportChunk("i", ENTRIES))
    drive.ok(c.Noop())
    drive.ok(c.Noop())
    drive.ok(c.Noop())
    assert drive.ok(c.ImportChunk("i", ())).staged_entries == 5    # touched: the TTL restarts
    for _ in range(4):
        drive.ok(c.Noop())
    assert isinstance(drive.err(c.ImportCommit("i")), e.InvalidArgument)
    conn = apsw.Connection(drive.machine.path)
    assert conn.execute("SELECT (SELECT count(*) FROM imports) + (SELECT count(*) FROM import_entries)").get == 0
    conn.close()


def test_open_imports_are_bounded(drive: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handlers, "MAX_OPEN_IMPORTS", 2)
    drive.ok(c.ImportBegin("a", "app", ImportMode.OVERWRITE))
    drive.ok(c.ImportBegin("b", "app", ImportMode.OVERWRITE))
    drive.ok(c.ImportChunk("a", ENTRIES[:1]))                       # "b" is now the least recently touched
    drive.ok(c.ImportBegin("c", "app", ImportMode.OVERWRITE))
    assert isinstance(drive.err(c.ImportCommit("b")), e.InvalidArgument)
    assert drive.ok(c.ImportCommit("a")) == ImportResult(1, 0, 0)
    assert drive.ok(c.ImportCommit("c")) == ImportResult(0, 0, 0)


def test_import_retried_with_request_ids_applies_once(drive: Driver) -> None:
    drive.ok(c.Put("app", "k0", b"old"))
    begin = c.Envelope("r-begin", c.ImportBegin("i", "app", ImportMode.OVERWRITE))
    chunk = c.Envelope("r-chunk", c.ImportChunk("i", ENTRIES, seq=0))
    commit = c.Envelope("r-commit", c.ImportCommit("i", chunk_count=1))
    first = [drive.one(env) for env in (begin, chunk, commit)]
    second = [drive.one(env) for env in (begin, chunk, commit)]
    assert first == second and first[2].value == ImportResult(4, 0, 1)
    assert drive.machine.reader().get("app", "k0").version == 2

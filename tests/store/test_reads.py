"""Reads: get/scan/count/list_vaults, pagination, hostile keys and vault names, and the query plans."""

from __future__ import annotations

import gc
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from vaultd.store import StateMachine
from vaultd.store import commands as c
from vaultd.store import handlers
from vaultd.store import errors as e
from vaultd.store.validation import prefix_successor

from .conftest import Driver

HOSTILE_KEYS = [
    "%", "%a", "a%", "_", "_a", "a_b", "a:b", "a:", ":", "a\x7f", "\x7f", "a\x01", "a b", "a/b", "a\\b",
    "app", "app2", "app.x", "ap", "a", "b", "😀", "😀😀", "a😀", "\U0010ffff", "a\U0010ffff", "\U00010000",
    "\ud7ff", "a\ud7ff", "\ue000", "a\ue000", "é", "e\u0301", "x" * 1024, "a" * 1023 + "b", "a" * 1024,
    "[", "]", "*", "?", "'", '"', "a'b", "'; DROP TABLE keys; --",
]
VAULTS = ["app", "app2", "app.x", "ap", "app-"]


@pytest.fixture
def hostile(drive: Driver) -> Driver:
    drive.ok(c.SetLimits(max_scan_results=5))
    for vault in VAULTS:
        drive.batch(*[c.Put(vault, k, (vault + ":" + k).encode()) for k in HOSTILE_KEYS])
    return drive


def _expected(prefix: str) -> list[str]:
    return sorted((k for k in HOSTILE_KEYS if k.startswith(prefix)), key=lambda k: k.encode())


def _scan_all(drive: Driver, vault: str, prefix: str, page_size: int) -> list[str]:
    keys, token, pages = [], "", 0
    while True:
        page, token = drive.machine.reader().scan(vault, prefix, page_size, token)
        assert len(page) <= min(page_size or 5, 5)
        keys += [entry.key for entry in page]
        pages += 1
        assert pages <= 100
        if not token:
            return keys


@pytest.mark.parametrize("prefix", ["", "a", "a%", "%", "_", "a_", ":", "a:", "\x7f", "app", "😀", "a😀",
                                    "\U0010ffff", "a\ud7ff", "e", "x" * 1000, "a" * 1023, "nothing"])
@pytest.mark.parametrize("page_size", [1, 2, 3, 5, 0, 50])
def test_prefix_scan_pages_return_each_key_once(hostile: Driver, prefix: str, page_size: int) -> None:
    for vault in VAULTS:
        assert _scan_all(hostile, vault, prefix, page_size) == _expected(prefix)


def test_scan_values_belong_to_their_vault(hostile: Driver) -> None:
    for vault in VAULTS:
        for entry in _entries(hostile, vault):
            assert entry.value == (vault + ":" + entry.key).encode()


def _entries(drive: Driver, vault: str) -> Iterator:
    token = ""
    while True:
        page, token = drive.machine.reader().scan(vault, "", 5, token)
        yield from page
        if not token:
            return


def test_count_with_prefix(hostile: Driver) -> None:
    for prefix in ["", "a", "%", "_", "😀", "app", "zzz"]:
        for vault in VAULTS:
            assert hostile.machine.reader().count(vault, prefix) == len(_expected(prefix))


def test_keys_only_scan(hostile: Driver) -> None:
    page, _ = hostile.machine.reader().scan("app", "a:", 5, keys_only=True)
    assert [(p.key, p.value, p.version) for p in page] == [("a:", b"", 1), ("a:b", b"", 1)]


def test_page_size_capped_at_scan_limit(drive: Driver) -> None:
    drive.batch(*[c.Put("v", f"k{i:04}", b"") for i in range(30)])
    drive.ok(c.SetLimits(max_scan_results=10))
    page, token = drive.machine.reader().scan("v", "", 1000)
    assert len(page) == 10 and token
    page, token = drive.machine.reader().scan("v", "", 0)
    assert len(page) == 10
    with pytest.raises(e.InvalidArgument):
        drive.machine.reader().scan("v", "", -1)


def test_last_page_exactly_full_has_no_token(drive: Driver) -> None:
    drive.batch(*[c.Put("v", f"k{i}", b"") for i in range(4)])
    page, token = drive.machine.reader().scan("v", "", 4)
    assert len(page) == 4 and token == ""
    page, token = drive.machine.reader().scan("v", "", 3)
    assert len(page) == 3 and token
    page, token = drive.machine.reader().scan("v", "", 3, token)
    assert [p.key for p in page] == ["k3"] and token == ""


def test_scan_token_sees_keys_added_after_the_first_page(drive: Driver) -> None:
    drive.batch(*[c.Put("v", k, b"") for k in "aceg"])
    page, token = drive.machine.reader().scan("v", "", 2)
    drive.batch(c.Put("v", "b", b""), c.Put("v", "d", b""))
    rest, _ = drive.machine.reader().scan("v", "", 10, token)
    assert [p.key for p in page] + [p.key for p in rest] == ["a", "c", "d", "e", "g"]


@pytest.mark.parametrize("token", ["garbage!", "AAAA", "djEAYQ"])
def test_bad_page_tokens(drive: Driver, token: str) -> None:
    drive.ok(c.Put("v", "k", b""))
    with pytest.raises(e.InvalidArgument) as info:
        drive.machine.reader().scan("v", "", 1, token)
    assert info.value.metadata["field"] == "page_token"


def test_token_from_another_prefix_is_refused(drive: Driver) -> None:
    drive.batch(*[c.Put("v", k, b"") for k in ["a1", "a2", "b1", "b2"]])
    _, token = drive.machine.reader().scan("v", "a", 1)
    with pytest.raises(e.InvalidArgument):
        drive.machine.reader().scan("v", "b", 1, token)


def test_read_errors(drive: Driver) -> None:
    reader = drive.machine.reader()
    drive.ok(c.CreateVault("v"))
    with pytest.raises(e.KeyNotFound) as info:
        reader.get("v", "k")
    assert info.value.metadata == {"vault": "v", "key": "k"}
    for call in (lambda: reader.get("nope", "k"), lambda: reader.scan("nope"), lambda: reader.count("nope"),
                 lambda: reader.get_vault("nope"), lambda: reader.export("nope")):
        with pytest.raises(e.VaultNotFound):
            call()
    with pytest.raises(e.InvalidName):
        reader.get("-x", "k")
    with pytest.raises(e.InvalidKey):
        reader.get("v", "")
    with pytest.raises(e.InvalidKey):
        reader.scan("v", "a\x00")


def test_list_vaults_paginates_in_name_order(drive: Driver) -> None:
    names = [f"v{i:03}" for i in range(23)] + ["A", "Z", "a.b", "a-b", "a_b"]
    drive.batch(*[c.CreateVault(n) for n in names])
    drive.ok(c.Put("v007", "k", b"abc"))
    seen, token = [], ""
    for _ in range(20):
        page, token = drive.machine.reader().list_vaults(4, token)
        assert len(page) <= 4
        seen += page
        if not token:
            break
    assert [v.name for v in seen] == sorted(names)
    assert next(v for v in seen if v.name == "v007").total_bytes == 3


def test_fullest_vaults_and_totals(drive: Driver) -> None:
    drive.batch(*[c.Put("a", f"k{i}", b"12") for i in range(3)], *[c.Put("b", f"k{i}", b"1") for i in range(5)],
                c.CreateVault("c"), c.Put("d", "k", b""))
    assert drive.machine.reader().fullest_vaults(2) == [("b", 5), ("a", 3)]
    assert drive.machine.reader().fullest_vaults(10)[-2:] == [("d", 1), ("c", 0)]
    assert drive.machine.totals() == (4, 9, 11)


@pytest.mark.parametrize("prefix, successor", [
    ("", None), ("a", "b"), ("a\U0010ffff", "b"), ("\U0010ffff", None), ("\ud7ff", "\ue000"), ("%", "&"),
])
def test_prefix_successor(prefix: str, successor: str | None) -> None:
    assert prefix_successor(prefix) == successor


def test_range_queries_use_the_primary_key(tmp_path: Path) -> None:
    """EXPLAIN QUERY PLAN of every statement that touches `keys` during scan, count, delete-vault and
    copy-vault, captured from the real connections as they run: each must SEARCH, never SCAN, the table."""
    statements: list[tuple[str, object]] = []

    def trace(conn: apsw.Connection) -> None:
        conn.exec_trace = lambda _cursor, sql, bindings: statements.append((sql, bindings)) or True

    apsw.connection_hooks.append(trace)
    try:
        machine = StateMachine(str(tmp_path / "db"))
        drive = Driver(machine)
        drive.batch(*[c.Put("app", f"k{i}", b"v") for i in range(20)], c.Put("app2", "k", b"v"))
        statements.clear()
        reader = machine.reader()
        reader.scan("app", "k1", 5)
        _, token = reader.scan("app", "", 5)
        reader.scan("app", "", 5, token)
        reader.count("app", "k")
        drive.ok(c.CopyVault("app", "copy"))
        drive.ok(c.DeleteVault("app"))
    finally:
        apsw.connection_hooks.remove(trace)
    touching = [(sql, b) for sql, b in statements if re.search(r"\b(FROM|INTO|UPDATE) keys\b", sql)]
    assert len(touching) >= 6
    assert any(sql.startswith("DELETE FROM keys") for sql, _ in touching)
    assert any(sql.startswith("INSERT INTO keys") and "FROM keys" in sql for sql, _ in touching)
    plans = apsw.Connection(str(tmp_path / "db"))
    for sql, bindings in touching:
        details = [row[3] for row in plans.execute("EXPLAIN QUERY PLAN " + sql, bindings)]
        on_keys = [d for d in details if re.search(r"\bkeys\b", d)]
        assert on_keys, (sql, details)
        for detail in on_keys:
            assert detail.startswith("SEARCH keys USING PRIMARY KEY (vault=?"), (sql, details)
    machine.close()


def test_reads_do_not_wait_for_an_apply_in_progress(drive: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    drive.ok(c.Put("app", "k", b"old"))
    inside, release = threading.Event(), threading.Event()

    def slow_noop(ctx: handlers.Ctx, cmd: c.Noop) -> None:
        inside.set()
        assert release.wait(30)

    monkeypatch.setitem(handlers.HANDLERS, c.Noop, slow_noop)
    applier = threading.Thread(target=lambda: drive.batch(c.Put("app", "k", b"new"), c.Noop()))
    applier.start()
    try:
        assert inside.wait(30)                     # the writer holds an open write transaction now
        started = time.monotonic()
        assert drive.machine.reader().get("app", "k").value == b"old"
        assert [x.key for x in drive.machine.reader().scan("app")[0]] == ["k"]
        assert drive.machine.state_hash()
        assert time.monotonic() - started < 5
    finally:
        release.set()
        applier.join(30)
    assert drive.machine.reader().get("app", "k").value == b"new"


def test_connections_of_finished_threads_are_released(drive: Driver) -> None:
    drive.ok(c.Put("app", "k", b"v"))
    reader = drive.machine.reader()
    for _ in range(20):
        t = threading.Thread(target=lambda: reader.get("app", "k"))
        t.start()
        t.join(10)
    gc.collect()
    assert len(reader._all) <= 2          # the main thread's, and at most one not yet collected

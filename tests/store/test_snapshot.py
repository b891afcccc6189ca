"""Snapshot and restore: consistency under concurrent writes, refusal of damaged files, readers survive."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import apsw
import pytest

from vaultd.store import StateMachine, StorageFailure
from vaultd.store import commands as c
from vaultd.store import snapshotfile
from vaultd.store.errors import SnapshotInvalid
from vaultd.store.schema import PAGE_SIZE

from .conftest import Driver


def _entries(n: int) -> list[bytes]:
    return [c.encode_batch(c.Batch(1000 + i, tuple(
        c.Envelope(f"r{i}.{j}", c.Put(f"v{j % 3}", f"k{i}.{j}", os.urandom(0) + bytes([i % 256]) * 200))
        for j in range(10)))) for i in range(n)]


def _replay(path: Path, entries: list[bytes]) -> StateMachine:
    m = StateMachine(str(path))
    for i, payload in enumerate(entries):
        m.apply_entry(i + 1, 3, payload)
    return m


def test_snapshot_under_concurrent_writes_restores_exactly_its_index(tmp_path: Path) -> None:
    entries = _entries(400)
    live = StateMachine(str(tmp_path / "live.db"))
    progress = threading.Event()

    def writer() -> None:
        for i, payload in enumerate(entries):
            live.apply_entry(i + 1, 3, payload)
            if i == 50:
                progress.set()

    thread = threading.Thread(target=writer)
    thread.start()
    assert progress.wait(30)
    infos = [live.snapshot(str(tmp_path / f"snap{i}")) for i in range(3)]
    thread.join(60)
    assert not thread.is_alive()
    try:
        for info in infos:
            assert StateMachine.read_snapshot_info(info.path) == info
            assert info.term == 3 and 50 <= info.index <= 400
            restored = StateMachine(str(tmp_path / f"restored{info.index}.db"))
            restored.restore(info.path)
            reference = _replay(tmp_path / f"ref{info.index}.db", entries[:info.index])
            assert (restored.applied_index, restored.applied_term) == (info.index, 3)
            assert restored.state_hash() == reference.state_hash()
            assert restored.totals() == reference.totals()
            restored.close()
            reference.close()
        live_final = live.state_hash()
        live.restore(infos[0].path)      # restore over a newer state rolls the whole state back to the snapshot
        assert live.applied_index == infos[0].index and live.state_hash() != live_final
    finally:
        live.close()


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    m = _replay(tmp_path / "src.db", _entries(20))
    info = m.snapshot(str(tmp_path / "snap"))
    m.close()
    return Path(info.path)


@pytest.fixture
def target(tmp_path: Path) -> Driver:
    m = StateMachine(str(tmp_path / "target.db"))
    d = Driver(m)
    d.ok(c.Put("mine", "k", b"v"))
    yield d
    m.close()


def _corrupt(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flip_image", "flip_header_digest", "truncate", "append", "magic", "empty"])
def test_damaged_snapshot_is_refused_and_nothing_changes(snapshot: Path, target: Driver, damage: str) -> None:
    if damage == "flip_image":
        _corrupt(snapshot, snapshotfile.HEADER_SIZE + 5000)
    elif damage == "flip_header_digest":
        _corrupt(snapshot, snapshotfile.HEADER_SIZE - 1)
    elif damage == "truncate":
        snapshot.write_bytes(snapshot.read_bytes()[:-4096])
    elif damage == "append":
        snapshot.write_bytes(snapshot.read_bytes() + b"\0")
    elif damage == "magic":
        _corrupt(snapshot, 0)
    else:
        snapshot.write_bytes(b"")
    before = target.machine.state_hash()
    with pytest.raises(SnapshotInvalid) as info:
        target.machine.restore(str(snapshot))
    assert info.value.reason == "SNAPSHOT_INVALID"
    assert target.machine.state_hash() == before
    assert target.machine.reader().get("mine", "k").value == b"v"
    assert target.ok(c.Put("mine", "k2", b"v")).version == 1    # still applies normally


def test_checksummed_image_that_is_not_a_sound_database_is_refused(tmp_path: Path, target: Driver) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"SQLite format 3\0" + os.urandom(8192))
    bad = snapshotfile.write(str(tmp_path / "bad"), str(garbage), 1, 1)
    foreign_db = tmp_path / "foreign.db"
    conn = apsw.Connection(str(foreign_db))
    conn.execute("CREATE TABLE t (x); INSERT INTO t VALUES (1)")
    conn.close()
    foreign = snapshotfile.write(str(tmp_path / "foreign"), str(foreign_db), 1, 1)
    before = target.machine.state_hash()
    for info in (bad, foreign):
        with pytest.raises(SnapshotInvalid):
            target.machine.restore(info.path)
    assert target.machine.state_hash() == before


def test_corrupt_page_inside_a_valid_checksum_fails_integrity_check(tmp_path: Path, target: Driver) -> None:
    m = _replay(tmp_path / "src.db", _entries(30))
    m.close()
    image = tmp_path / "image.db"
    src = apsw.Connection(str(tmp_path / "src.db"))
    dst = apsw.Connection(str(image))
    with dst.backup("main", src, "main") as b:
        b.step(-1)
    dst.execute("PRAGMA journal_mode=DELETE")
    src.close()
    dst.close()
    raw = bytearray(image.read_bytes())
    for i in range(PAGE_SIZE, 4 * PAGE_SIZE):   # scribble over b-tree pages 2-4, keep page 1 (the header) intact
        raw[i] = 0x55
    image.write_bytes(bytes(raw))
    info = snapshotfile.write(str(tmp_path / "scribbled"), str(image), 30, 3)
    before = target.machine.state_hash()
    with pytest.raises(SnapshotInvalid):
        target.machine.restore(info.path)
    assert target.machine.state_hash() == before


def test_readers_keep_working_across_restore(snapshot: Path, target: Driver) -> None:
    reader = target.machine.reader()
    assert reader.get("mine", "k").value == b"v"
    errors: list[BaseException] = []
    stop = threading.Event()

    def keep_reading() -> None:
        try:
            while not stop.is_set():
                reader.list_vaults()
                reader.limits()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=keep_reading) for _ in range(2)]
    for t in threads:
        t.start()
    target.machine.restore(str(snapshot))
    stop.set()
    for t in threads:
        t.join(10)
    assert not errors
    assert [v.name for v in reader.list_vaults()[0]] == ["v0", "v1", "v2"]
    assert target.machine.applied_index == 20
    assert target.machine.totals()[1] == 200
    # apply continues from the snapshot's index
    target.index = 20
    assert target.ok(c.Put("v0", "after", b"x")).revision == 21


def test_snapshot_of_an_empty_database(tmp_path: Path) -> None:
    m = StateMachine(str(tmp_path / "a.db"))
    info = m.snapshot(str(tmp_path / "snap"))
    assert (info.index, info.term) == (0, 0)
    other = StateMachine(str(tmp_path / "b.db"))
    other.restore(info.path)
    assert other.state_hash() == m.state_hash()
    m.close()
    other.close()
    assert sorted(p.name for p in tmp_path.iterdir() if "snap" in p.name) == ["snap"]   # no temporaries left


def test_opening_a_corrupted_database_fails_loudly(tmp_path: Path) -> None:
    path = tmp_path / "db"
    m = _replay(path, _entries(30))
    m.close()
    raw = bytearray(path.read_bytes())
    for i in range(PAGE_SIZE, 3 * PAGE_SIZE):
        raw[i] = 0xAA
    path.write_bytes(bytes(raw))
    with pytest.raises(StorageFailure):
        StateMachine(str(path))


def test_reopen_keeps_state_and_migrations_are_idempotent(tmp_path: Path) -> None:
    from vaultd.store.schema import SCHEMA_VERSION, migrate

    m = _replay(tmp_path / "db", _entries(5))
    h = m.state_hash()
    m.close()
    m = StateMachine(str(tmp_path / "db"))
    assert m.state_hash() == h and m.applied_index == 5
    conn = apsw.Connection(str(tmp_path / "db"))
    assert migrate(conn) == SCHEMA_VERSION and conn.execute("PRAGMA user_version").get == SCHEMA_VERSION
    conn.close()
    m.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    m = StateMachine(str(tmp_path / "db"))
    m.close()
    conn = apsw.Connection(str(tmp_path / "db"))
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(StorageFailure):
        StateMachine(str(tmp_path / "db"))


def test_snapshot_with_another_page_size_is_converted_on_restore(tmp_path: Path, target: Driver) -> None:
    m = _replay(tmp_path / "src.db", _entries(10))
    reference = m.state_hash()
    m.close()
    small = apsw.Connection(str(tmp_path / "src.db"))
    small.execute("PRAGMA journal_mode=DELETE")
    small.execute("PRAGMA page_size=4096")
    small.execute("VACUUM")
    assert small.execute("PRAGMA page_size").get == 4096
    small.close()
    info = snapshotfile.write(str(tmp_path / "snap4k"), str(tmp_path / "src.db"), 10, 3)
    target.machine.restore(info.path)
    assert target.machine.state_hash() == reference
    assert target.machine.reader().count("v0") > 0

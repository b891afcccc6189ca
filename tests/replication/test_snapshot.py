"""Snapshotter with a real StateMachine and DurableJournal: background build, restore, journal alignment."""

from __future__ import annotations

import time
from pathlib import Path

from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.node import TCPNode

from vaultd.replication.journal import DurableJournal
from vaultd.replication.snapshot import Snapshotter, read_header
from vaultd.store import commands as c
from vaultd.store.machine import StateMachine


def _payload(i: int) -> bytes:
    return c.encode_batch(c.Batch(1_000 + i, (c.Envelope(f"r{i}", c.Put("v", f"k{i}", b"x" * 50)),)))


def _wait(snap: Snapshotter) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = snap.check()
        if state != SERIALIZER_STATE.SERIALIZING:
            return state
        time.sleep(0.01)
    raise AssertionError("snapshot did not finish")


def test_background_snapshot_restores_into_an_empty_node_and_aligns_the_journal(tmp_path: Path) -> None:
    src = StateMachine(str(tmp_path / "a.db"))
    journal = DurableJournal(str(tmp_path / "journal"))
    for i in range(1, 11):
        journal.add(b"\x00cmd%d" % i, i, 1)
        src.apply_entry(i, 1, _payload(i))
    dump = str(tmp_path / "snapshot")
    snap = Snapshotter(src, dump, journal=journal)
    cluster = {TCPNode("127.0.0.1:1"), TCPNode("127.0.0.1:2")}
    snap.serialize(dump + ".tmp", (journal[6], journal[5], cluster))   # last = index 7, prev = index 6
    assert snap.check() in (SERIALIZER_STATE.SERIALIZING, SERIALIZER_STATE.SUCCESS)
    assert _wait(snap) == SERIALIZER_STATE.SUCCESS
    assert snap.check() == SERIALIZER_STATE.NOT_SERIALIZING                 # reported exactly once
    header, _ = read_header(dump)
    assert header["last"][:2] == [7, 1] and header["machine_index"] == 10
    assert header["cluster"] == ["127.0.0.1:1", "127.0.0.1:2"]

    # Restart with an up-to-date database and an uncompacted journal: only the header is read, and the
    # journal is compacted to start at the snapshot's prevEntry so pysyncobj keeps entries 6..10.
    last, prev, nodes = snap.deserialize(dump)
    assert (last[1], prev[1]) == (7, 6) and last == journal[1] and prev == journal[0]
    assert [e[1] for e in journal[:]] == [6, 7, 8, 9, 10]
    assert {n.address for n in nodes} == {"127.0.0.1:1", "127.0.0.1:2"}

    # A node with an empty database (wiped, or behind the log start) restores the image.
    dst = StateMachine(str(tmp_path / "b.db"))
    Snapshotter(dst, str(tmp_path / "other-dump")).deserialize(dump)
    assert dst.applied_index == 10 and dst.state_hash() == src.state_hash()
    assert dst.reader().get("v", "k3").value == b"x" * 50
    for m in (src, dst):
        m.close()


def test_failed_snapshot_is_reported_and_backs_off(tmp_path: Path) -> None:
    machine = StateMachine(str(tmp_path / "a.db"))
    dump = tmp_path / "missing-dir" / "snapshot"          # the container cannot be written there
    snap = Snapshotter(machine, str(dump))
    entry = (b"\x00x", 1, 1)
    snap.serialize(str(dump) + ".tmp", (entry, entry, set()))
    assert _wait(snap) == SERIALIZER_STATE.FAILED
    snap.serialize(str(dump) + ".tmp", (entry, entry, set()))   # within the back-off: stays busy
    assert snap.check() == SERIALIZER_STATE.SERIALIZING
    machine.close()

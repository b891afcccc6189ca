"""DurableJournal on real files: reload, torn tails, truncation, atomic compaction, term/vote persistence."""

from __future__ import annotations

import os
from pathlib import Path

from vaultd.replication.journal import MAGIC, DurableJournal


def _filled(path: Path, n: int, fsync: bool = True) -> DurableJournal:
    j = DurableJournal(str(path), fsync=fsync)
    for i in range(1, n + 1):
        j.add(b"cmd-%d" % i, i, 1 + i // 5)
    j.sync()
    return j


def test_entries_and_term_vote_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    j = _filled(path, 10)
    j.setCurrentTerm(7, "127.0.0.1:7001")
    j.setRaftCommitIndex(9)
    j._destroy()
    k = DurableJournal(str(path))
    assert len(k) == 10 and k[0] == (b"cmd-1", 1, 1) and k[-1] == (b"cmd-10", 10, 3)
    assert [e[1] for e in k[2:5]] == [3, 4, 5]
    assert k.getCurrentTerm() == 7 and k.getVotedForNodeId() == "127.0.0.1:7001"
    assert k.getRaftCommitIndex() == 9


def test_torn_tail_is_cut_off_at_load(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    _filled(path, 5)._destroy()
    good_size = path.stat().st_size
    with open(path, "ab") as f:                 # a crash in the middle of appending entry 6
        f.write(b"\x40\x00\x00\x00garbage")
    k = DurableJournal(str(path))
    assert len(k) == 5 and k.truncated_tail_bytes == 11
    assert path.stat().st_size == good_size
    k.add(b"cmd-6", 6, 2)                       # appends continue where the good data ended
    k._destroy()
    assert [e[1] for e in DurableJournal(str(path))[:]] == [1, 2, 3, 4, 5, 6]


def test_corrupted_record_ends_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    _filled(path, 5)._destroy()
    data = bytearray(path.read_bytes())
    data[-2] ^= 0xFF                            # flip a bit inside the last command
    path.write_bytes(bytes(data))
    assert [e[1] for e in DurableJournal(str(path))[:]] == [1, 2, 3, 4]


def test_delete_from_truncates_file(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    j = _filled(path, 10)
    j.deleteEntriesFrom(6)                      # list position 6 = index 7
    j.add(b"other", 7, 9)
    j._destroy()
    k = DurableJournal(str(path))
    assert [(e[1], e[2]) for e in k[:]][-2:] == [(6, 2), (7, 9)] and len(k) == 7


def test_compaction_rewrites_atomically(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    j = _filled(path, 50)
    before = path.stat().st_size
    j.deleteEntriesTo(45)
    assert [e[1] for e in j[:]] == [46, 47, 48, 49, 50]
    j.add(b"cmd-51", 51, 11)
    j._destroy()
    assert path.stat().st_size < before / 5
    assert not (tmp_path / "journal.compact").exists()
    assert [e[1] for e in DurableJournal(str(path))[:]] == [46, 47, 48, 49, 50, 51]


def test_clear_and_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    j = _filled(path, 3)
    j.clear()
    j.add(b"snap-prev", 99, 4)
    j.add(b"snap-last", 100, 4)
    j._destroy()
    assert [e[1] for e in DurableJournal(str(path))[:]] == [99, 100]
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert len(DurableJournal(str(empty))) == 0 and empty.read_bytes() == MAGIC


def test_unsafe_mode_still_writes_everything(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    j = _filled(path, 20, fsync=False)
    j.setCurrentTerm(3, None)
    # Simulate a process crash: no _destroy, the file descriptor is simply abandoned.
    os.close(os.dup(j._fd))
    k = DurableJournal(str(path), fsync=False)
    assert len(k) == 20 and k.getCurrentTerm() == 3 and k.getVotedForNodeId() is None


def test_failed_fsync_keeps_the_journal_dirty_and_reports_the_failure(tmp_path: Path, monkeypatch) -> None:
    # Fault injection: a real EIO from fdatasync cannot be produced on a healthy disk.
    failures: list[str] = []
    j = DurableJournal(str(tmp_path / "journal"), on_failure=failures.append)
    j.add(b"cmd-1", 1, 1)
    real = os.fdatasync

    def eio(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", eio)
    try:
        j.sync()
    except OSError:
        pass
    monkeypatch.setattr(os, "fdatasync", real)
    assert failures and "fsync" in failures[0]
    assert j.dirty                       # never treated as durable: the next ack still waits for a sync
    j._destroy()


def test_short_append_is_a_failure_not_a_silent_torn_entry(tmp_path: Path, monkeypatch) -> None:
    failures: list[str] = []
    j = DurableJournal(str(tmp_path / "journal"), on_failure=failures.append)
    real = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: real(fd, data[:10], offset))   # disk full
    try:
        j.add(b"cmd-1", 1, 1)
    except OSError:
        pass
    monkeypatch.setattr(os, "pwrite", real)
    assert failures and "append" in failures[0]
    assert len(j) == 0                   # not in memory either: pysyncobj never sees it as appended
    j._destroy()

"""trim_append_entries: a follower never truncates entries it already holds from the current leader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vaultd.replication.journal import DurableJournal
from vaultd.replication.transport import trim_append_entries


def _journal(tmp_path: Path, terms: list[int]) -> DurableJournal:
    j = DurableJournal(str(tmp_path / "journal"), fsync=False)
    for idx, term in enumerate(terms, start=1):
        j.add(b"c%d" % idx, idx, term)
    return j


def _msg(prev: int, prev_term: int, entries: list[tuple[bytes, int, int]], term: int = 2) -> dict[str, Any]:
    return {"type": "append_entries", "term": term, "commit_index": 1, "prevLogIdx": prev,
            "prevLogTerm": prev_term, "entries": entries}


def test_duplicate_prefix_is_skipped(tmp_path: Path) -> None:
    j = _journal(tmp_path, [1, 2, 2, 2])
    m = _msg(1, 1, [(b"c2", 2, 2), (b"c3", 3, 2), (b"c4", 4, 2), (b"c5", 5, 2)])
    trim_append_entries(m, j)
    assert (m["prevLogIdx"], m["prevLogTerm"], [e[1] for e in m["entries"]]) == (4, 2, [5])


def test_stale_heartbeat_acknowledges_entries_of_the_current_term(tmp_path: Path) -> None:
    j = _journal(tmp_path, [1, 2, 2, 2])
    m = _msg(2, 2, [])
    trim_append_entries(m, j)
    assert (m["prevLogIdx"], m["prevLogTerm"], m["entries"]) == (4, 2, [])


def test_conflicts_are_left_to_raft(tmp_path: Path) -> None:
    j = _journal(tmp_path, [1, 1, 1])
    m = _msg(1, 1, [(b"x2", 2, 2)])                 # term differs: a real conflict, must truncate
    trim_append_entries(m, j)
    assert (m["prevLogIdx"], [e[1] for e in m["entries"]]) == (1, [2])
    old_term_tail = _msg(1, 1, [])                  # our tail is from an older term: do not claim it
    trim_append_entries(old_term_tail, j)
    assert old_term_tail["prevLogIdx"] == 1
    mismatch = _msg(2, 5, [])                       # prev term mismatch: untouched
    trim_append_entries(mismatch, j)
    assert mismatch["prevLogIdx"] == 2 and mismatch["prevLogTerm"] == 5


def test_other_messages_untouched(tmp_path: Path) -> None:
    j = _journal(tmp_path, [1, 2])
    snapshot = {"type": "append_entries", "term": 2, "commit_index": 1, "serialized": (b"x", True, False)}
    trim_append_entries(snapshot, j)
    assert "prevLogIdx" not in snapshot
    vote = {"type": "request_vote", "term": 3}
    trim_append_entries(vote, j)
    assert vote == {"type": "request_vote", "term": 3}

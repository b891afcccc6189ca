"""Determinism, idempotent replay, exactly-once request ids, timestamps, and failure containment."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from vaultd.store import StateMachine, StorageFailure
from vaultd.store import commands as c
from vaultd.store import errors as e
from vaultd.store import handlers, machine as machine_module
from vaultd.store.commands import Batch, Envelope
from vaultd.store.results import PutResult

from .conftest import Driver, workload


def _replay(path: Path, entries: list[bytes]) -> tuple[StateMachine, list]:
    m = StateMachine(str(path))
    outcomes = [m.apply_entry(i + 1, 1 + i // 20, payload) for i, payload in enumerate(entries)]
    return m, outcomes


def test_two_replicas_given_the_same_log_are_identical(tmp_path: Path) -> None:
    entries = workload(7)
    a, out_a = _replay(tmp_path / "a.db", entries)
    b, out_b = _replay(tmp_path / "b.db", entries)
    try:
        assert out_a == out_b                       # including every rejection, identically
        assert any(not r.ok for rs in out_a for r in rs) and any(r.ok for rs in out_a for r in rs)
        assert a.state_hash() == b.state_hash()
        assert a.totals() == b.totals()
    finally:
        a.close()
        b.close()


def test_different_logs_give_different_hashes(tmp_path: Path) -> None:
    a, _ = _replay(tmp_path / "a.db", workload(1))
    b, _ = _replay(tmp_path / "b.db", workload(2))
    try:
        assert a.state_hash() != b.state_hash()
    finally:
        a.close()
        b.close()


def test_hash_covers_applied_index_values_and_settings(drive: Driver) -> None:
    drive.ok(c.Put("app", "k", b"v"))
    h1 = drive.machine.state_hash()
    drive.ok(c.Noop())
    h2 = drive.machine.state_hash()
    drive.ok(c.SetLimits(max_vaults=9))
    h3 = drive.machine.state_hash()
    drive.ok(c.Put("app", "k", b"w"))
    assert len({h1, h2, h3, drive.machine.state_hash()}) == 4


def test_hashed_state_pairs_the_hash_with_its_index(drive: Driver) -> None:
    """GetStatus reports both: read from one transaction, a hash always belongs to the index beside it."""
    seen: dict[int, str] = {}
    for i in range(20):
        drive.ok(c.Put("app", f"k{i}", b"v"))
        seen[drive.machine.applied_index] = drive.machine.state_hash()
    reader = drive.machine.reader()
    index, digest = reader.hashed_state()
    assert index == drive.machine.applied_index and digest == seen[index]


def test_reapplying_an_old_index_changes_nothing(tmp_path: Path) -> None:
    entries = workload(3, 20)
    m, _ = _replay(tmp_path / "db", entries)
    try:
        before = m.state_hash()
        for i, payload in enumerate(entries):
            m.apply_entry(i + 1, 1, payload)
        m.apply(5, 1, Batch(1, (Envelope("", c.Put("app", "new", b"v")),)))
        assert m.state_hash() == before
        assert m.applied_index == len(entries)
    finally:
        m.close()


def test_replay_after_restart_is_idempotent(tmp_path: Path) -> None:
    entries = workload(4, 30)
    m, _ = _replay(tmp_path / "db", entries[:20])
    m.close()
    m = StateMachine(str(tmp_path / "db"))            # reopened: knows it applied 20
    assert m.applied_index == 20
    for i, payload in enumerate(entries):             # the journal replays everything from the start
        m.apply_entry(i + 1, 1 + i // 20, payload)
    ref, _ = _replay(tmp_path / "ref.db", entries)
    try:
        assert m.state_hash() == ref.state_hash()
    finally:
        m.close()
        ref.close()


def test_replay_returns_recorded_outcomes_for_request_ids(drive: Driver) -> None:
    first = drive.batch(Envelope("req-1", c.Put("app", "k", b"v")), Envelope("", c.Noop()))
    again = drive.machine.apply(drive.index, 1, Batch(0, (Envelope("req-1", c.Put("app", "k", b"v")),
                                                          Envelope("", c.Noop()))))
    assert again[0] == first[0]
    assert isinstance(again[1].error, e.AlreadyApplied)


def test_request_id_returns_original_result_without_reapplying(drive: Driver) -> None:
    put = Envelope("req-1", c.Put("app", "k", b"v1"))
    original = drive.one(put)
    assert original.value == PutResult(1, drive.index)
    retried = drive.one(put)
    assert retried == original
    assert drive.machine.reader().get("app", "k").version == 1
    # same id within one batch, and an id whose first outcome was a rejection
    results = drive.batch(Envelope("req-2", c.Put("app", "k", b"x", 5)), Envelope("req-2", c.Put("app", "k", b"x")))
    assert isinstance(results[0].error, e.VersionMismatch) and results[1] == results[0]
    assert drive.machine.reader().get("app", "k").version == 1


def test_request_ids_are_evicted_by_log_position(drive: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine_module, "REQUEST_WINDOW", 5)
    monkeypatch.setattr(machine_module, "EVICT_EVERY", 1)
    drive.one(Envelope("old", c.Put("app", "k", b"v")))
    for _ in range(5):
        drive.ok(c.Noop())
    assert drive.one(Envelope("old", c.Put("app", "k", b"v"))).value.version == 1   # still remembered
    drive.ok(c.Noop())
    assert drive.one(Envelope("old", c.Put("app", "k", b"v"))).value.version == 2   # forgotten: applied again


def test_request_table_has_a_count_bound(drive: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine_module, "MAX_REQUESTS", 3)
    drive.batch(*[Envelope(f"r{i}", c.Put("app", f"k{i}", b"v")) for i in range(5)])
    conn = apsw.Connection(drive.machine.path)
    ids = [r[0] for r in conn.execute("SELECT request_id FROM requests ORDER BY log_index, position")]
    assert ids == ["r2", "r3", "r4"]
    assert conn.execute("SELECT request_count FROM state").get == 3
    conn.close()


def test_overlong_request_id_is_rejected(drive: Driver) -> None:
    assert isinstance(drive.err(Envelope("x" * 513, c.Noop())), e.InvalidArgument)


def test_timestamps_come_from_the_batch_and_never_go_backwards(drive: Driver) -> None:
    drive.batch(c.Put("app", "a", b""), ts=5_000)
    assert drive.machine.reader().get("app", "a").created_at == 5_000
    drive.batch(c.Put("app", "b", b""), ts=4_000)          # a proposer with a slower clock
    assert drive.machine.reader().get("app", "b").created_at == 5_000
    drive.batch(c.Put("app", "c", b""), ts=6_000)
    assert drive.machine.reader().get("app", "c").created_at == 6_000


def test_rejected_command_does_not_touch_timestamps(drive: Driver) -> None:
    drive.ok(c.CreateVault("app"))
    before = drive.machine.reader().get_vault("app")
    drive.err(c.UpdateVault("app", tags=("x" * 100,)))
    assert drive.machine.reader().get_vault("app") == before


def test_undecodable_entry_consumes_its_index(drive: Driver) -> None:
    drive.ok(c.Put("app", "k", b"v"))
    before = drive.machine.state_hash()
    results = drive.machine.apply_entry(drive.index + 1, 1, b"\xff\xfe garbage")
    assert len(results) == 1 and isinstance(results[0].error, e.InvalidArgument)
    assert drive.machine.applied_index == drive.index + 1
    assert drive.machine.reader().get("app", "k").value == b"v"
    assert drive.machine.state_hash() != before               # only the applied index moved
    assert isinstance(drive.machine.apply_entry(drive.index + 1, 1, b"\xff")[0].error, e.AlreadyApplied)


def test_bug_in_one_command_rolls_it_back_and_yields_internal(drive: Driver, monkeypatch) -> None:
    def broken_put(ctx: handlers.Ctx, cmd: c.Put) -> None:
        ctx.conn.execute("INSERT INTO keys VALUES ('app', 'half', x'00', 1, 0, 0, 0)")
        raise KeyError("a value that must not leak")

    monkeypatch.setitem(handlers.HANDLERS, c.Put, broken_put)
    results = drive.batch(c.CreateVault("app"), c.Put("app", "k", b"secret"), c.Noop())
    assert results[0].ok and results[2].ok
    err = results[1].error
    assert err.reason == "INTERNAL" and "value" not in err.message and "KeyError" in err.message
    assert drive.machine.reader().count("app") == 0              # the half-applied insert was rolled back
    assert drive.machine.applied_index == drive.index


def test_environmental_failure_raises_storage_failure_and_applies_nothing(drive: Driver, monkeypatch) -> None:
    drive.ok(c.Put("app", "k", b"v"))
    before, index = drive.machine.state_hash(), drive.machine.applied_index

    def disk_full(ctx: handlers.Ctx, cmd: c.Put) -> None:
        ctx.conn.execute("INSERT INTO keys VALUES ('app', 'x', x'00', 1, 0, 0, 0)")
        raise apsw.FullError("database or disk is full")

    monkeypatch.setitem(handlers.HANDLERS, c.Put, disk_full)
    with pytest.raises(StorageFailure):
        drive.batch(c.Noop(), c.Put("app", "x", b"v"))
    assert drive.machine.applied_index == index
    assert drive.machine.state_hash() == before
    monkeypatch.undo()
    assert drive.machine.apply(index + 1, 1, Batch(1, (Envelope("", c.Put("app", "x", b"v")),)))[0].ok


def test_results_never_contain_values(drive: Driver) -> None:
    secret = "sk_live_SECRET"
    drive.ok(c.SetLimits(max_value_size=20))
    outcomes = drive.batch(
        c.Put("app", "k", secret.encode() * 3), c.Put("app", "k", secret.encode()),
        c.Put("app", "k", secret.encode(), 7), c.Txn("app", (c.TxnPut("k", secret.encode(), 9),)),
        c.Import("app", c.ImportMode.FAIL_IF_EXISTS, (c.ImportEntry("k", secret.encode()),)))
    for result in outcomes:
        text = repr(result) if not result.ok else ""
        assert secret not in text


def test_bug_outside_any_command_fails_the_batch_deterministically(drive: Driver, monkeypatch) -> None:
    def broken_encode(result: object) -> bytes:
        raise ValueError("bug")

    monkeypatch.setattr(machine_module, "encode_result", broken_encode)
    results = drive.batch(c.Put("app", "k", b"v"), Envelope("rid", c.Noop()))
    assert [r.error.reason for r in results] == ["INTERNAL", "INTERNAL"]
    assert drive.machine.applied_index == drive.index           # the index is consumed, nothing else changed
    with pytest.raises(e.VaultNotFound):
        drive.machine.reader().get_vault("app")

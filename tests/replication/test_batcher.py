"""Group commit (vaultd.replication.batcher) against a stand-in for pysyncobj's propose: completion hooks of
entries written off at their deadline run even when nothing else is ever proposed."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from vaultd.replication import errors
from vaultd.replication.barriers import BarrierGroup
from vaultd.replication.batcher import Batcher, Pending
from vaultd.store import commands as c


def _batcher(propose: Callable[[bytes, Callable[[Any, int], None]], None]) -> Batcher:
    return Batcher(propose, batch_max_bytes=64 * 1024, entry_max_bytes=1 << 20, max_inflight=2,
                   max_pending=1000, linger_seconds=0.0, on_success=lambda: None)


def _silent_raft() -> tuple[Callable[[bytes, Callable[[Any, int], None]], None], list[Any]]:
    """A propose that never answers (a leader cut off from its majority: the entry never commits)."""
    callbacks: list[Any] = []
    return (lambda _payload, callback: callbacks.append(callback)), callbacks


def test_an_expired_in_flight_entry_runs_its_hook_without_another_proposal() -> None:
    propose, proposed = _silent_raft()
    batcher = _batcher(propose)
    batcher.start()
    try:
        done = threading.Event()
        finished: list[Pending] = []
        batcher.enqueue((c.Envelope("", c.Noop()),), 0.2, on_done=lambda p: (finished.append(p), done.set()))
        # Before the fix the hook waited for the next proposal, which on an idle follower never came: its read
        # barrier group stayed busy forever and every later read timed out.
        assert done.wait(10), "the written-off entry's hook never ran"
        assert len(proposed) == 1 and isinstance(finished[0].error, errors.Timeout)
    finally:
        batcher.stop(errors.Unavailable("test over", "NOT_READY"))


def test_read_barriers_recover_after_one_expired_in_flight() -> None:
    """The barrier group launches the next barrier from the expired one's hook: with a Raft that answers
    again, a later barrier succeeds without any write passing through."""
    answering = threading.Event()
    callbacks: list[Callable[[Any, int], None]] = []

    def propose(payload: bytes, callback: Callable[[Any, int], None]) -> None:
        if answering.is_set():
            callback([None] * len(c.decode_batch(payload).commands), 0)   # FAIL_REASON.SUCCESS
        else:
            callbacks.append(callback)

    batcher = _batcher(propose)
    barriers = BarrierGroup(batcher)
    batcher.start()
    try:
        try:
            barriers.wait(0.2)
        except errors.Timeout:
            pass
        answering.set()
        barriers.wait(5.0)     # raised Timeout before the fix: the first barrier was never finished
    finally:
        batcher.stop(errors.Unavailable("test over", "NOT_READY"))

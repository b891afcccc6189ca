"""Linearizable read fences shared between concurrent readers (see DESIGN.md, "Linearizable reads").

Why sharing: a barrier is a Noop log entry; every reader arriving while one is in flight waits for the next
one, so a burst of reads costs two entries, not one per read.
"""

from __future__ import annotations

import threading

from vaultd.replication import errors
from vaultd.replication.batcher import Batcher, Pending
from vaultd.store import commands


class BarrierGroup:
    """Linearizable read fences: one Noop in flight; callers arriving meanwhile share the next one."""

    def __init__(self, batcher: Batcher) -> None:
        self._batcher = batcher
        self._lock = threading.Lock()
        self._current: Barrier | None = None
        self._next: Barrier | None = None

    def wait(self, timeout: float) -> None:
        with self._lock:
            if self._next is None:
                self._next = Barrier(timeout)
            else:   # not launched yet: it must live as long as its most patient caller needs
                self._next.timeout = max(self._next.timeout, Barrier.clamp(timeout))
            barrier = self._next
            launch = self._current is None
            if launch:
                self._current, self._next = barrier, None
        if launch:
            self._launch(barrier)
        if not barrier.event.wait(timeout):
            raise errors.Timeout("read barrier did not complete before the deadline")
        if barrier.error is not None:
            raise barrier.error

    def _launch(self, barrier: Barrier) -> None:
        try:
            self._batcher.enqueue((commands.Envelope("", commands.Noop()),), barrier.timeout,
                                        on_done=lambda p: self._done(barrier, p))
        except errors.ReplicationError as exc:
            self._done(barrier, None, exc)

    def _done(self, barrier: Barrier, pending: Pending | None, error: BaseException | None = None) -> None:
        if pending is not None:
            error = pending.error
        if isinstance(error, errors.Ambiguous) and not isinstance(error, errors.Timeout):
            error = errors.Unavailable(f"read barrier failed: {error}", "NO_LEADER")
        barrier.error = error
        with self._lock:
            self._current = None
            nxt = self._next
            if nxt is not None:
                self._current, self._next = nxt, None
        barrier.event.set()
        if nxt is not None:
            self._launch(nxt)


class Barrier:
    __slots__ = ("timeout", "event", "error")

    def __init__(self, timeout: float) -> None:
        self.timeout = self.clamp(timeout)
        self.event = threading.Event()
        self.error: BaseException | None = None

    @staticmethod
    def clamp(timeout: float) -> float:
        return min(max(timeout, 0.2), 10.0)

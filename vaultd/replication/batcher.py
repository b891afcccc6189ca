"""Group commit: many callers' commands -> few Raft log entries, each caller gets its own results.

Why adaptive batching instead of a fixed timer: with nothing in flight a proposal leaves at once (single-
client latency is one Raft round trip), and while `max_inflight` entries are in flight new commands pile up
and leave together as one entry of up to `batch_max_bytes` (throughput grows with concurrency, and one
journal fsync covers the whole group). An optional linger (`batch_linger_ms`) trades latency for bigger
batches.

Deadlines are ours: pysyncobj callbacks have no timeout, and a command forwarded to a leader over a broken
link is dropped silently. Each caller waits with its own deadline; a command still queued when its caller
gives up is withdrawn (never proposed); an in-flight entry whose callers all gave up is written off after
its deadline so the in-flight slot is not lost forever (a late callback for it is ignored).

Threading: `submit`/`enqueue` from any thread; one batcher thread encodes and proposes; pysyncobj calls
`_on_result` on its tick thread, which only hands results over and must never block or raise.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from pysyncobj import FAIL_REASON

from vaultd.observability import metrics
from vaultd.replication import errors
from vaultd.store import commands
from vaultd.store.errors import ValueTooLarge

log = logging.getLogger("vaultd.raft")

QUEUED, PROPOSED, DONE = 0, 1, 2

# pysyncobj failure -> exception. Unavailable: certainly not applied. Others: maybe applied.
_FAILURES: dict[int, Callable[[], errors.ReplicationError]] = {
    FAIL_REASON.QUEUE_FULL: lambda: errors.Unavailable("raft queue full", "OVERLOADED"),
    FAIL_REASON.MISSING_LEADER: lambda: errors.Unavailable("no leader", "NO_LEADER"),
    FAIL_REASON.NOT_LEADER: lambda: errors.Unavailable("forwarded to a node that is not the leader", "NO_LEADER"),
    FAIL_REASON.REQUEST_DENIED: lambda: errors.Unavailable("request denied by the leader", "NOT_READY"),
    FAIL_REASON.DISCARDED: lambda: errors.LeaderChanged("entry replaced by a new leader"),
    FAIL_REASON.LEADER_CHANGED: lambda: errors.LeaderChanged("leader changed while the command was in flight"),
    FAIL_REASON.UNKNOWN_OUTCOME: lambda: errors.UnknownOutcome("outcome unknown"),
}
_FAIL_LABELS = {FAIL_REASON.QUEUE_FULL: "queue_full", FAIL_REASON.MISSING_LEADER: "no_leader",
                FAIL_REASON.NOT_LEADER: "not_leader", FAIL_REASON.REQUEST_DENIED: "denied",
                FAIL_REASON.DISCARDED: "discarded", FAIL_REASON.LEADER_CHANGED: "leader_changed",
                FAIL_REASON.UNKNOWN_OUTCOME: "unknown_outcome"}


def failure_for(err: int) -> errors.ReplicationError:
    make = _FAILURES.get(err)
    return make() if make is not None else errors.UnknownOutcome(f"raft failure {err}")


class Pending:
    """One caller's commands. Completed exactly once, by result, failure or withdrawal."""

    __slots__ = ("envelopes", "size", "deadline", "state", "results", "error", "event", "on_done")

    def __init__(self, envelopes: tuple[commands.Envelope, ...], size: int, deadline: float,
                 on_done: Callable[[Pending], None] | None = None) -> None:
        self.envelopes = envelopes
        self.size = size
        self.deadline = deadline
        self.state = QUEUED
        self.results: list[Any] | None = None
        self.error: BaseException | None = None
        self.event = threading.Event()
        self.on_done = on_done


class _Proposal:
    __slots__ = ("group", "deadline", "closed")

    def __init__(self, group: list[Pending]) -> None:
        self.group = group
        self.deadline = max(p.deadline for p in group)
        self.closed = False


class Batcher:
    """Collects Pending commands and proposes them via `propose(payload, callback)`."""

    def __init__(self, propose: Callable[[bytes, Callable[[Any, int], None]], None], *,
                 batch_max_bytes: int, entry_max_bytes: int, max_inflight: int, max_pending: int,
                 linger_seconds: float, on_success: Callable[[], None]) -> None:
        self._propose = propose
        self.batch_max_bytes = batch_max_bytes
        self.entry_max_bytes = entry_max_bytes
        self.max_inflight = max(1, max_inflight)
        self.max_pending = max_pending
        self.linger = linger_seconds
        self._on_success = on_success
        self._cond = threading.Condition()
        self._queue: deque[Pending] = deque()
        self._inflight: list[_Proposal] = []
        self._pending_commands = 0
        self._running = False
        self._thread: threading.Thread | None = None
        self._hooks: list[Pending] = []     # completed pendings whose on_done runs outside the lock

    # --- callers ----------------------------------------------------------------------------------------
    @property
    def pending_commands(self) -> int:
        return self._pending_commands

    def start(self) -> None:
        with self._cond:
            self._running = True
        self._thread = threading.Thread(target=self._run, daemon=True, name="vaultd-batcher")
        self._thread.start()

    def stop(self, error: BaseException) -> None:
        """Stop proposing; fail everything queued (not applied) and in flight (outcome unknown)."""
        with self._cond:
            self._running = False
            queued, self._queue = list(self._queue), deque()
            inflight, self._inflight = self._inflight, []
            for prop in inflight:
                prop.closed = True
            self._cond.notify_all()
            for p in queued:
                self._finish_locked(p, error)
            for prop in inflight:
                for p in prop.group:
                    self._finish_locked(p, errors.UnknownOutcome("node stopping; outcome unknown"))
        self._run_hooks()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def enqueue(self, envelopes: Sequence[commands.Envelope], timeout: float,
                on_done: Callable[[Pending], None] | None = None) -> Pending:
        envelopes = tuple(envelopes)
        size = sum(_envelope_size(e) for e in envelopes)
        if size > self.entry_max_bytes:
            raise ValueTooLarge(size, self.entry_max_bytes)
        pending = Pending(envelopes, size, time.monotonic() + timeout, on_done)
        with self._cond:
            if not self._running:
                raise errors.Unavailable("node is not running", "NOT_READY")
            if self._pending_commands + len(envelopes) > self.max_pending:
                metrics.raft_proposals_failed_total.labels("overloaded").inc(len(envelopes))
                raise errors.Unavailable("too many commands pending on this node", "OVERLOADED")
            self._queue.append(pending)
            self._pending_commands += len(envelopes)  # vaultd_raft_proposals_pending, read at scrape time
            self._cond.notify_all()
        return pending

    def wait(self, pending: Pending) -> list[Any]:
        """Block until the pending completes or its deadline passes (then Timeout; withdrawn if not proposed)."""
        if not pending.event.wait(max(0.0, pending.deadline - time.monotonic())):
            with self._cond:
                if pending.state == QUEUED:
                    self._queue.remove(pending)
                    self._finish_locked(pending, errors.Timeout("deadline passed before the command was proposed"))
                elif pending.state == PROPOSED:
                    pending.error = errors.Timeout("deadline passed; the command may still be applied")
            self._run_hooks()
        if pending.error is not None:
            if isinstance(pending.error, errors.Timeout):
                metrics.raft_proposals_failed_total.labels("timeout").inc(len(pending.envelopes))
            raise pending.error
        assert pending.results is not None
        return pending.results

    # --- batcher thread ---------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                running, prop = self._next_proposal_locked()
            self._run_hooks()
            if not running:
                return
            if prop is not None:
                self._send(prop)

    def _next_proposal_locked(self) -> tuple[bool, _Proposal | None]:
        """(still running, the next group to propose or None). Returns without a group when completion hooks
        are waiting: an entry written off at its deadline must hand its result over now, not when the next
        proposal leaves (on an idle follower that never happened, so its read-barrier group stayed busy and
        every later linearizable read timed out)."""
        while True:
            if not self._running:
                return False, None
            self._expire_inflight_locked()
            if self._hooks:
                return True, None
            if self._queue and len(self._inflight) < self.max_inflight:
                break
            self._cond.wait(0.05)
        if self.linger > 0:
            queued = sum(p.size for p in self._queue)
            if queued < self.batch_max_bytes:
                self._cond.wait(self.linger)
        group: list[Pending] = []
        size = 0
        while self._queue:
            nxt = self._queue[0]
            if group and (size + nxt.size > self.batch_max_bytes or size + nxt.size > self.entry_max_bytes):
                break
            self._queue.popleft()
            nxt.state = PROPOSED
            group.append(nxt)
            size += nxt.size
        if not group:
            return self._next_proposal_locked()
        prop = _Proposal(group)
        self._inflight.append(prop)
        return True, prop

    def _expire_inflight_locked(self) -> None:
        now = time.monotonic()
        for prop in [p for p in self._inflight if p.deadline < now]:
            prop.closed = True
            self._inflight.remove(prop)
            for p in prop.group:
                self._finish_locked(p, errors.Timeout("no outcome before the deadline"))

    def _send(self, prop: _Proposal) -> None:
        envelopes = tuple(e for p in prop.group for e in p.envelopes)
        try:
            payload = commands.encode_batch(commands.Batch(timestamp_ns=time.time_ns(), commands=envelopes))
            metrics.raft_batch_size.observe(len(envelopes))
            self._propose(payload, lambda res, err: self._on_result(prop, res, err))
        except Exception as exc:  # e.g. the Raft object was destroyed: not proposed, so not applied
            log.warning("proposal failed before reaching raft: %s", type(exc).__name__)
            self._on_result(prop, None, FAIL_REASON.MISSING_LEADER)

    # --- tick thread ----------------------------------------------------------------------------------------
    def _on_result(self, prop: _Proposal, res: Any, err: int) -> None:
        try:
            with self._cond:
                if prop.closed:
                    return
                prop.closed = True
                if prop in self._inflight:
                    self._inflight.remove(prop)
                self._cond.notify_all()
                if err == FAIL_REASON.SUCCESS:
                    total = sum(len(p.envelopes) for p in prop.group)
                    if not isinstance(res, list) or len(res) != total:
                        log.error("apply returned %s results for %d commands", type(res).__name__, total)
                        for p in prop.group:
                            self._finish_locked(p, errors.UnknownOutcome("unexpected apply result"))
                        return
                    pos = 0
                    for p in prop.group:
                        n = len(p.envelopes)
                        self._finish_locked(p, results=res[pos:pos + n])
                        pos += n
                    metrics.raft_proposals_committed_total.inc(total)
                else:
                    label = _FAIL_LABELS.get(err, "other")
                    for p in prop.group:
                        metrics.raft_proposals_failed_total.labels(label).inc(len(p.envelopes))
                        self._finish_locked(p, failure_for(err))
            self._run_hooks()
            if err == FAIL_REASON.SUCCESS:
                self._on_success()
        except Exception:  # never let a callback break pysyncobj's apply loop
            log.exception("group commit callback failed")

    # --- completion ---------------------------------------------------------------------------------------
    def _finish_locked(self, p: Pending, error: BaseException | None = None,
                       results: list[Any] | None = None) -> None:
        if p.state == DONE:
            return
        p.state = DONE
        if p.error is None:          # a caller that already timed out keeps its Timeout
            p.error = error
        p.results = results
        self._pending_commands -= len(p.envelopes)
        p.event.set()
        if p.on_done is not None:
            self._hooks.append(p)

    def _run_hooks(self) -> None:
        """Run on_done hooks outside the lock (they may enqueue again, e.g. the next read barrier)."""
        while True:
            with self._cond:
                if not self._hooks:
                    return
                p = self._hooks.pop(0)
            try:
                assert p.on_done is not None
                p.on_done(p)
            except Exception:
                log.exception("completion hook failed")


def _envelope_size(envelope: commands.Envelope) -> int:
    """Encoded size of one envelope (what it adds to an entry)."""
    return len(commands.encode_batch(commands.Batch(timestamp_ns=0, commands=(envelope,))))

"""ReplicatedNode: one pysyncobj Raft member applying its log into the node's StateMachine.

Read DESIGN.md in this package for the decisions; the short version of what lives here:
- `_RaftCore` is the SyncObj subclass with ONE replicated method carrying encoded batch bytes.
- The journal is our DurableJournal, injected by swapping pysyncobj's module-level `createJournal` for the
  duration of SyncObj.__init__ (under a lock); the transport fsyncs the journal before any message that
  reveals log or vote state to a peer, and a tick callback fsyncs at the end of every tick.
- Writes go through the Batcher (group commit); reads through `read_barrier` (barriers.py: one shared Noop in
  flight). The transport (transport.py, connection.py, wire.py) and membership (membership.py) live apart.
- A maintenance thread proves readiness (a barrier when nothing else committed recently), registers this
  node in the replicated members table and proposes the bootstrap limits once.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pysyncobj.syncobj as _syncobj_module
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated

from vaultd.config import NodeConfig
from vaultd.observability import metrics
from vaultd.observability.logs import log_leader_change
from vaultd.replication import errors, peer_tls, wire
from vaultd.replication.barriers import BarrierGroup
from vaultd.replication.batcher import Batcher
from vaultd.replication.journal import DurableJournal
from vaultd.replication.membership import Membership
from vaultd.replication.snapshot import Snapshotter
from vaultd.replication.status import NodeStatusInfo
from vaultd.replication.transport import transport_class
from vaultd.store import commands
from vaultd.store.errors import StorageFailure

log = logging.getLogger("vaultd.raft")

EXIT_STORAGE_FAILURE = 70
_ROLES = {0: "follower", 1: "candidate", 2: "leader"}
_JOURNAL_INJECTION_LOCK = threading.Lock()


def exit_process(reason: str) -> None:
    """Stop the process after a storage failure: flush logs, then os._exit (no cleanup that could wedge)."""
    log.critical("stopping node: %s", reason)
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:
            pass
    sys.stderr.flush()
    os._exit(EXIT_STORAGE_FAILURE)


class _RaftCore(SyncObj):
    """The pysyncobj object. Its only replicated method takes the encoded Batch bytes."""

    def __init__(self, self_addr: str, peers: Sequence[str], conf: SyncObjConf, journal: DurableJournal,
                 apply: Callable[[int, bytes], list[Any]], transport: Any) -> None:
        self._vaultd_apply = apply
        with _JOURNAL_INJECTION_LOCK:
            original = _syncobj_module.createJournal
            _syncobj_module.createJournal = lambda _path: journal
            try:
                super().__init__(self_addr, list(peers), conf, transportClass=transport)
            finally:
                _syncobj_module.createJournal = original

    @replicated
    def apply_batch(self, payload: bytes) -> list[Any]:
        return self._vaultd_apply(self.raftLastApplied + 1, payload)


class ReplicatedNode(Membership):
    """A Raft member. Thread-safe public methods; see the module docstring and DESIGN.md."""

    def __init__(self, cfg: NodeConfig, machine: Any,
                 fatal: Callable[[str], None] = exit_process) -> None:
        secret = cfg.read_secret()
        if not secret:
            raise ValueError("a cluster secret is required (pysyncobj would otherwise unpickle anything)")
        self.cfg = cfg
        self.machine = machine
        self.node_id = cfg.node_id
        self._secret = secret
        self._peer_tls = peer_tls.load(cfg)
        self._fatal = fatal
        os.makedirs(cfg.raft_dir, exist_ok=True)
        fsync = not cfg.unsafe_no_fsync
        self._journal = DurableJournal(os.path.join(cfg.raft_dir, "journal"), fsync=fsync, on_failure=fatal)
        if self._journal.truncated_tail_bytes:
            log.warning("journal had a torn tail of %d bytes (never acknowledged); cut off",
                        self._journal.truncated_tail_bytes)
        self._snapshots = Snapshotter(machine, os.path.join(cfg.raft_dir, "snapshot"), fsync=fsync, fatal=fatal,
                                      journal=self._journal)
        self._raft: _RaftCore | None = None
        self._batcher = Batcher(self._propose, batch_max_bytes=cfg.batch_max_bytes,
                                entry_max_bytes=cfg.entry_max_bytes, max_inflight=cfg.max_inflight_entries,
                                max_pending=cfg.max_pending_commands,
                                linger_seconds=cfg.batch_linger_ms / 1000.0, on_success=self._proved)
        self._barriers = BarrierGroup(self._batcher)
        self._last_proof = float("-inf")     # monotonic time of the last commit+apply seen from this node
        self._last_leader: str | None = None
        self._stopping = threading.Event()
        self._maintenance: threading.Thread | None = None
        self._limits_proposed = False
        self._hash_cache: tuple[int, str] = (-1, "")
        self._membership_lock = threading.Lock()
        self._removed = False                # set once this node removed itself (it cannot see that commit)

    # --- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> None:
        cfg = self.cfg
        conf = SyncObjConf(
            password=self._secret,
            journalFile=os.path.join(cfg.raft_dir, "journal"),
            fullDumpFile=self._snapshots.dump_path,
            serializer=self._snapshots.serialize,
            deserializer=self._snapshots.deserialize,
            serializeChecker=self._snapshots.check,
            useFork=False,
            dynamicMembershipChange=True,
            commandsWaitLeader=False,
            appendEntriesUseBatch=cfg.append_entries_use_batch,
            appendEntriesPeriod=cfg.append_entries_period,
            # Above the largest entry: pysyncobj splits a bigger single entry into a 'transmission' whose
            # 'finish' marker is computed from the unpickled length, so some sizes just under a multiple of
            # the batch size are cut short and fail with 'pickle data was truncated' on every follower.
            appendEntriesBatchSizeBytes=2 * cfg.entry_max_bytes,
            autoTickPeriod=cfg.auto_tick_period,
            raftMinTimeout=cfg.raft_min_timeout,
            raftMaxTimeout=cfg.raft_max_timeout,
            leaderFallbackTimeout=cfg.leader_fallback_timeout,
            logCompactionMinEntries=cfg.log_compaction_min_entries,
            logCompactionMinTime=cfg.log_compaction_min_time,
            connectionRetryTime=0.5,
            connectionTimeout=3.0,
            maxBindRetries=10,
            bindRetryTime=0.5,
            onStateChanged=None,
        )
        transport = transport_class(frame_max=wire.frame_max_bytes(cfg.entry_max_bytes), tls=self._peer_tls,
                                    journal=self._journal)
        self._raft = _RaftCore(cfg.raft_addr, cfg.peer_addrs, conf, self._journal, self._apply, transport)
        try:
            self._raft.waitBinded()
        except Exception as exc:
            self._raft.destroy()
            raise RuntimeError(f"cannot bind the Raft port {cfg.raft_addr}") from exc
        self._raft.addOnTickCallback(self._on_tick)
        self._batcher.start()
        self._maintenance = threading.Thread(target=self._maintain, daemon=True, name="vaultd-raft-maint")
        self._maintenance.start()
        log.info("raft started", extra={"fields": {"raft_addr": cfg.raft_addr, "peers": cfg.peer_addrs,
                                                   "fsync": not cfg.unsafe_no_fsync}})

    def stop(self) -> None:
        """Fail what is pending, stop Raft (after a final journal sync) and the helper threads."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._batcher.stop(errors.Unavailable("node is stopping", "NOT_READY"))
        if self._maintenance is not None:
            self._maintenance.join(timeout=5)
        if self._raft is not None:
            self._raft.destroy_synchronous()   # the tick thread closes the journal (sync + meta) on exit

    # --- tick thread ------------------------------------------------------------------------------------------
    def _apply(self, index: int, payload: bytes) -> list[Any]:
        start = time.perf_counter()
        try:
            term = self._entry_term(index)
            results = self.machine.apply_entry(index, term, payload)
        except StorageFailure as exc:
            self._fatal(f"storage failure applying index {index}: {type(exc).__name__}")
            raise
        except BaseException as exc:  # the machine must never raise: treat as a broken node, never skip
            self._fatal(f"unexpected {type(exc).__name__} applying index {index}")
            raise
        elapsed = time.perf_counter() - start
        metrics.raft_apply_seconds.observe(elapsed)
        metrics.store_apply_seconds.observe(elapsed)
        return results

    def _entry_term(self, index: int) -> int:
        first = self._journal[0][1]
        return int(self._journal[index - first][2])

    def _on_tick(self) -> None:
        try:
            self._journal.sync()
            raft = self._raft
            if raft is None:
                return
            leader = raft._getLeader()
            leader_addr = None if leader is None else leader.address
            if leader_addr != self._last_leader:
                if leader_addr is not None:
                    metrics.raft_leader_changes_seen_total.inc()
                log_leader_change(self._id_of(self._last_leader) if self._last_leader else None,
                                  self._id_of(leader_addr) if leader_addr else None, raft.raftCurrentTerm)
                self._last_leader = leader_addr
            if self._journal.size_bytes > self.cfg.journal_max_bytes and not self._snapshots.busy:
                raft.forceLogCompaction()
            if not raft.otherNodes and raft._isLeader() and raft.raftCommitIndex < self._journal[-1][1]:
                # A single-node cluster commits on the next tick, and nothing would wake the poll before
                # autoTickPeriod: wake it now (pysyncobj's own pipe notifier; absent with batching on).
                notifier = getattr(raft, "_SyncObj__pipeNotifier", None)
                if notifier is not None:
                    notifier.notify()
        except Exception:
            log.exception("tick callback failed")

    def _propose(self, payload: bytes, callback: Callable[[Any, int], None]) -> None:
        raft = self._raft
        if raft is None or self._stopping.is_set():
            callback(None, FAIL_REASON.MISSING_LEADER)
            return
        raft.apply_batch(payload, callback=callback)

    def _proved(self) -> None:
        self._last_proof = time.monotonic()

    # --- public API -------------------------------------------------------------------------------------------
    def submit(self, envelopes: Sequence[commands.Envelope], timeout: float) -> list[Any]:
        """Group-commit `envelopes`; their results once committed and applied on this node."""
        self._check_can_propose()
        start = time.perf_counter()
        results = self._batcher.wait(self._batcher.enqueue(envelopes, timeout))
        metrics.store_commit_seconds.observe(time.perf_counter() - start)
        return results

    def read_barrier(self, timeout: float) -> None:
        """Return once a Noop proposed after this call is committed and applied here."""
        start = time.perf_counter()
        outcome = "ok"
        try:
            self._check_can_propose()
            self._barriers.wait(timeout)
        except errors.Timeout:
            outcome = "timeout"
            raise
        except errors.ReplicationError:
            outcome = "unavailable"
            raise
        finally:
            metrics.raft_read_barriers_total.labels(outcome).inc()
            metrics.raft_read_barrier_seconds.observe(time.perf_counter() - start)

    def _check_can_propose(self) -> _RaftCore:
        """Fail fast (Unavailable: not applied, the client fails over) when a proposal cannot succeed here."""
        raft = self._raft
        if raft is None or self._stopping.is_set():
            raise errors.Unavailable("node is not running", "NOT_READY")
        if self._removed:
            raise errors.Unavailable("this node was removed from the cluster", "NOT_READY")
        leader = raft._getLeader()
        if leader is None:
            raise errors.Unavailable("no leader known", "NO_LEADER")
        if leader.address != self.cfg.raft_addr and not raft.isNodeConnected(leader):
            # pysyncobj drops commands forwarded over a broken link silently; do not even try.
            raise errors.Unavailable("leader unreachable from this node", "NO_LEADER")
        return raft

    def is_ready(self) -> bool:
        """Has a leader and applied a commit of its own recently (so it was caught up then)."""
        raft = self._raft
        if raft is None or self._stopping.is_set() or self._removed or raft._getLeader() is None:
            return False
        return time.monotonic() - self._last_proof <= self.cfg.ready_window_seconds

    def state_hash(self) -> str:
        return self.hashed_state()[1]

    def hashed_state(self) -> tuple[int, str]:
        """(applied index, state hash at exactly that index); cached until the applied index moves."""
        cached = self._hash_cache
        if cached[0] != int(self.machine.applied_index):
            cached = self.machine.hashed_state()
            self._hash_cache = cached
        return cached

    def status(self) -> NodeStatusInfo:
        st = self._raft_status()
        leader = st.get("leader")
        leader_addr = leader.address if leader is not None else ""
        members = self._members_status(st)
        return NodeStatusInfo(
            node_id=self.node_id, raft_addr=self.cfg.raft_addr, grpc_addr=self.cfg.grpc_addr,
            role=_ROLES.get(int(st.get("state", 0)), "follower"),
            leader_id=self._id_of(leader_addr) if leader_addr else "", leader_raft_addr=leader_addr,
            term=int(st.get("raft_term", 0)), commit_index=int(st.get("commit_idx", 0)),
            applied_index=int(self.machine.applied_index), snapshot_index=int(self._snapshots.last_index),
            log_length=int(st.get("log_len", 0)), journal_bytes=self._journal.size_bytes,
            ready=self.is_ready(), hash_source=self.hashed_state,
            pending_commands=self._batcher.pending_commands, members=members)

    def _raft_status(self) -> dict[str, Any]:
        """pysyncobj's getStatus() from a non-tick thread: its dicts may change mid-iteration, so retry."""
        raft = self._raft
        for _ in range(5):
            try:
                return raft.getStatus() if raft is not None else {}
            except RuntimeError:
                time.sleep(0.001)
        return {}

    # --- maintenance thread ------------------------------------------------------------------------------
    def _maintain(self) -> None:
        """Readiness proofs, self-registration in the members table, bootstrap limits. Never raises."""
        while not self._stopping.wait(0.25):
            try:
                self._maintain_once()
            except errors.ReplicationError:
                pass
            except Exception:
                log.exception("raft maintenance step failed")

    def _maintain_once(self) -> None:
        raft = self._raft
        if raft is None or raft._getLeader() is None:
            return
        if time.monotonic() - self._last_proof > min(1.0, self.cfg.ready_window_seconds / 2):
            self.read_barrier(min(2.0, self.cfg.ready_window_seconds))
        if not self.is_ready():
            return
        mine = self._member_table().get(self.cfg.raft_addr)
        if mine is None or mine.node_id != self.node_id or mine.grpc_addr != self.cfg.grpc_addr:
            self.submit([commands.Envelope("", commands.SetMember(self.node_id, self.cfg.raft_addr,
                                                                  self.cfg.grpc_addr))], 5.0)
        if raft._isLeader():
            # Drop table rows of members no longer in the Raft configuration (e.g. a node that removed
            # itself cannot commit its own RemoveMember).
            config = {n.address for n in raft.otherNodes} | {self.cfg.raft_addr}
            for addr, record in self._member_table().items():
                if addr not in config:
                    self.submit([commands.Envelope("", commands.RemoveMember(record.node_id))], 5.0)
        bootstrap = self.machine.bootstrap_envelope()
        if bootstrap is not None and not self._limits_proposed and raft._isLeader():
            result = self.submit([bootstrap], 5.0)[0]
            self._limits_proposed = True
            if not result.ok:
                log.warning("bootstrap limits refused: %s", result.error.reason)

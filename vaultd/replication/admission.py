"""Who gets one of the Raft port's pending-handshake slots, and how often a source may start a handshake.

Why: pysyncobj only dials from the higher address to the lower one, so a node that refuses new connections
cuts off every member that must dial it (a restarted follower, a dropped link) for as long as that lasts. An
anonymous client must therefore never be able to make the port refuse a member, and must not be able to
make the tick thread spend its time on handshakes (a TLS 1.3 server handshake is a key agreement plus a
signature) either. The rules, in order, at accept:

1. a source IP that is not a member's (resolved from the configuration) is rate-limited: a token bucket per
   source IP and one shared by all non-member sources (a spread-out flood); no token, no connection
   (`rate_limited`), before any handshake work;
2. a non-member source IP holds at most `wire.MAX_PENDING_PER_SOURCE` pending slots (`too_many_pending`);
3. when all `wire.MAX_PENDING_HANDSHAKES` slots are taken, the new connection evicts the oldest pending one
   that ranks no higher than it does (`evicted`) instead of being refused. Rank = (from a member IP, made
   progress): progress means a completed TLS handshake with a certificate from the peer CA, or a first frame
   that decrypted with the cluster secret; a new connection has made none. So non-member sources never
   displace member-IP connections (on a real network these are the reserved slots), and idle or junk
   connections never displace a connection that already proved something. Among equals, connections that
   sent nothing yet go first, then the oldest. Only when every slot ranks higher is the new connection
   refused (`too_many_pending`).

On one host (every node and every attacker on 127.0.0.1) rules 1-2 cannot tell a peer from an attacker; rule 3
still lets a peer in, because a peer sends its first frame (or ClientHello) at once and accepts are batched
(`wire.ACCEPT_BATCH` per poll round, a quarter of the slots): a new connection survives several poll rounds
of a flood, long enough to be read and to outrank the flood. Accepted connections that send no byte within
`wire.FIRST_BYTE_TIMEOUT_SECONDS` are closed by the transport, so idle connections do not even hold slots.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from vaultd.replication import wire


class TokenBucket:
    """`rate` tokens a second up to `burst`; `take()` spends one if there is one."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


class Admission:
    """The accept-time decision; `member_ips` returns the resolved IPs of the current members (this node too).

    Runs on the tick thread only (no locking)."""

    def __init__(self, member_ips: Callable[[], set[str]], clock: Callable[[], float] = time.monotonic) -> None:
        self._member_ips = member_ips
        self._clock = clock
        self._members: set[str] = set()
        self._members_at = float("-inf")
        self._buckets: dict[str, TokenBucket] = {}
        self._shared = TokenBucket(wire.NON_MEMBER_HANDSHAKE_RATE, wire.NON_MEMBER_HANDSHAKE_BURST, clock())

    def is_member_ip(self, ip: str) -> bool:
        now = self._clock()
        if now - self._members_at > wire.MEMBER_IPS_REFRESH_SECONDS:   # membership changes; DNS is cached
            self._members, self._members_at = self._member_ips(), now
        return ip in self._members

    def decide(self, ip: str, pending: Iterable[Any]) -> tuple[str | None, Any]:
        """(refusal reason or None, pending connection to evict or None) for a new connection from `ip`.

        `pending` are the accepted, not yet trusted connections (each with `source_ip`, `member_source`,
        `progressed`, `got_data` and `started_at`)."""
        member = self.is_member_ip(ip)
        if not member and not self._take(ip):
            return "rate_limited", None
        pending = list(pending)
        if not member and sum(1 for c in pending if c.source_ip == ip) >= wire.MAX_PENDING_PER_SOURCE:
            return "too_many_pending", None
        if len(pending) < wire.MAX_PENDING_HANDSHAKES:
            return None, None
        candidates = [c for c in pending if not c.progressed and (member or not c.member_source)]
        if not candidates:
            return "too_many_pending", None
        # Idle ones first: a peer's connection is mid-handshake (it sends at connect) when the flood arrives.
        return None, min(candidates, key=lambda c: (c.member_source, c.got_data, c.started_at))

    def _take(self, ip: str) -> bool:
        now = self._clock()
        bucket = self._buckets.get(ip)
        if bucket is None:
            if len(self._buckets) >= wire.RATE_LIMITED_SOURCES_MAX:
                # Forget sources whose bucket refilled (they are back to a fresh state anyway); a flood from
                # more sources than that is held by the shared bucket.
                self._buckets = {k: b for k, b in self._buckets.items() if not b.full(now)}
            bucket = TokenBucket(wire.HANDSHAKE_RATE_PER_SOURCE, wire.HANDSHAKE_BURST_PER_SOURCE, now)
            if len(self._buckets) < wire.RATE_LIMITED_SOURCES_MAX:
                self._buckets[ip] = bucket
        return bucket.take(now) and self._shared.take(now)

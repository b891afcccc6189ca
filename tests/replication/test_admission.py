"""The Raft port's admission rules (admission.py), on a controlled clock: who gets a pending slot, who is evicted."""

from __future__ import annotations

from dataclasses import dataclass

from vaultd.replication import wire
from vaultd.replication.admission import Admission, TokenBucket

MEMBER, STRANGER = "10.0.0.1", "192.0.2.7"


@dataclass
class Pending:
    """The attributes admission reads from a pending PeerConnection."""
    source_ip: str
    member_source: bool
    started_at: float
    progressed: bool = False
    got_data: bool = False


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _admission(clock: Clock) -> Admission:
    return Admission(lambda: {MEMBER}, clock=clock)


def _full(ip: str, member: bool, progressed: bool = False) -> list[Pending]:
    return [Pending(ip, member, float(i), progressed) for i in range(wire.MAX_PENDING_HANDSHAKES)]


def test_with_free_slots_everyone_is_admitted() -> None:
    admission = _admission(Clock())
    assert admission.decide(MEMBER, []) == (None, None)
    assert admission.decide(STRANGER, []) == (None, None)


def test_a_full_port_evicts_the_oldest_idle_connection_instead_of_refusing() -> None:
    admission = _admission(Clock())
    pending = _full(MEMBER, True)
    refusal, victim = admission.decide(MEMBER, pending)
    assert refusal is None and victim is pending[0]


def test_silent_connections_are_evicted_before_ones_mid_handshake() -> None:
    admission = _admission(Clock())
    pending = _full(MEMBER, True)
    for p in pending[:-1]:
        p.got_data = True
    assert admission.decide(MEMBER, pending) == (None, pending[-1])


def test_connections_that_proved_something_outrank_idle_ones() -> None:
    admission = _admission(Clock())
    pending = _full(MEMBER, True)
    for p in pending[:10]:
        p.progressed = True
    assert admission.decide(MEMBER, pending) == (None, pending[10])
    # Every slot holds a connection that got past TLS or the first frame: the newcomer is refused.
    assert admission.decide(MEMBER, _full(MEMBER, True, progressed=True)) == ("too_many_pending", None)


def test_strangers_never_displace_member_ip_connections_but_members_displace_strangers() -> None:
    admission = _admission(Clock())
    members = _full(MEMBER, True)
    assert admission.decide(STRANGER, members) == ("too_many_pending", None)
    mixed = [Pending(f"198.51.100.{i}", False, float(i)) for i in range(wire.MAX_PENDING_HANDSHAKES - 1)]
    old_member = Pending(MEMBER, True, -1.0)
    mixed.append(old_member)
    refusal, victim = admission.decide(MEMBER, mixed)
    assert refusal is None and victim is mixed[0], "the oldest stranger goes before an older member-IP one"


def test_one_stranger_holds_a_few_slots_at_most_and_members_have_no_such_cap() -> None:
    admission = _admission(Clock())
    own = [Pending(STRANGER, False, float(i)) for i in range(wire.MAX_PENDING_PER_SOURCE)]
    assert admission.decide(STRANGER, own) == ("too_many_pending", None)
    assert admission.decide("192.0.2.8", own) == (None, None)
    assert admission.decide(MEMBER, [Pending(MEMBER, True, float(i)) for i in range(20)]) == (None, None)


def test_strangers_are_rate_limited_per_source_and_together_members_are_not() -> None:
    clock = Clock()
    admission = _admission(clock)
    burst = int(wire.HANDSHAKE_BURST_PER_SOURCE)
    assert [admission.decide(STRANGER, [])[0] for _ in range(burst)] == [None] * burst
    assert admission.decide(STRANGER, [])[0] == "rate_limited"
    assert all(admission.decide(MEMBER, [])[0] is None for _ in range(1000))
    clock.now += 1.0
    allowed = sum(admission.decide(STRANGER, [])[0] is None for _ in range(100))
    assert allowed == int(wire.HANDSHAKE_RATE_PER_SOURCE)

    # Many sources: the shared bucket caps them together.
    clock.now += 100.0
    admission = _admission(clock)
    allowed = sum(admission.decide(f"203.0.113.{i % 250}", [])[0] is None for i in range(1000))
    assert allowed == int(wire.NON_MEMBER_HANDSHAKE_BURST)


def test_the_member_set_follows_the_configuration() -> None:
    clock = Clock()
    members = {MEMBER}
    admission = Admission(lambda: set(members), clock=clock)
    assert not admission.is_member_ip(STRANGER)
    members.add(STRANGER)
    clock.now += wire.MEMBER_IPS_REFRESH_SECONDS + 0.1
    assert admission.is_member_ip(STRANGER)


def test_a_token_bucket_refills_at_its_rate_up_to_its_size() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5) and not bucket.take(0.5)
    assert not bucket.full(1.0) and bucket.full(2.0)

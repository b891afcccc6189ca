"""NodeCollector over a real StateMachine (SQLite file): store totals, file sizes, the bounded and cached
fullest-vaults series, and a failing section that does not break the scrape."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from tests.observability.promtool import promtool, requires_promtool
from vaultd.observability.collectors import FullestVaults, NodeCollector, store_fullest_vaults
from vaultd.store import StateMachine
from vaultd.store.commands import Batch, Envelope, Put, SetLimits


class _Log:
    """Applies commands at consecutive indexes, as the replication layer does."""

    def __init__(self, machine: StateMachine) -> None:
        self.machine = machine
        self.index = machine.applied_index

    def apply(self, *commands: object) -> None:
        self.index += 1
        results = self.machine.apply(self.index, 1, Batch(1_700_000_000_000_000_000 + self.index,
                                                           tuple(Envelope("", c) for c in commands)))
        assert all(r.ok for r in results), results


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[StateMachine]:
    m = StateMachine(str(tmp_path / "state.db"))
    yield m
    m.close()


def _registry(collector: NodeCollector) -> CollectorRegistry:
    registry = CollectorRegistry()
    collector.register(registry)
    return registry


@requires_promtool
def test_store_gauges_and_fullest_vaults(machine: StateMachine, tmp_path: Path) -> None:
    log = _Log(machine)
    log.apply(SetLimits(max_keys_per_vault=20))
    sizes = {"big": 19, "mid": 10, "small": 2, "tiny": 1}
    for vault, n in sizes.items():
        log.apply(*(Put(vault, f"k{i}", b"12345") for i in range(n)))
    collector = NodeCollector(None, machine, str(tmp_path / "state.db"), node_id="n1", top_n=3)
    registry = _registry(collector)

    assert registry.get_sample_value("vaultd_vaults") == 4
    assert registry.get_sample_value("vaultd_keys") == 32
    assert registry.get_sample_value("vaultd_stored_bytes") == 32 * 5
    assert registry.get_sample_value("vaultd_db_size_bytes") > 0
    assert registry.get_sample_value("vaultd_wal_size_bytes") > 0
    ratios = {v: registry.get_sample_value("vaultd_vault_key_limit_ratio", {"vault": v}) for v in sizes}
    assert ratios == {"big": 19 / 20, "mid": 0.5, "small": 0.1, "tiny": None}  # top 3 only
    assert registry.get_sample_value("vaultd_raft_is_leader") is None  # no node: no Raft series
    text = generate_latest(registry)
    result = promtool("check", "metrics", stdin=text)
    assert result.returncode == 0, result.stdout + result.stderr


def test_fullest_vaults_refresh_at_most_every_interval(machine: StateMachine) -> None:
    log = _Log(machine)
    log.apply(Put("a", "k", b"x"))
    now = [100.0]
    queries = []

    def query(n: int) -> list[tuple[str, float]]:
        queries.append(n)
        return list(store_fullest_vaults(machine)(n))

    cache = FullestVaults(query, top_n=10, refresh_seconds=5.0, clock=lambda: now[0])
    first = cache.get()
    log.apply(Put("b", "k1", b"x"), Put("b", "k2", b"x"))
    now[0] += 4.9
    assert cache.get() == first and len(queries) == 1  # cached: no query within the interval
    now[0] += 0.2
    assert [v for v, _ in cache.get()] == ["b", "a"] and len(queries) == 2


def test_failing_section_is_counted_and_the_rest_still_scraped(tmp_path: Path) -> None:
    machine = StateMachine(str(tmp_path / "state.db"))
    _Log(machine).apply(Put("a", "k", b"x"))
    collector = NodeCollector(None, machine, str(tmp_path / "state.db"))
    registry = _registry(collector)
    machine.close()  # the top-N query now fails; the in-memory totals still answer
    before = REGISTRY.get_sample_value("vaultd_collector_errors_total", {"section": "fullest"}) or 0
    text = generate_latest(registry).decode()  # a whole scrape
    assert "vaultd_keys 1.0" in text and "vaultd_db_size_bytes" in text
    assert REGISTRY.get_sample_value("vaultd_collector_errors_total", {"section": "fullest"}) == before + 1
    collector.unregister()
    assert registry.get_sample_value("vaultd_keys") is None

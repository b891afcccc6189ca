"""The statistics bench_observability reports its verdict with, and its switch for the core metrics (no server
is started)."""

from __future__ import annotations

import pytest

from benchmarks.bench_observability import CORE_METRICS, _compare, _core_metrics_off, _mean_ci, _paired_costs
from vaultd.observability import metrics


def _runs(off: list[float], on: list[float]) -> dict[str, list[dict[str, float]]]:
    return {"off": [{"ops_per_s": v, "server_cpu_us_per_op": 1e6 / v} for v in off],
            "on": [{"ops_per_s": v, "server_cpu_us_per_op": 1e6 / v} for v in on]}


def test_paired_costs_compare_each_round_with_its_own_partner() -> None:
    runs = _runs([1000, 800], [950, 800])
    assert _paired_costs(runs, "ops_per_s", higher_is_better=True) == pytest.approx([5.0, 0.0])
    assert _paired_costs(runs, "server_cpu_us_per_op", higher_is_better=False) == pytest.approx(
        [100 * (1000 / 950 - 1), 0.0])


def test_mean_ci_brackets_the_mean_and_is_reproducible() -> None:
    values = [4.0, 6.0, 5.0, 3.0, 7.0, 5.0]
    mean, lo, hi = _mean_ci(values)
    assert mean == pytest.approx(5.0)
    assert 3.0 <= lo < mean < hi <= 7.0
    assert _mean_ci(values) == (mean, lo, hi)
    assert _mean_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)


def test_a_drift_cancels_over_alternating_rounds() -> None:
    """Throughput falling 2% per run with no real cost: off/on, on/off, ... pairs average to about zero."""
    runs: dict[str, list[float]] = {"off": [], "on": []}
    level = 1000.0
    for r in range(8):
        for arm in (("off", "on") if r % 2 == 0 else ("on", "off")):
            runs[arm].append(level)
            level *= 0.98
    row = _compare("put", 16, _runs(runs["off"], runs["on"]))
    assert abs(row["throughput_cost_percent"]) < 0.2
    assert row["rounds"] == 8


def test_the_off_arm_silences_every_core_metric_and_puts_them_back() -> None:
    """CORE_METRICS names real objects of vaultd.observability.metrics (a rename would otherwise surface only
    when the benchmark runs), each one stops counting inside the context and is the original again after."""
    originals = {name: getattr(metrics, name) for name in CORE_METRICS}
    get_count = metrics.registry.get_sample_value("vaultd_store_get_seconds_count")
    with _core_metrics_off():
        assert all(getattr(metrics, name) is not originals[name] for name in CORE_METRICS)
        metrics.store_get_seconds.observe(0.001)
        metrics.raft_read_barriers_total.labels("ok").inc()
    assert {name: getattr(metrics, name) for name in CORE_METRICS} == originals
    assert metrics.registry.get_sample_value("vaultd_store_get_seconds_count") == get_count

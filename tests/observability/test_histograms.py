"""vaultd's lean Histogram exports the same lines as prometheus_client's for the same observations, and loses
no observation under concurrent updates."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest
from prometheus_client import Histogram as ReferenceHistogram

from tests.threads import run_concurrently
from vaultd.observability.histograms import Histogram

pytestmark = pytest.mark.timeout(60)
# vaultd exports no `_created` series (vaultd.observability.metrics turns them off process-wide); the
# prometheus_client references must not either.
disable_created_metrics()


@pytest.mark.parametrize("buckets, values", [
    ((0.0005, 0.001, 0.25, 1.0, 10.0), [0.0005, 0.0002, 0.3, 1.0, 20.0, 0.001, 0.0011]),  # on, between, beyond
    ((1, 2, 4, 8), [1, 1, 3, 8, 9, 100]),                                                  # integer bounds
    ((0.1,), []),                                                                          # nothing observed
])
def test_exposition_matches_prometheus_client(buckets: tuple[float, ...], values: list[float]) -> None:
    ours, reference = CollectorRegistry(), CollectorRegistry()
    histogram = Histogram("vaultd_test_seconds", "A test histogram.", buckets, registry=ours)
    expected = ReferenceHistogram("vaultd_test_seconds", "A test histogram.", buckets=buckets, registry=reference)
    for value in values:
        histogram.observe(value)
        expected.observe(value)
    assert sorted(generate_latest(ours).decode().splitlines()) == \
        sorted(generate_latest(reference).decode().splitlines())


def test_registering_a_name_twice_is_refused_like_prometheus_client() -> None:
    registry = CollectorRegistry()
    Histogram("vaultd_twice_seconds", "once", (1.0,), registry=registry)
    with pytest.raises(ValueError):
        Histogram("vaultd_twice_seconds", "twice", (1.0,), registry=registry)


def test_concurrent_observations_are_all_counted() -> None:
    histogram = Histogram("vaultd_concurrent_seconds", "c", (0.5,), registry=CollectorRegistry())
    threads, per_thread = 8, 5000

    def work() -> None:
        for i in range(per_thread):
            histogram.observe(0.25 if i % 2 else 1.0)

    run_concurrently(work, threads)
    counts, total = histogram.snapshot()
    half = threads * per_thread // 2
    assert counts == [half, half] and total == pytest.approx(half * 1.25)


def test_buckets_out_of_order_are_refused_and_a_final_inf_is_implied() -> None:
    with pytest.raises(ValueError):
        Histogram("vaultd_unsorted_seconds", "u", (1.0, 0.5), registry=CollectorRegistry())
    ours, reference = CollectorRegistry(), CollectorRegistry()
    Histogram("vaultd_inf_seconds", "i", (1.0, float("inf")), registry=ours).observe(2.0)
    ReferenceHistogram("vaultd_inf_seconds", "i", buckets=(1.0, float("inf")), registry=reference).observe(2.0)
    assert sorted(generate_latest(ours).decode().splitlines()) == \
        sorted(generate_latest(reference).decode().splitlines())

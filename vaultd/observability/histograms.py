"""Histograms updated on every request: one bisect and one locked update per observation.

Why not prometheus_client's Histogram: its observe() takes two locks and walks the buckets in Python, about
0.6 us, and every request of a busy node pays several of them (the gRPC latency, the store latency, the
commit or read barrier). Inside a GIL-bound node each microsecond on the request path costs several times
its hot-loop price (README "Cost of observability"). Here the buckets are kept per bucket and made
cumulative when scraped, which is rare. The export goes through prometheus_client's custom-collector
interface and has the same lines its Histogram would (tests/observability/test_histograms.py).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString


class Buckets:
    """Observations of one series: count per bucket (the last is +Inf) and their sum, under one lock."""

    __slots__ = ("_bounds", "_lock", "_counts", "_sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._lock = threading.Lock()
        self._counts = [0] * (len(bounds) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        bucket = bisect_left(self._bounds, value)  # the first bound >= value: Prometheus' inclusive `le`
        with self._lock:
            self._counts[bucket] += 1
            self._sum += value

    def snapshot(self) -> tuple[list[int], float]:
        with self._lock:
            return list(self._counts), self._sum


class BucketLayout:
    """Sorted bounds and their `le` label values, shared by every series of one histogram."""

    def __init__(self, buckets: Sequence[float]) -> None:
        bounds = [float(b) for b in buckets]
        if bounds and bounds[-1] == float("inf"):
            bounds.pop()  # +Inf is always the last bucket, as in prometheus_client
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ValueError("histogram buckets must be in increasing order")
        self.bounds = tuple(bounds)
        self._le = [floatToGoString(b) for b in self.bounds] + ["+Inf"]

    def cumulative(self, counts: list[int]) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for le, n in zip(self._le, counts):
            running += n
            out.append((le, running))
        return out


class Histogram(Buckets):
    """An unlabelled histogram, registered like prometheus_client's (at creation, in `registry`)."""

    __slots__ = ("_name", "_documentation", "_layout")

    def __init__(self, name: str, documentation: str, buckets: Sequence[float],
                 registry: CollectorRegistry = REGISTRY) -> None:
        layout = BucketLayout(buckets)
        super().__init__(layout.bounds)
        self._name, self._documentation, self._layout = name, documentation, layout
        registry.register(self)

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self._name, self._documentation, labels=())]

    def collect(self) -> Iterator[Metric]:
        counts, total = self.snapshot()
        yield HistogramMetricFamily(self._name, self._documentation, buckets=self._layout.cumulative(counts),
                                    sum_value=total)

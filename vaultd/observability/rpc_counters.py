"""The `grpc_server_*` series, kept per method as plain numbers under one lock and exported by a collector.

Why not prometheus_client's Counter and Histogram: every RPC updated three of them, and their Python code
was the largest part of what metrics cost a cheap request (histograms.py says more). Here an RPC's start is
one locked increment and its end one bisect plus one locked update of the code count, bucket and sum. The
export has the same lines prometheus_client would write (names, labels, `le` strings).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from vaultd.observability.histograms import BucketLayout, Buckets

_LABELS = ("grpc_type", "grpc_service", "grpc_method")


class MethodCounters(Buckets):
    """Started and handled counts and the latency histogram of one method (one label set), under one lock."""

    __slots__ = ("labels", "_started", "_handled")

    def __init__(self, labels: tuple[str, str, str], bounds: tuple[float, ...]) -> None:
        super().__init__(bounds)
        self.labels = labels
        self._started = 0
        self._handled: dict[str, int] = {}

    def start(self) -> None:
        with self._lock:
            self._started += 1

    def finish(self, code: str, seconds: float) -> None:
        # Buckets.observe's two lines again, under the same lock as the code count: one lock, no extra call
        # (each costs ~0.1 us on the path of every RPC)
        bucket = bisect_left(self._bounds, seconds)
        with self._lock:
            self._handled[code] = self._handled.get(code, 0) + 1
            self._counts[bucket] += 1
            self._sum += seconds

    def counts(self) -> tuple[int, dict[str, int], list[int], float]:
        """(started, handled per code, observations per bucket, sum of seconds), consistent with each other."""
        with self._lock:
            return self._started, dict(self._handled), list(self._counts), self._sum


class RpcCounters:
    """All methods' counters; one per process (in the registry), like prometheus_client's own metrics.

    A method's series appear from its first RPC on: the ~30 methods of a node with 17 histogram series each
    would otherwise triple the size, and the cost, of every scrape.
    """

    def __init__(self, buckets: Sequence[float]) -> None:
        self._layout = BucketLayout(buckets)
        self._lock = threading.Lock()
        self._methods: dict[tuple[str, str, str], MethodCounters] = {}

    def method(self, grpc_type: str, service: str, method: str) -> MethodCounters:
        """The counters of one method, created on first use (once per method, not per RPC)."""
        labels = (grpc_type, service, method)
        with self._lock:
            counters = self._methods.get(labels)
            if counters is None:
                counters = self._methods[labels] = MethodCounters(labels, self._layout.bounds)
            return counters

    def describe(self) -> list[Metric]:
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        started, handled, seconds = self._families()
        with self._lock:
            methods = list(self._methods.values())
        for counters in methods:
            count, codes, buckets, total = counters.counts()
            if not count:  # registered but never called: no series, as with prometheus_client's labels()
                continue
            started.add_metric(counters.labels, count)
            for code, n in sorted(codes.items()):
                handled.add_metric((*counters.labels, code), n)
            seconds.add_metric(counters.labels, self._layout.cumulative(buckets), total)
        yield from (started, handled, seconds)

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, CounterMetricFamily, HistogramMetricFamily]:
        return (
            CounterMetricFamily("grpc_server_started_total", "RPCs started on the server.", labels=_LABELS),
            CounterMetricFamily("grpc_server_handled_total",
                                "RPCs completed on the server, regardless of success or failure.",
                                labels=(*_LABELS, "grpc_code")),
            HistogramMetricFamily("grpc_server_handling_seconds", "Response latency of RPCs handled by the server.",
                                  labels=_LABELS),
        )

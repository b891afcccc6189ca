"""The `grpc_server_*` series, kept per method as plain numbers under one lock and exported by a collector.

Why not prometheus_client's Counter and Histogram: every RPC updates three of them, and their Python code
(two locks per histogram observation and a loop over the buckets) was the largest part of what metrics cost
a cheap request. Here an RPC's start is one locked increment and its end one bisect plus one locked update of
the code count, bucket and sum; the cumulative buckets are summed at scrape time, which is rare. The export
is the same families prometheus_client would write (names, labels, `le` strings), through its documented
custom-collector interface.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

_LABELS = ("grpc_type", "grpc_service", "grpc_method")


class MethodCounters:
    """Started and handled counts and the latency histogram of one method (one label set)."""

    __slots__ = ("labels", "_bounds", "_lock", "_started", "_handled", "_buckets", "_sum")

    def __init__(self, labels: tuple[str, str, str], bounds: tuple[float, ...]) -> None:
        self.labels = labels
        self._bounds = bounds
        self._lock = threading.Lock()
        self._started = 0
        self._handled: dict[str, int] = {}
        self._buckets = [0] * (len(bounds) + 1)  # per bucket, not cumulative; the last one is +Inf
        self._sum = 0.0

    def start(self) -> None:
        with self._lock:
            self._started += 1

    def finish(self, code: str, seconds: float) -> None:
        bucket = bisect_left(self._bounds, seconds)  # the first bound >= seconds: Prometheus' `le`
        with self._lock:
            self._handled[code] = self._handled.get(code, 0) + 1
            self._buckets[bucket] += 1
            self._sum += seconds

    def snapshot(self) -> tuple[int, dict[str, int], list[int], float]:
        with self._lock:
            return self._started, dict(self._handled), list(self._buckets), self._sum


class RpcCounters:
    """All methods' counters; one per process (in the registry), like prometheus_client's own metrics.

    A method's series appear from its first RPC on: the ~30 methods of a node with 17 histogram series each
    would otherwise triple the size, and the cost, of every scrape.
    """

    def __init__(self, buckets: Sequence[float]) -> None:
        self._bounds = tuple(sorted(float(b) for b in buckets))
        self._le = [floatToGoString(b) for b in self._bounds] + ["+Inf"]
        self._lock = threading.Lock()
        self._methods: dict[tuple[str, str, str], MethodCounters] = {}

    def method(self, grpc_type: str, service: str, method: str) -> MethodCounters:
        """The counters of one method, created on first use (once per method, not per RPC)."""
        labels = (grpc_type, service, method)
        with self._lock:
            counters = self._methods.get(labels)
            if counters is None:
                counters = self._methods[labels] = MethodCounters(labels, self._bounds)
            return counters

    def describe(self) -> list[Metric]:
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        started, handled, seconds = self._families()
        with self._lock:
            methods = list(self._methods.values())
        for counters in methods:
            count, codes, buckets, total = counters.snapshot()
            if not count:  # registered but never called: no series, as with prometheus_client's labels()
                continue
            started.add_metric(counters.labels, count)
            for code, n in sorted(codes.items()):
                handled.add_metric((*counters.labels, code), n)
            cumulative, running = [], 0
            for le, n in zip(self._le, buckets):
                running += n
                cumulative.append((le, running))
            seconds.add_metric(counters.labels, cumulative, total)
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

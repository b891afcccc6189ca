"""Shared fixtures: real-process vaultd clusters (see tests/cluster.py for the full API).

- `cluster_factory(size=3, start=True, **Cluster kwargs)` -> a started Cluster; any number per test,
  every one torn down (processes killed) after the test.
- `cluster3`: a started 3-node cluster, ready, for one test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import Cluster


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []

    def make(size: int = 3, start: bool = True, **kwargs: Any) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster{len(made)}", size, **kwargs)
        made.append(cluster)
        if start:
            cluster.start()
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            cluster.close()


@pytest.fixture
def cluster3(cluster_factory: Callable[..., Cluster]) -> Cluster:
    return cluster_factory(3)

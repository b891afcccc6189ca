"""Run a function on several threads at once and insist that all of them finish in time."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_concurrently(work: Callable[[], None], threads: int, timeout: float = 30.0) -> None:
    workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in workers), "a worker thread did not finish in time"

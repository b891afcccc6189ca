"""VaultClient shared by threads: one channel per endpoint, however the first uses race."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from vaultd import client as vc


def test_threads_racing_to_a_new_endpoint_share_one_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    real = grpc.insecure_channel

    def slow_channel(*args: object, **kwargs: object) -> grpc.Channel:
        time.sleep(0.05)   # widen the window between "no channel yet" and "channel stored"
        return real(*args, **kwargs)

    monkeypatch.setattr(grpc, "insecure_channel", slow_channel)
    with vc.VaultClient(["127.0.0.1:1"]) as client:
        start = threading.Barrier(8)
        got: list[grpc.Channel] = []

        def first_use() -> None:
            start.wait(timeout=5)
            got.append(client._channel("127.0.0.1:1"))

        threads = [threading.Thread(target=first_use) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert len(got) == 8 and len({id(c) for c in got}) == 1

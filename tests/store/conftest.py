"""Shared fixtures: a real StateMachine on a temporary SQLite file, and a helper that applies commands."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vaultd.store import StateMachine
from vaultd.store.commands import Batch, Command, Envelope
from vaultd.store.results import Result


class Driver:
    """Applies commands at consecutive log indexes with increasing timestamps, like the replication layer."""

    def __init__(self, machine: StateMachine) -> None:
        self.machine = machine
        self.index = machine.applied_index
        self.ts = 1_700_000_000_000_000_000

    def batch(self, *commands: Command | Envelope, ts: int | None = None) -> list[Result]:
        self.index += 1
        self.ts += 1_000
        envs = tuple(c if isinstance(c, Envelope) else Envelope("", c) for c in commands)
        return self.machine.apply(self.index, 1, Batch(self.ts if ts is None else ts, envs))

    def one(self, command: Command | Envelope) -> Result:
        return self.batch(command)[0]

    def ok(self, command: Command | Envelope) -> object:
        result = self.one(command)
        assert result.ok, result
        return result.value

    def err(self, command: Command | Envelope) -> object:
        result = self.one(command)
        assert not result.ok, result
        return result.error


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[StateMachine]:
    m = StateMachine(str(tmp_path / "state.db"))
    yield m
    m.close()


@pytest.fixture
def drive(machine: StateMachine) -> Driver:
    return Driver(machine)

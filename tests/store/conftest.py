"""Shared fixtures: a real StateMachine on a temporary SQLite file, and a helper that applies commands."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from vaultd.store import StateMachine
from vaultd.store import commands as c
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


def workload(seed: int, n_batches: int = 60) -> list[bytes]:
    """Encoded log entries mixing every command kind, successes and rejections."""
    rng = random.Random(seed)
    vaults = ["app", "app2", "app.x", "cfg"]
    keys = ["a", "b", "a%", "a_", "😀", "k:1", "z"]
    entries = [c.encode_batch(Batch(10, (Envelope("", c.SetLimits(max_vaults=3, max_keys_per_vault=5)),
                                         Envelope("", c.SetMember("n1", "h:1", "h:2")))))]
    for i in range(n_batches):
        cmds = []
        for j in range(rng.randint(1, 6)):
            v, k = rng.choice(vaults), rng.choice(keys)
            cmd = rng.choice([
                c.Put(v, k, rng.randbytes(rng.randint(0, 20)), rng.choice([None, 0, 1, 2])),
                c.Delete(v, k, rng.choice([None, 0, 1])),
                c.Txn(v, (c.TxnPut(k, b"t", None), c.TxnDelete(rng.choice(keys), rng.choice([None, 1])))),
                c.CopyVault(v, rng.choice(vaults)), c.DeleteVault(v), c.CreateVault(v, "d"),
                c.UpdateVault(v, owner=str(i)), c.Noop(),
                c.Import(v, rng.choice(list(c.ImportMode)), (c.ImportEntry(k, b"i"),)),
                c.PutPolicy(rng.choice(["p1", "p2"]), (c.PolicyRule(v[:2] + "*", ("read", "write")),)),
                c.DeletePolicy(rng.choice(["p1", "p2"])),
                c.CreateToken(f"{rng.randint(0, 3):016x}", "t", (rng.choice(["p1", "p2"]),), "ab" * 32,
                              rng.choice([0, 1])),
                c.RevokeToken(f"{rng.randint(0, 3):016x}"),
            ])
            cmds.append(Envelope(f"r{rng.randint(0, 40)}" if rng.random() < 0.5 else "", cmd))
        entries.append(c.encode_batch(Batch(1000 + i * rng.choice([1, -1]) * 7, tuple(cmds))))
    return entries

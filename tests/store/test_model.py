"""Hypothesis stateful test: random command sequences against the store and a plain-Python model.

Every command's outcome (result or error reason) and, after every step, the full contents (vault list, key
counts, sizes, every key's value/version/revision through paginated scans, prefix counts) must agree.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from vaultd.store import StateMachine
from vaultd.store import commands as c
from vaultd.store.results import (CopyVaultResult, DeleteResult, DeleteVaultResult, ImportResult, Limits, PutResult,
                                  TxnOpResult, TxnResult)

from .conftest import Driver

VAULTS = st.sampled_from(["app", "app2", "app.x"])
KEYS = st.sampled_from(["a", "a%", "a_", "ab", "b", "😀", "a\U0010ffff"])
VALUES = st.binary(max_size=10)
VERSIONS = st.one_of(st.none(), st.integers(0, 3))
PREFIXES = st.sampled_from(["", "a", "a%", "a_", "😀", "z"])


class Rejected(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


@dataclass
class Model:
    limits: Limits = field(default_factory=Limits)
    vaults: dict[str, dict[str, tuple[bytes, int, int]]] = field(default_factory=dict)

    def copy(self) -> Model:
        return Model(self.limits, {v: dict(keys) for v, keys in self.vaults.items()})

    def new_vault(self, name: str) -> None:
        if len(self.vaults) >= self.limits.max_vaults:
            raise Rejected("TOO_MANY_VAULTS")
        self.vaults[name] = {}

    def check_value(self, value: bytes) -> None:
        if len(value) > self.limits.max_value_size:
            raise Rejected("VALUE_TOO_LARGE")

    def put(self, index: int, vault: str, key: str, value: bytes, expected: int | None) -> int:
        current = self.vaults.get(vault, {}).get(key)
        version = current[1] if current else 0
        if expected is not None and expected != version:
            raise Rejected("VERSION_MISMATCH")
        if vault not in self.vaults:
            self.new_vault(vault)
        keys = self.vaults[vault]
        if not current and len(keys) >= self.limits.max_keys_per_vault:
            raise Rejected("VAULT_FULL")
        keys[key] = (value, version + 1, index)
        return version + 1

    def delete(self, vault: str, key: str, expected: int | None) -> bool:
        if vault not in self.vaults:
            raise Rejected("VAULT_NOT_FOUND")
        current = self.vaults[vault].get(key)
        version = current[1] if current else 0
        if expected is not None and expected != version:
            raise Rejected("VERSION_MISMATCH")
        return self.vaults[vault].pop(key, None) is not None


class StoreVersusModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="vaultd-model-")
        self.drive = Driver(StateMachine(f"{self.dir}/db"))
        self.model = Model()

    def teardown(self) -> None:
        self.drive.machine.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _check(self, command: c.Command, step) -> None:  # noqa: ANN001 - a callable taking the working model
        """Run `command` on the store and `step(model)` on a working copy of the model; compare outcomes."""
        working = self.model.copy()
        try:
            expected = ("ok", step(working, self.drive.index + 1))
        except Rejected as rejected:
            expected = ("err", rejected.reason)
        result = self.drive.one(command)
        actual = ("ok", result.value) if result.ok else ("err", result.error.reason)
        if expected[0] == "ok" and actual[0] == "ok" and expected[1] is ...:
            actual = expected
        assert actual == expected, (command, actual, expected)
        if result.ok:
            self.model = working

    @initialize(max_vaults=st.integers(1, 3), max_keys=st.integers(1, 5), max_value=st.integers(1, 8))
    def set_initial_limits(self, max_vaults: int, max_keys: int, max_value: int) -> None:
        self.model.limits = Limits(max_vaults, max_keys, max_value, 3)
        assert self.drive.ok(c.SetLimits(max_vaults, max_keys, max_value, 3)) == self.model.limits

    @rule(vault=VAULTS)
    def create_vault(self, vault: str) -> None:
        def step(m: Model, index: int) -> object:
            if vault in m.vaults:
                raise Rejected("VAULT_EXISTS")
            m.new_vault(vault)
            return ...
        self._check(c.CreateVault(vault), step)

    @rule(vault=VAULTS, key=KEYS, value=VALUES, expected=VERSIONS)
    def put(self, vault: str, key: str, value: bytes, expected: int | None) -> None:
        def step(m: Model, index: int) -> object:
            m.check_value(value)
            return PutResult(m.put(index, vault, key, value, expected), index)
        self._check(c.Put(vault, key, value, expected), step)

    @rule(vault=VAULTS, key=KEYS, expected=VERSIONS)
    def delete(self, vault: str, key: str, expected: int | None) -> None:
        def step(m: Model, index: int) -> object:
            return DeleteResult(m.delete(vault, key, expected), index)
        self._check(c.Delete(vault, key, expected), step)

    @rule(vault=VAULTS, ops=st.lists(st.tuples(st.booleans(), KEYS, VALUES, VERSIONS), min_size=1, max_size=4))
    def txn(self, vault: str, ops: list[tuple[bool, str, bytes, int | None]]) -> None:
        def step(m: Model, index: int) -> object:
            for is_delete, _, value, _ in ops:
                if not is_delete:
                    m.check_value(value)
            out = []
            for is_delete, key, value, expected in ops:
                if is_delete:
                    out.append(TxnOpResult(key, 0, m.delete(vault, key, expected)))
                else:
                    out.append(TxnOpResult(key, m.put(index, vault, key, value, expected), False))
            return TxnResult(tuple(out), index)

        self._check(c.Txn(vault, tuple(c.TxnDelete(k, x) if d else c.TxnPut(k, v, x) for d, k, v, x in ops)), step)

    @rule(source=VAULTS, destination=VAULTS)
    def copy_vault(self, source: str, destination: str) -> None:
        def step(m: Model, index: int) -> object:
            if source not in m.vaults:
                raise Rejected("VAULT_NOT_FOUND")
            if destination in m.vaults:
                raise Rejected("VAULT_EXISTS")
            if len(m.vaults[source]) > m.limits.max_keys_per_vault:
                raise Rejected("VAULT_FULL")
            if any(len(v[0]) > m.limits.max_value_size for v in m.vaults[source].values()):
                raise Rejected("VALUE_TOO_LARGE")
            m.new_vault(destination)
            m.vaults[destination] = {k: (v[0], 1, index) for k, v in m.vaults[source].items()}
            return CopyVaultResult(len(m.vaults[source]))
        self._check(c.CopyVault(source, destination), step)

    @rule(vault=VAULTS)
    def delete_vault(self, vault: str) -> None:
        def step(m: Model, index: int) -> object:
            if vault not in m.vaults:
                raise Rejected("VAULT_NOT_FOUND")
            return DeleteVaultResult(len(m.vaults.pop(vault)))
        self._check(c.DeleteVault(vault), step)

    @rule(max_vaults=st.integers(0, 3), max_keys=st.integers(0, 5), max_value=st.integers(0, 8))
    def set_limits(self, max_vaults: int, max_keys: int, max_value: int) -> None:
        def step(m: Model, index: int) -> object:
            old = m.limits
            m.limits = Limits(max_vaults or old.max_vaults, max_keys or old.max_keys_per_vault,
                              max_value or old.max_value_size, old.max_scan_results)
            return m.limits
        self._check(c.SetLimits(max_vaults, max_keys, max_value), step)

    @rule(vault=VAULTS, mode=st.sampled_from(list(c.ImportMode)),
          entries=st.lists(st.tuples(KEYS, VALUES), max_size=4))
    def import_(self, vault: str, mode: c.ImportMode, entries: list[tuple[str, bytes]]) -> None:
        def step(m: Model, index: int) -> object:
            for _, value in entries:
                m.check_value(value)
            staged = dict(entries)
            if len(staged) > m.limits.max_keys_per_vault:
                raise Rejected("VAULT_FULL")
            keys = m.vaults.get(vault, {})
            existing = [k for k in staged if k in keys]
            if mode is c.ImportMode.FAIL_IF_EXISTS and existing:
                raise Rejected("VERSION_MISMATCH")
            if vault not in m.vaults:
                m.new_vault(vault)
            keys = m.vaults[vault]
            new = [k for k in staged if k not in keys]
            if len(keys) + len(new) > m.limits.max_keys_per_vault:
                raise Rejected("VAULT_FULL")
            overwritten = 0
            for k, value in staged.items():
                if k not in keys:
                    keys[k] = (value, 1, index)
                elif mode is c.ImportMode.OVERWRITE and keys[k][0] != value:
                    keys[k] = (value, keys[k][1] + 1, index)
                    overwritten += 1
            return ImportResult(len(new), len(existing) - overwritten, overwritten)
        self._check(c.Import(vault, mode, tuple(c.ImportEntry(k, v) for k, v in entries)), step)

    @invariant()
    def contents_agree(self) -> None:
        reader = self.drive.machine.reader()
        listed, token = reader.list_vaults(2)
        while token:
            more, token = reader.list_vaults(2, token)
            listed += more
        assert [v.name for v in listed] == sorted(self.model.vaults)
        for info in listed:
            keys = self.model.vaults[info.name]
            assert info.key_count == len(keys)
            assert info.total_bytes == sum(len(v[0]) for v in keys.values())
            assert info.total_key_bytes == sum(len(k.encode()) for k in keys)
            scanned, token = reader.scan(info.name, "", 2)
            while token:
                more, token = reader.scan(info.name, "", 2, token)
                scanned += more
            assert [(e.key, e.value, e.version, e.revision) for e in scanned] == [
                (k, *keys[k]) for k in sorted(keys, key=lambda k: k.encode())]
            for prefix in ("a", "a%", "😀"):
                assert reader.count(info.name, prefix) == sum(k.startswith(prefix) for k in keys)
        assert reader.limits() == self.model.limits
        assert self.drive.machine.totals() == (len(self.model.vaults),
                                               sum(len(k) for k in self.model.vaults.values()),
                                               sum(len(v[0]) for k in self.model.vaults.values() for v in k.values()))


StoreVersusModel.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None,
                                              derandomize=True, suppress_health_check=[HealthCheck.too_slow])
TestStoreVersusModel = StoreVersusModel.TestCase

"""Every command's success path, every error it can give, and the limit edges (at and one past)."""

from __future__ import annotations

import pytest

from vaultd.store import commands as c
from vaultd.store import errors as e
from vaultd.store.results import (CopyVaultResult, DeleteResult, DeleteVaultResult, ImportResult, Limits,
                                  MemberRecord, PutResult, TxnOpResult, TxnResult)

from .conftest import Driver


def test_create_vault_records_metadata_and_timestamp(drive: Driver) -> None:
    info = drive.ok(c.CreateVault("app", "payments", "team-a", ("prod", "eu")))
    assert (info.name, info.description, info.owner, info.tags) == ("app", "payments", "team-a", ("prod", "eu"))
    assert info.created_at == info.updated_at == drive.ts
    assert (info.key_count, info.total_bytes) == (0, 0)
    assert drive.machine.reader().get_vault("app") == info


def test_create_existing_vault_is_rejected(drive: Driver) -> None:
    drive.ok(c.CreateVault("app"))
    assert isinstance(drive.err(c.CreateVault("app")), e.VaultExists)


@pytest.mark.parametrize("name", ["", "-app", ".app", "_app", "a" * 65, "has space", "ünï", "a/b", "a\x00"])
def test_invalid_vault_names(drive: Driver, name: str) -> None:
    err = drive.err(c.CreateVault(name))
    assert isinstance(err, e.InvalidName) and err.reason == "INVALID_VAULT_NAME"


@pytest.mark.parametrize("name", ["a", "A", "0", "a" * 64, "app.prod-1_x", "9lives"])
def test_valid_vault_names(drive: Driver, name: str) -> None:
    drive.ok(c.CreateVault(name))


@pytest.mark.parametrize("field, command", [
    ("description", c.CreateVault("v", description="x" * 1025)),
    ("owner", c.CreateVault("v", owner="x" * 257)),
    ("tags", c.CreateVault("v", tags=tuple(str(i) for i in range(33)))),
    ("tags", c.CreateVault("v", tags=("x" * 65,))),
])
def test_vault_metadata_bounds(drive: Driver, field: str, command: c.CreateVault) -> None:
    err = drive.err(command)
    assert isinstance(err, e.InvalidArgument) and err.metadata["field"] == field


def test_update_vault_keeps_unset_fields(drive: Driver) -> None:
    created = drive.ok(c.CreateVault("app", "d", "o", ("t",)))
    updated = drive.ok(c.UpdateVault("app", owner="new"))
    assert (updated.description, updated.owner, updated.tags) == ("d", "new", ("t",))
    assert updated.created_at == created.created_at and updated.updated_at == drive.ts > created.updated_at
    cleared = drive.ok(c.UpdateVault("app", description="", tags=()))
    assert (cleared.description, cleared.owner, cleared.tags) == ("", "new", ())
    assert isinstance(drive.err(c.UpdateVault("nope", owner="x")), e.VaultNotFound)


def test_put_get_versions_and_revisions(drive: Driver) -> None:
    first = drive.ok(c.Put("app", "k", b"v1"))
    assert first == PutResult(1, drive.index)
    created_ts = drive.ts
    second = drive.ok(c.Put("app", "k", b"v22"))
    assert second == PutResult(2, drive.index)
    entry = drive.machine.reader().get("app", "k")
    assert (entry.value, entry.version, entry.revision) == (b"v22", 2, drive.index)
    assert entry.created_at == created_ts and entry.updated_at == drive.ts
    vault = drive.machine.reader().get_vault("app")
    assert (vault.key_count, vault.total_bytes, vault.total_key_bytes) == (1, 3, 1)


def test_put_into_missing_vault_creates_it(drive: Driver) -> None:
    drive.ok(c.Put("fresh", "k", b""))
    info = drive.machine.reader().get_vault("fresh")
    assert (info.key_count, info.total_bytes, info.description) == (1, 0, "")


def test_put_compare_and_set(drive: Driver) -> None:
    assert drive.ok(c.Put("app", "k", b"a", 0)).version == 1
    err = drive.err(c.Put("app", "k", b"b", 0))
    assert isinstance(err, e.VersionMismatch) and (err.expected, err.actual) == (0, 1)
    assert err.metadata == {"expected_version": "0", "actual_version": "1", "key": "k"}
    assert drive.ok(c.Put("app", "k", b"b", 1)).version == 2
    assert isinstance(drive.err(c.Put("app", "k", b"c", 1)), e.VersionMismatch)
    assert isinstance(drive.err(c.Put("app", "absent", b"c", 5)), e.VersionMismatch)
    err = drive.err(c.Put("newvault", "k", b"c", 2))
    assert isinstance(err, e.VersionMismatch) and err.actual == 0
    with pytest.raises(e.VaultNotFound):
        drive.machine.reader().get_vault("newvault")


def test_rejected_command_changes_nothing_but_consumes_the_index(drive: Driver) -> None:
    drive.ok(c.Put("app", "k", b"a"))
    before = drive.machine.reader().get("app", "k")
    vault_before = drive.machine.reader().get_vault("app")
    drive.err(c.Put("app", "k", b"b", 7))
    assert drive.machine.reader().get("app", "k") == before
    assert drive.machine.reader().get_vault("app") == vault_before
    assert drive.machine.applied_index == drive.index


@pytest.mark.parametrize("key, ok", [
    ("k", True), ("x" * 1024, True), ("é" * 512, True), ("x" * 1025, False), ("é" * 512 + "x", False),
    ("", False), ("a\x00b", False), ("\ud800", False), ("%_:\x7f😀\U0010ffff", True),
])
def test_key_rules(drive: Driver, key: str, ok: bool) -> None:
    result = drive.one(c.Put("app", key, b"v"))
    assert result.ok == ok
    if not ok:
        assert result.error.reason == "INVALID_KEY"


def test_value_size_limit_exact_and_one_past(drive: Driver) -> None:
    drive.ok(c.SetLimits(max_value_size=100))
    drive.ok(c.Put("app", "k", b"x" * 100))
    err = drive.err(c.Put("app", "k", b"x" * 101))
    assert isinstance(err, e.ValueTooLarge) and (err.size, err.max) == (101, 100)
    assert err.metadata["key"] == "k"
    assert drive.machine.reader().get("app", "k").value == b"x" * 100


def test_default_value_limit_is_one_mib(drive: Driver) -> None:
    drive.ok(c.Put("app", "k", b"x" * (1 << 20)))
    assert isinstance(drive.err(c.Put("app", "k", b"x" * ((1 << 20) + 1))), e.ValueTooLarge)


def test_keys_per_vault_limit_exact_and_one_past(drive: Driver) -> None:
    drive.ok(c.SetLimits(max_keys_per_vault=3))
    for k in "abc":
        drive.ok(c.Put("app", k, b"v"))
    err = drive.err(c.Put("app", "d", b"v"))
    assert isinstance(err, e.VaultFull) and err.metadata == {"vault": "app", "max": "3"}
    drive.ok(c.Put("app", "a", b"updated"))   # updates never need room
    drive.ok(c.Delete("app", "a"))
    drive.ok(c.Put("app", "d", b"v"))


def test_vault_limit_exact_and_one_past(drive: Driver) -> None:
    drive.ok(c.SetLimits(max_vaults=2))
    drive.ok(c.CreateVault("a"))
    drive.ok(c.Put("b", "k", b"v"))
    assert isinstance(drive.err(c.CreateVault("c")), e.TooManyVaults)
    err = drive.err(c.Put("c", "k", b"v"))
    assert isinstance(err, e.TooManyVaults) and err.metadata == {"max": "2"}
    assert isinstance(drive.err(c.CopyVault("a", "c")), e.TooManyVaults)
    drive.ok(c.DeleteVault("a"))
    drive.ok(c.CreateVault("c"))


def test_concurrent_puts_into_a_vault_with_room_for_50(drive: Driver) -> None:
    drive.ok(c.SetLimits(max_keys_per_vault=50))
    results = drive.batch(*[c.Put("app", f"k{i:03}", b"v") for i in range(100)])
    assert sum(r.ok for r in results) == 50
    assert all(isinstance(r.error, e.VaultFull) for r in results[50:])
    assert drive.machine.reader().count("app") == 50


def test_lowering_a_limit_below_usage_only_blocks_growth(drive: Driver) -> None:
    for k in "abcd":
        drive.ok(c.Put("app", k, b"v"))
    drive.ok(c.SetLimits(max_keys_per_vault=2))
    assert drive.machine.reader().count("app") == 4
    drive.ok(c.Put("app", "a", b"changed"))
    assert isinstance(drive.err(c.Put("app", "e", b"v")), e.VaultFull)
    assert isinstance(drive.err(c.CopyVault("app", "copy")), e.VaultFull)


def test_delete(drive: Driver) -> None:
    drive.ok(c.Put("app", "k", b"abc"))
    assert drive.ok(c.Delete("app", "k")) == DeleteResult(True, drive.index)
    assert drive.ok(c.Delete("app", "k")) == DeleteResult(False, drive.index)
    with pytest.raises(e.KeyNotFound):
        drive.machine.reader().get("app", "k")
    info = drive.machine.reader().get_vault("app")
    assert (info.key_count, info.total_bytes, info.total_key_bytes) == (0, 0, 0)
    assert isinstance(drive.err(c.Delete("nope", "k")), e.VaultNotFound)


def test_delete_compare_and_set(drive: Driver) -> None:
    drive.ok(c.Put("app", "k", b"v"))
    err = drive.err(c.Delete("app", "k", 2))
    assert (err.expected, err.actual) == (2, 1)
    err = drive.err(c.Delete("app", "absent", 3))
    assert isinstance(err, e.VersionMismatch) and (err.expected, err.actual) == (3, 0)
    assert drive.ok(c.Delete("app", "absent", 0)).deleted is False
    assert drive.ok(c.Delete("app", "k", 1)).deleted is True


def test_delete_vault_is_atomic_and_counts(drive: Driver) -> None:
    for i in range(5):
        drive.ok(c.Put("app", f"k{i}", b"v"))
    drive.ok(c.Put("app2", "k", b"v"))
    assert drive.ok(c.DeleteVault("app")) == DeleteVaultResult(5)
    with pytest.raises(e.VaultNotFound):
        drive.machine.reader().get_vault("app")
    assert drive.machine.reader().count("app2") == 1
    assert drive.machine.reader().scan("app2")[0][0].key == "k"
    assert isinstance(drive.err(c.DeleteVault("app")), e.VaultNotFound)
    drive.ok(c.Put("app", "k0", b"again"))
    assert drive.machine.reader().get("app", "k0").version == 1


def test_copy_vault(drive: Driver) -> None:
    drive.ok(c.CreateVault("src", "d", "o", ("t",)))
    drive.ok(c.Put("src", "a", b"1"))
    drive.ok(c.Put("src", "a", b"11"))
    drive.ok(c.Put("src", "b", b"2"))
    assert drive.ok(c.CopyVault("src", "dst")) == CopyVaultResult(2)
    copied = drive.machine.reader().get("dst", "a")
    assert (copied.value, copied.version, copied.created_at, copied.updated_at, copied.revision) == (
        b"11", 1, drive.ts, drive.ts, drive.index)
    dst = drive.machine.reader().get_vault("dst")
    src = drive.machine.reader().get_vault("src")
    assert (dst.key_count, dst.total_bytes, dst.description, dst.tags) == (2, 3, "d", ("t",))
    assert drive.machine.reader().get("src", "a").version == 2 and src.key_count == 2
    assert isinstance(drive.err(c.CopyVault("src", "dst")), e.VaultExists)
    assert isinstance(drive.err(c.CopyVault("src", "src")), e.VaultExists)
    assert isinstance(drive.err(c.CopyVault("nope", "x")), e.VaultNotFound)
    assert isinstance(drive.err(c.CopyVault("src", "-bad")), e.InvalidName)


def test_copy_vault_key_limit_exact_and_one_past(drive: Driver) -> None:
    for k in "abc":
        drive.ok(c.Put("src", k, b"v"))
    drive.ok(c.SetLimits(max_keys_per_vault=3))
    drive.ok(c.CopyVault("src", "ok"))
    drive.ok(c.Put("src2", "a", b"v"))
    drive.ok(c.SetLimits(max_keys_per_vault=2))
    err = drive.err(c.CopyVault("src", "full"))
    assert isinstance(err, e.VaultFull) and err.metadata["vault"] == "full"


def test_copy_vault_value_size_limit_exact_and_one_past(drive: Driver) -> None:
    drive.ok(c.Put("src", "small", b"x" * 10))
    drive.ok(c.Put("src", "big", b"x" * 100))
    drive.ok(c.SetLimits(max_value_size=100))
    drive.ok(c.CopyVault("src", "ok"))
    drive.ok(c.SetLimits(max_value_size=99))      # lowered below usage: the existing values stay...
    err = drive.err(c.CopyVault("src", "grown"))  # ...but copying them would create new oversize values
    assert isinstance(err, e.ValueTooLarge) and (err.size, err.max) == (100, 99)
    assert drive.machine.reader().list_vaults()[0] == [drive.machine.reader().get_vault(v) for v in ("ok", "src")]


def test_txn_all_or_nothing(drive: Driver) -> None:
    drive.ok(c.Put("app", "a", b"1"))
    result = drive.ok(c.Txn("app", (c.TxnPut("a", b"2", 1), c.TxnPut("b", b"x", 0), c.TxnDelete("a", 2),
                                    c.TxnDelete("zz"))))
    assert result == TxnResult((TxnOpResult("a", 2, False), TxnOpResult("b", 1, False), TxnOpResult("a", 0, True),
                                TxnOpResult("zz", 0, False)), drive.index)
    state = drive.machine.reader().scan("app")[0]
    err = drive.err(c.Txn("app", (c.TxnPut("c", b"3"), c.TxnPut("b", b"y", 5))))
    assert isinstance(err, e.VersionMismatch) and err.metadata["key"] == "b"
    assert drive.machine.reader().scan("app")[0] == state


def test_txn_limits_and_validation(drive: Driver) -> None:
    drive.ok(c.SetLimits(max_keys_per_vault=2, max_value_size=4))
    assert isinstance(drive.err(c.Txn("app", (c.TxnPut("a", b"1"), c.TxnPut("b", b"2"), c.TxnPut("c", b"3")))),
                      e.VaultFull)
    with pytest.raises(e.VaultNotFound):   # the vault the first put created was rolled back too
        drive.machine.reader().get_vault("app")
    assert isinstance(drive.err(c.Txn("app", (c.TxnPut("a", b"12345"),))), e.ValueTooLarge)
    assert isinstance(drive.err(c.Txn("app", ())), e.InvalidArgument)
    assert isinstance(drive.err(c.Txn("app", (c.TxnPut("", b"1"),))), e.InvalidKey)
    assert isinstance(drive.err(c.Txn("app", (c.TxnDelete("a"),))), e.VaultNotFound)
    assert isinstance(drive.err(c.Txn("app", tuple(c.TxnDelete(str(i)) for i in range(1001)))), e.InvalidArgument)
    drive.ok(c.Txn("app", (c.TxnPut("a", b"1"), c.TxnPut("b", b"2"))))


def test_set_limits_keeps_zero_fields_and_validates(drive: Driver) -> None:
    assert drive.machine.reader().limits() == Limits(1000, 10_000, 1 << 20, 1000)
    assert drive.ok(c.SetLimits(max_vaults=5)) == Limits(5, 10_000, 1 << 20, 1000)
    assert drive.ok(c.SetLimits(max_scan_results=7, max_value_size=9)) == Limits(5, 10_000, 9, 7)
    assert isinstance(drive.err(c.SetLimits(max_vaults=-1)), e.InvalidArgument)
    assert isinstance(drive.err(c.SetLimits(max_value_size=(64 << 20) + 1)), e.InvalidArgument)
    assert drive.machine.reader().limits() == Limits(5, 10_000, 9, 7)


def test_set_limits_only_if_unset_is_for_bootstrap(drive: Driver) -> None:
    assert drive.ok(c.SetLimits(max_vaults=10, only_if_unset=True)).max_vaults == 10
    assert drive.ok(c.SetLimits(max_vaults=20, only_if_unset=True)).max_vaults == 10
    assert drive.ok(c.SetLimits(max_vaults=30)).max_vaults == 30


def test_bootstrap_envelope(tmp_path) -> None:
    from vaultd.store import StateMachine

    m = StateMachine(str(tmp_path / "db"), bootstrap_limits=Limits(3, 4, 5, 6))
    try:
        env = m.bootstrap_envelope()
        assert env.command == c.SetLimits(3, 4, 5, 6, only_if_unset=True)
        m.apply(1, 1, c.Batch(1, (env,)))
        assert m.reader().limits() == Limits(3, 4, 5, 6)
    finally:
        m.close()


def test_members(drive: Driver) -> None:
    assert drive.ok(c.SetMember("n2", "127.0.0.1:2", "127.0.0.1:12")) == MemberRecord(
        "n2", "127.0.0.1:2", "127.0.0.1:12", True)
    drive.ok(c.SetMember("n1", "127.0.0.1:1", "127.0.0.1:11", False))
    drive.ok(c.SetMember("n2", "127.0.0.1:2", "127.0.0.1:99"))
    assert drive.machine.reader().members() == [MemberRecord("n1", "127.0.0.1:1", "127.0.0.1:11", False),
                                                MemberRecord("n2", "127.0.0.1:2", "127.0.0.1:99", True)]
    assert drive.ok(c.RemoveMember("n1")) is None
    assert drive.ok(c.RemoveMember("n1")) is None
    assert [m.node_id for m in drive.machine.reader().members()] == ["n2"]
    assert isinstance(drive.err(c.SetMember("", "a", "b")), e.InvalidArgument)


def test_noop_only_advances_the_index(drive: Driver) -> None:
    drive.ok(c.Put("app", "k", b"v"))
    before = drive.machine.reader().get("app", "k")
    assert drive.ok(c.Noop()) is None
    assert drive.machine.applied_index == drive.index
    assert drive.machine.reader().applied() == (drive.index, 1)
    assert drive.machine.reader().get("app", "k") == before


def test_unknown_command_is_rejected(drive: Driver) -> None:
    assert isinstance(drive.err(c.Unknown()), e.InvalidArgument)


def test_inline_import(drive: Driver) -> None:
    entries = (c.ImportEntry("a", b"1"), c.ImportEntry("b", b"2"))
    assert drive.ok(c.Import("app", c.ImportMode.FAIL_IF_EXISTS, entries)) == ImportResult(2, 0, 0)
    assert drive.ok(c.Import("app", c.ImportMode.SKIP_EXISTING, entries)) == ImportResult(0, 2, 0)


@pytest.mark.parametrize("command, ok", [
    (c.CreateVault("v", description="x" * 1024), True), (c.CreateVault("v", description="x" * 1025), False),
    (c.CreateVault("v", owner="x" * 256), True), (c.CreateVault("v", owner="x" * 257), False),
    (c.CreateVault("v", tags=tuple(str(i) for i in range(32))), True),
    (c.CreateVault("v", tags=tuple(str(i) for i in range(33))), False),
    (c.CreateVault("v", tags=("x" * 64,)), True), (c.CreateVault("v", tags=("x" * 65,)), False),
    (c.Txn("v", tuple(c.TxnPut(f"k{i}", b"") for i in range(1000))), True),
    (c.Txn("v", tuple(c.TxnPut(f"k{i}", b"") for i in range(1001))), False),
    (c.SetMember("n" * 128, "a" * 256, "b" * 256), True), (c.SetMember("n" * 129, "a", "b"), False),
    (c.SetMember("n", "a" * 257, "b"), False), (c.SetMember("n", "a", "b" * 257), False),
    (c.SetLimits(1_000_000, 100_000_000, 64 << 20, 100_000), True),
    (c.SetLimits(max_vaults=1_000_001), False), (c.SetLimits(max_keys_per_vault=100_000_001), False),
    (c.SetLimits(max_scan_results=100_001), False),
    (c.Envelope("r" * 512, c.Noop()), True), (c.Envelope("r" * 513, c.Noop()), False),
    (c.ImportBegin("i" * 256, "v", c.ImportMode.OVERWRITE), True),
    (c.ImportBegin("i" * 257, "v", c.ImportMode.OVERWRITE), False),
])
def test_bounds_exactly_at_and_one_past(drive: Driver, command: c.Command | c.Envelope, ok: bool) -> None:
    result = drive.one(command)
    assert result.ok == ok, result
    if not ok:
        assert result.error.reason == "INVALID_ARGUMENT"


def test_scan_limit_exactly_at_and_one_past(drive: Driver) -> None:
    drive.batch(*[c.Put("v", f"k{i:02}", b"") for i in range(30)])
    drive.ok(c.SetLimits(max_scan_results=10))
    assert len(drive.machine.reader().scan("v", "", 10)[0]) == 10
    assert len(drive.machine.reader().scan("v", "", 11)[0]) == 10
    drive.batch(*[c.CreateVault(f"x{i:02}") for i in range(20)])
    assert len(drive.machine.reader().list_vaults(10)[0]) == 10
    assert len(drive.machine.reader().list_vaults(11)[0]) == 10
    with pytest.raises(e.InvalidArgument):
        drive.machine.reader().list_vaults(5, "not-a-token")

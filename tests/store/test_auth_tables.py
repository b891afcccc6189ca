"""Policies and tokens in the state machine: validation in apply, limits, expiry from the batch time,
revocation, and the node-local auth revision that tells API caches to reload."""

from __future__ import annotations

import pytest

from vaultd.store import commands as c
from vaultd.store import errors as e
from vaultd.store import policies as pol
from vaultd.store.results import PolicyRule

from .conftest import Driver

HASH = "ab" * 32


def _policy(name: str = "dev", *rules: tuple[str, tuple[str, ...]]) -> c.PutPolicy:
    return c.PutPolicy(name, tuple(PolicyRule(g, caps) for g, caps in (rules or (("app-*", ("read",)),))))


def test_put_get_replace_and_delete_policy(drive: Driver) -> None:
    first = drive.ok(_policy("dev", ("app-*", ("write", "read", "read"))))
    assert first.rules == (PolicyRule("app-*", ("read", "write")),)      # canonical order, deduplicated
    replaced = drive.ok(_policy("dev", ("*", ("list",))))
    assert replaced.created_at == first.created_at and replaced.updated_at == drive.ts
    assert drive.machine.reader().policy("dev") == replaced
    assert [p.name for p in drive.machine.reader().policies()] == ["dev"]
    assert drive.ok(c.DeletePolicy("dev")) == replaced
    assert isinstance(drive.err(c.DeletePolicy("dev")), e.PolicyNotFound)
    assert drive.machine.reader().policies() == []


@pytest.mark.parametrize("command, field", [
    (c.PutPolicy("-bad", ()), "name"),
    (c.PutPolicy("p", (PolicyRule("app[0]", ("read",)),)), "rules[0].vault_glob"),
    (c.PutPolicy("p", (PolicyRule("", ("read",)),)), "rules[0].vault_glob"),
    (c.PutPolicy("p", (PolicyRule("a", ("read",)), PolicyRule("a", ("list",)))), "rules[1].vault_glob"),
    (c.PutPolicy("p", (PolicyRule("a", ("root",)),)), "rules[0].capabilities"),
    (c.PutPolicy("p", tuple(PolicyRule(f"a{i}", ()) for i in range(pol.MAX_RULES + 1))), "rules"),
    (c.CreateToken("XYZ", "t", (), HASH), "token_id"),
    (c.CreateToken("0" * 16, "t", (), "secret"), "secret_sha256"),
    (c.CreateToken("0" * 16, "t", (), HASH, -1), "ttl_seconds"),
    (c.CreateToken("0" * 16, "t", (), HASH, pol.MAX_TTL_SECONDS + 1), "ttl_seconds"),
    (c.CreateToken("0" * 16, "x" * 129, (), HASH), "name"),
    (c.CreateToken("0" * 16, "new\nline", (), HASH), "name"),
    (c.CreateToken("0" * 16, "c1\x85control", (), HASH), "name"),
    (c.CreateToken("0" * 16, "t", ("bad name",), HASH), "policies"),
])
def test_invalid_auth_commands_are_rejected_in_apply(drive: Driver, command: c.Command, field: str) -> None:
    err = drive.err(command)
    assert isinstance(err, e.InvalidArgument) and err.metadata["field"] == field
    assert drive.machine.reader().policies() == [] and drive.machine.reader().tokens() == []


def test_token_lifecycle_expiry_from_batch_time_and_revocation(drive: Driver) -> None:
    drive.ok(_policy("dev"))
    token = drive.ok(c.CreateToken("0123456789abcdef", "ci", ("dev", "dev"), HASH, 60))
    assert (token.policies, token.created_at, token.expires_at) == (("dev",), drive.ts, drive.ts + 60 * 10**9)
    forever = drive.ok(c.CreateToken("1" * 16, "ops", (), HASH, 0))
    assert forever.expires_at == 0 and not forever.revoked
    info, digest = drive.machine.reader().token_with_hash("0123456789abcdef")
    assert info == token and digest == HASH
    assert isinstance(drive.err(c.CreateToken("1" * 16, "dup", (), HASH)), e.InvalidArgument)
    assert isinstance(drive.err(c.CreateToken("2" * 16, "typo", ("nope",), HASH)), e.PolicyNotFound)
    revoked = drive.ok(c.RevokeToken("1" * 16))
    assert revoked.revoked and drive.ok(c.RevokeToken("1" * 16)) == revoked     # idempotent
    assert isinstance(drive.err(c.RevokeToken("f" * 16)), e.TokenNotFound)
    # The next CreateToken, 61 s later by the batch clock, forgets the revoked and the expired token.
    drive.ts += 61 * 10**9
    drive.ok(c.CreateToken("3" * 16, "new", (), HASH))
    assert [t.token_id for t in drive.machine.reader().tokens()] == ["3" * 16]


def test_deleting_a_policy_leaves_tokens_naming_it(drive: Driver) -> None:
    drive.ok(_policy("dev"))
    drive.ok(c.CreateToken("0" * 16, "ci", ("dev",), HASH))
    drive.ok(c.DeletePolicy("dev"))
    assert drive.machine.reader().tokens()[0].policies == ("dev",)


def test_policy_and_token_limits(drive: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pol, "MAX_POLICIES", 2)
    monkeypatch.setattr(pol, "MAX_LIVE_TOKENS", 1)
    drive.ok(_policy("a"))
    drive.ok(_policy("b"))
    assert isinstance(drive.err(_policy("c")), e.TooManyPolicies)
    drive.ok(_policy("b", ("*", ("read",))))                 # replacing is not adding
    drive.ok(c.CreateToken("0" * 16, "t", (), HASH))
    assert isinstance(drive.err(c.CreateToken("1" * 16, "t", (), HASH)), e.TooManyTokens)


def test_auth_revision_moves_only_on_auth_commands_and_restore(drive: Driver, tmp_path) -> None:
    machine = drive.machine
    start = machine.auth_revision
    drive.ok(c.CreateVault("app"))
    assert machine.auth_revision == start
    drive.ok(_policy("dev"))
    assert machine.auth_revision == start + 1
    drive.err(c.DeletePolicy("nope"))                        # a rejected one may move it too: never less
    moved = machine.auth_revision
    machine.restore(machine.snapshot(str(tmp_path / "snap")).path)
    assert machine.auth_revision == moved + 1


def test_the_secret_hash_never_appears_in_results_or_reprs(drive: Driver) -> None:
    command = c.CreateToken("0" * 16, "ci", (), HASH)
    assert HASH not in repr(command)
    result = drive.one(c.Envelope("req-1", command))
    assert HASH not in repr(result)
    with drive.machine.reader()._txn() as conn:   # the request table holds the encoded result: no hash there
        stored = conn.execute("SELECT result FROM requests WHERE request_id = 'req-1'").get
    assert HASH.encode() not in bytes(stored)


@pytest.mark.parametrize("rules, vault, expected", [
    ([("*", ("read",))], "app", {"read"}),
    ([("*", ("read",)), ("prod-*", ())], "prod-db", set()),                      # more specific denies
    ([("*", ("read",)), ("prod-*", ())], "dev-db", {"read"}),
    ([("prod-*", ("read",)), ("prod-db", ("write",))], "prod-db", {"write"}),    # exact beats glob
    ([("p?od-*", ("read",)), ("prod-*", ("list",))], "prod-x", {"list"}),        # more literal characters
    ([("app", ("read",))], "app2", set()),                                     # default deny
    ([("a*", ("read",)), ("a*", ("list",))], "ab", {"read", "list"}),            # ties: union
    ([("*", ("admin",)), ("app*", ("read",))], pol.CLUSTER, {"admin"}),        # cluster: only "*"
    ([("app*", ("admin",))], pol.CLUSTER, set()),
])
def test_most_specific_glob_decides(rules, vault, expected) -> None:
    compiled = pol.compile_policies([[PolicyRule(g, caps)] for g, caps in rules])
    assert compiled.capabilities(vault) == frozenset(expected)

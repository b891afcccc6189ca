"""The log codec: round trips, hostile payloads, and the committed generated module being current."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaultd.store import logproto
from vaultd.store import commands as c
from vaultd.store.resultcodec import decode_result, encode_result
from vaultd.store import errors as e
from vaultd.store import results as r

ALL_COMMANDS = [
    c.CreateVault("app", "desc", "team", ("a", "b")),
    c.UpdateVault("app"), c.UpdateVault("app", description="", owner="o", tags=()),
    c.UpdateVault("app", tags=("x",)),
    c.DeleteVault("app"), c.CopyVault("app", "app2"),
    c.Put("app", "k", b"\x00\xff"), c.Put("app", "k", b"", 0), c.Put("app", "k", b"v", 7),
    c.Delete("app", "k"), c.Delete("app", "k", 0), c.Delete("app", "k", 3),
    c.Txn("app", (c.TxnPut("a", b"1"), c.TxnPut("b", b"2", 0), c.TxnDelete("c"), c.TxnDelete("d", 4))),
    c.SetLimits(), c.SetLimits(1, 2, 3, 4, True),
    c.SetMember("n1", "127.0.0.1:1", "127.0.0.1:2", False), c.RemoveMember("n1"), c.Noop(),
    c.ImportBegin("i1", "app", c.ImportMode.SKIP_EXISTING),
    c.ImportChunk("i1", (c.ImportEntry("k", b"v"),)), c.ImportChunk("i1", (), seq=0),
    c.ImportCommit("i1"), c.ImportCommit("i1", chunk_count=3),
    c.Import("app", c.ImportMode.OVERWRITE, (c.ImportEntry("k", b"v"), c.ImportEntry("j", b""))),
]


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda x: type(x).__name__)
def test_every_command_round_trips(command: c.Command) -> None:
    batch = c.Batch(123, (c.Envelope("rid-1", command), c.Envelope("", c.Noop())))
    assert c.decode_batch(c.encode_batch(batch)) == batch


def test_encoding_is_deterministic() -> None:
    batch = c.Batch(5, tuple(c.Envelope(str(i), cmd) for i, cmd in enumerate(ALL_COMMANDS)))
    assert c.encode_batch(batch) == c.encode_batch(c.decode_batch(c.encode_batch(batch)))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.binary(max_size=200))
def test_decoding_arbitrary_bytes_never_raises_anything_but_codec_error(data: bytes) -> None:
    try:
        batch = c.decode_batch(data)
    except c.CodecError as exc:
        assert exc.reason == "INVALID_ARGUMENT"
        return
    assert isinstance(batch, c.Batch)


def test_unknown_command_kind_decodes_to_unknown() -> None:
    from vaultd.store import log_pb2

    msg = log_pb2.Batch(timestamp_ns=1)
    msg.commands.add(request_id="x")  # an envelope whose command has no kind this version knows
    assert c.decode_batch(msg.SerializeToString()).commands[0].command == c.Unknown()


RESULTS = [
    r.Ok(None), r.Ok(r.PutResult(2, 9)), r.Ok(r.DeleteResult(False, 3)), r.Ok(r.DeleteVaultResult(4)),
    r.Ok(r.CopyVaultResult(5)), r.Ok(r.TxnResult((r.TxnOpResult("a", 1, False), r.TxnOpResult("b", 0, True)), 7)),
    r.Ok(r.ImportResult(1, 2, 3)), r.Ok(r.ImportStaged(4, 2)), r.Ok(r.Limits(1, 2, 3, 4)),
    r.Ok(r.MemberRecord("n1", "a:1", "a:2", True)),
    r.Ok(r.VaultInfo("v", "d", "o", ("t",), 1, 2, 3, 4, 5)),
    r.Err(e.VersionMismatch(3, 4, "k")), r.Err(e.VaultFull("v", 10)), r.Err(e.ValueTooLarge(9, 8)),
    r.Err(e.MalformedImport("bad", line=3)), r.Err(e.Internal("Put failed with KeyError")),
]


@pytest.mark.parametrize("result", RESULTS, ids=repr)
def test_results_round_trip(result: r.Result) -> None:
    back = decode_result(encode_result(result))
    assert back == result
    if not result.ok:
        assert type(back.error) is type(result.error) and back.error.reason == result.error.reason


def test_restored_errors_keep_typed_accessors() -> None:
    err = decode_result(encode_result(r.Err(e.VersionMismatch(3, 4, "k")))).error
    assert (err.expected, err.actual) == (3, 4)
    big = decode_result(encode_result(r.Err(e.ValueTooLarge(9, 8)))).error
    assert (big.size, big.max) == (9, 8)


def test_regenerating_log_pb2_gives_identical_files(tmp_path: Path) -> None:
    for generated in logproto.generate(tmp_path):
        committed = logproto.ROOT / generated.relative_to(tmp_path)
        assert generated.read_bytes() == committed.read_bytes(), f"{committed} is stale: python -m vaultd.store.logproto"


def test_values_never_appear_in_reprs() -> None:
    """A command or entry that reaches a log line or an exception message must not carry the secret."""
    from vaultd.store.results import Entry

    secret = b"sk_live_repr_secret"
    things = [c.Put("app", "k", secret), c.TxnPut("k", secret), c.ImportEntry("k", secret),
              Entry("k", secret, 1, 0, 0, 1)]
    for thing in things:
        assert "sk_live_repr_secret" not in repr(thing) and "sk_live_repr_secret" not in str(thing)

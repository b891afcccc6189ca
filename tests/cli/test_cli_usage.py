"""CLI argument handling and exit codes that need no cluster (the end-to-end CLI tests are in test_cli_e2e)."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from vaultd import client as vc
from vaultd.cli import commands
from vaultd.cli.main import (EXIT_CONFLICT, EXIT_LIMIT, EXIT_NOT_FOUND, EXIT_OK, EXIT_OTHER, EXIT_UNAVAILABLE,
                             EXIT_USAGE, build_parser, exit_code_for, main)

# Nothing listens on port 1 of loopback: connections are refused at once.
DEAD = "127.0.0.1:1"


def test_help_exits_zero(capsys) -> None:
    assert main(["--help"]) == EXIT_OK
    assert "exit codes" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["vault"], ["vault", "bogus"], ["key", "put"], ["--timeout", "x", "key"],
                                  ["cluster", "limits"], ["-o", "yaml", "vault", "list"]])
def test_usage_errors_exit_2(argv: list[str]) -> None:
    assert main(argv) == EXIT_USAGE


SECRET = "sk_live_usage_value_9f3"


@pytest.mark.parametrize("argv,names", [
    (["key", "put", "v", "k", "value", SECRET], "unrecognized argument"),
    (["vault", "list", "--bogus", SECRET], "2 unrecognized arguments"),
    (["-o", SECRET, "vault", "list"], "-o/--output: invalid choice (choose from 'table', 'json')"),
    (["--timeout", SECRET, "vault", "list"], "--timeout: invalid float value"),
    ([SECRET], "COMMAND: invalid choice"),
    (["vault", SECRET], "invalid choice"),
    (["key", "get", f"--reveal={SECRET}", "v", "k"], "--reveal: ignored explicit argument"),
    (["key", "put", "v", "k", "--expected-version", SECRET], "--expected-version: invalid int value"),
    ([f"--t={SECRET}", "vault", "list"], "ambiguous option: --t=..."),
    (["cluster", "limits", "set", "--max-vaults", SECRET], "--max-vaults: invalid int value"),
])
def test_usage_errors_name_the_problem_without_echoing_values(capsys, argv: list[str], names: str) -> None:
    assert main(argv) == EXIT_USAGE
    out = capsys.readouterr()
    assert SECRET not in out.err + out.out
    assert names in out.err and "usage:" in out.err


def test_options_accepted_before_or_after_the_subcommand() -> None:
    parser = build_parser()
    a = parser.parse_args(["--endpoints", "h:1", "-o", "json", "key", "get", "v", "k"])
    b = parser.parse_args(["key", "get", "v", "k", "--endpoints", "h:1", "-o", "json"])
    assert (a.endpoints, a.output) == (b.endpoints, b.output) == ("h:1", "json")
    c = parser.parse_args(["key", "get", "v", "k"])
    assert (c.output, c.timeout, c.endpoints) == ("table", 10.0, None)


def test_unreachable_cluster_exits_4_with_json_error(capsys) -> None:
    code = main(["--endpoints", DEAD, "--timeout", "0.5", "-o", "json", "key", "get", "v", "k"])
    assert code == EXIT_UNAVAILABLE
    err = json.loads(capsys.readouterr().err)
    assert err["error"]["code"] == "UNAVAILABLE" and err["error"]["reason"] == "CONNECTION_FAILED"


@pytest.mark.parametrize("cls,code,expected", [
    (vc.NotFound, grpc.StatusCode.NOT_FOUND, EXIT_NOT_FOUND),
    (vc.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT, EXIT_USAGE),
    (vc.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS, EXIT_CONFLICT),
    (vc.VersionMismatch, grpc.StatusCode.FAILED_PRECONDITION, EXIT_CONFLICT),
    (vc.Unavailable, grpc.StatusCode.UNAVAILABLE, EXIT_UNAVAILABLE),
    (vc.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED, EXIT_UNAVAILABLE),
    (vc.LimitExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED, EXIT_LIMIT),
    (vc.InternalError, grpc.StatusCode.INTERNAL, EXIT_OTHER),
])
def test_exit_code_table(cls, code, expected) -> None:
    assert exit_code_for(cls(code, "R", "m", {})) == expected


def test_put_with_value_and_file_is_a_usage_error(tmp_path: Path) -> None:
    f = tmp_path / "v"
    f.write_bytes(b"x")
    assert main(["--endpoints", DEAD, "key", "put", "v", "k", "inline", "--file", str(f)]) == EXIT_USAGE


def _write(tmp_path: Path, doc: object) -> str:
    p = tmp_path / "txn.json"
    p.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return str(p)


def test_txn_file_parsing(tmp_path: Path) -> None:
    ops = commands._txn_ops(_write(tmp_path, {"ops": [
        {"put": {"key": "a", "value": "x", "expected_version": 0}},
        {"put": {"key": "b", "value_base64": "AAE="}},
        {"delete": {"key": "c", "expected_version": 2}}]}))
    assert [o.WhichOneof("op") for o in ops] == ["put", "put", "delete"]
    assert ops[0].put.expected_version == 0 and ops[0].put.HasField("expected_version")
    assert ops[1].put.value == b"\x00\x01" and not ops[1].put.HasField("expected_version")
    assert ops[2].delete.key == "c" and ops[2].delete.expected_version == 2
    assert len(commands._txn_ops(_write(tmp_path, [{"delete": {"key": "x"}}]))) == 1


@pytest.mark.parametrize("doc", ["not json", [], {"ops": []}, [{"get": {"key": "a"}}], [{"put": {"value": "x"}}],
                                 [{"put": {"key": "a"}}], [{"put": {"key": "a", "value": "x", "value_base64": "eA=="}}],
                                 [{"put": {"key": "a", "value_base64": "!!"}}],
                                 [{"delete": {"key": "a", "expected_version": "1"}}]])
def test_bad_txn_files_exit_2(tmp_path: Path, doc: object) -> None:
    assert main(["--endpoints", DEAD, "key", "txn", "v", _write(tmp_path, doc)]) == EXIT_USAGE


def test_update_without_fields_is_usage(capsys) -> None:
    assert main(["--endpoints", DEAD, "vault", "update", "v"]) == EXIT_USAGE
    assert "needs" in capsys.readouterr().err


def test_limits_set_without_options_is_usage() -> None:
    assert main(["--endpoints", DEAD, "cluster", "limits", "set"]) == EXIT_USAGE


def test_config_show_and_serve_are_dispatched(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("VAULTD_CLUSTER_SECRET", raising=False)
    assert main(["config", "show", "--node-id", "n7", "--data-dir", str(tmp_path)]) == EXIT_OK
    assert "n7" in capsys.readouterr().out
    # serve refuses to start without a cluster secret (its own exit code, not a client one)
    code = main(["serve", "--node-id", "n1", "--data-dir", str(tmp_path), "--raft-addr", "127.0.0.1:1",
                 "--grpc-addr", "127.0.0.1:2", "--insecure-plaintext", "--insecure-no-auth"])
    assert code != EXIT_OK
    assert "secret" in capsys.readouterr().err.lower()

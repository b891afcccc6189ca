"""`vaultd` entry point: argument parsing, dispatch, and the exit codes scripts rely on.

Exit codes (documented in README): 0 ok, 1 not found, 2 usage or invalid argument, 3 already exists or
failed precondition (version mismatch), 4 unavailable or deadline exceeded, 5 limit exceeded, 6 other,
7 unauthenticated (missing, unknown, expired or revoked token) or permission denied.

`serve`, `dev` and `config show` hand their remaining arguments to the modules that own them, so their
flags are defined (and documented by --help) in one place.

Usage errors never echo an argument: argparse would quote the offending one ("unrecognized arguments:
sk_live_..."), and a misplaced secret would land in a terminal log or a CI transcript. `QuietParser` names
the problem and the option instead.

Credentials: TLS when a CA file is given (--ca-file or VAULTD_CA_FILE; --cert-file/--key-file add a client
certificate), the bearer token from VAULTD_TOKEN, else the file named by --token-file or VAULTD_TOKEN_FILE.
There is deliberately no --token flag: command lines show up in `ps` and shell history.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from vaultd.cli import auth_commands, commands
from vaultd.config import sanitize_usage_message
from vaultd.client import (ENV_CA_FILE, ENV_CERT_FILE, ENV_ENDPOINTS, ENV_INSECURE_PLAINTEXT, ENV_KEY_FILE,
                           ENV_TOKEN, ENV_TOKEN_FILE, AlreadyExists, DeadlineExceeded, FailedPrecondition,
                           InvalidArgument, LimitExceeded, NotFound, PermissionDenied, Unauthenticated, Unavailable, VaultClient, VaultError,
                           read_token_file)

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_CONFLICT = 3
EXIT_UNAVAILABLE = 4
EXIT_LIMIT = 5
EXIT_OTHER = 6
EXIT_AUTH = 7

_EXIT_CODES: tuple[tuple[type[VaultError], int], ...] = (
    (NotFound, EXIT_NOT_FOUND),
    (InvalidArgument, EXIT_USAGE),
    (AlreadyExists, EXIT_CONFLICT),
    (FailedPrecondition, EXIT_CONFLICT),
    (Unavailable, EXIT_UNAVAILABLE),
    (DeadlineExceeded, EXIT_UNAVAILABLE),
    (LimitExceeded, EXIT_LIMIT),
    (Unauthenticated, EXIT_AUTH),
    (PermissionDenied, EXIT_AUTH),
)

ENDPOINTS_ENV = ENV_ENDPOINTS


def exit_code_for(error: VaultError) -> int:
    for cls, code in _EXIT_CODES:
        if isinstance(error, cls):
            return code
    return EXIT_OTHER


def default_endpoints() -> str:
    from vaultd.dev import DEFAULT_ENDPOINTS
    return os.environ.get(ENDPOINTS_ENV) or ",".join(DEFAULT_ENDPOINTS)


class ParseError(Exception):
    """Raised by QuietParser instead of exiting, so main() prints one sanitized message."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class QuietParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors raise ParseError (subparsers inherit the class)."""

    def error(self, message: str) -> NoReturn:
        raise ParseError(self, message)


def _client_options(parser: argparse.ArgumentParser, top: bool) -> None:
    """--endpoints/--timeout/-o and the credentials, accepted before or after the subcommand (SUPPRESS keeps
    the top value)."""
    default = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    parser.add_argument("--endpoints", default=default(None),
                        help=f"comma-separated host:port list (default ${ENDPOINTS_ENV} or the `vaultd dev` ports)")
    parser.add_argument("--ca-file", metavar="FILE", default=default(None),
                        help=f"PEM CA that signs the servers' certificates; TLS is on exactly when one is given "
                             f"(default ${ENV_CA_FILE})")
    parser.add_argument("--cert-file", metavar="FILE", default=default(None),
                        help=f"PEM client certificate, for servers that require one (mTLS; default ${ENV_CERT_FILE})")
    parser.add_argument("--key-file", metavar="FILE", default=default(None),
                        help=f"PEM private key of --cert-file (default ${ENV_KEY_FILE})")
    parser.add_argument("--token-file", metavar="FILE", default=default(None),
                        help=f"file holding the bearer token (default ${ENV_TOKEN}, else ${ENV_TOKEN_FILE})")
    parser.add_argument("--insecure-plaintext", action="store_true", default=default(False),
                        help=f"INSECURE: send the token without TLS (no --ca-file) on purpose "
                             f"(default ${ENV_INSECURE_PLAINTEXT}=1)")
    parser.add_argument("--timeout", type=float, default=default(10.0),
                        help="seconds per command, including retries and failover (default 10)")
    parser.add_argument("-o", "--output", choices=("table", "json"), default=default("table"))


def _consistency_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--local", dest="consistency", action="store_const", const="local", default=None,
                        help="read this node's replica without a read barrier (may be stale)")


def _progress_option(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--progress", dest="progress", action="store_true", default=None,
                       help="show a progress bar on stderr (default: when stderr is a terminal)")
    group.add_argument("--no-progress", dest="progress", action="store_false")


def build_parser() -> argparse.ArgumentParser:
    parser = QuietParser(
        prog="vaultd", description="vaultd: a Raft-replicated vault key-value server for secrets and config.",
        epilog="exit codes: 0 ok, 1 not found, 2 usage/invalid argument, 3 already exists/precondition failed, "
               "4 unavailable/deadline exceeded, 5 limit exceeded, 6 other error, "
               "7 unauthenticated/permission denied")
    _client_options(parser, top=True)
    common = QuietParser(add_help=False)
    _client_options(common, top=False)
    top = parser.add_subparsers(dest="group", metavar="COMMAND")
    top.required = True
    top.add_parser("serve", help="run one vaultd node (see `vaultd serve --help`)", add_help=False)
    top.add_parser("dev", help="run a local 3-node cluster (see `vaultd dev --help`)", add_help=False)
    config = top.add_parser("config", help="configuration tools")
    config.add_subparsers(dest="config_cmd", metavar="show").add_parser(
        "show", help="print the effective node configuration (see `vaultd config show --help`)", add_help=False)

    def leaf(group: argparse._SubParsersAction, name: str, handler: commands.Handler, help: str,
             ) -> argparse.ArgumentParser:
        p = group.add_parser(name, help=help, parents=[common])
        p.set_defaults(handler=handler)
        return p

    # vault ...
    vault = top.add_parser("vault", help="vaults: create, list, get, update, delete, copy, stats, export, import")
    vs = vault.add_subparsers(dest="cmd", metavar="SUBCOMMAND")
    vs.required = True
    p = leaf(vs, "create", commands.vault_create, "create a vault")
    p.add_argument("name")
    p.add_argument("--description")
    p.add_argument("--owner")
    p.add_argument("--tag", action="append", help="repeatable")
    p = leaf(vs, "list", commands.vault_list, "list vaults (all pages unless --page-size/--page-token)")
    p.add_argument("--page-size", type=int, default=0)
    p.add_argument("--page-token", default="")
    _consistency_option(p)
    p = leaf(vs, "get", commands.vault_get, "show a vault's metadata")
    p.add_argument("name")
    _consistency_option(p)
    p = leaf(vs, "update", commands.vault_update, "change description, owner or tags")
    p.add_argument("name")
    p.add_argument("--description")
    p.add_argument("--owner")
    p.add_argument("--tag", action="append", help="repeatable; replaces the tag list")
    p.add_argument("--clear-tags", action="store_true")
    p = leaf(vs, "delete", commands.vault_delete, "delete a vault and all its keys")
    p.add_argument("name")
    p = leaf(vs, "copy", commands.vault_copy, "copy a vault into a new vault")
    p.add_argument("source")
    p.add_argument("destination")
    p = leaf(vs, "stats", commands.vault_stats, "sizes and access statistics (summed over the cluster)")
    p.add_argument("name")
    p = leaf(vs, "export", commands.vault_export, "export a vault as native JSON")
    p.add_argument("name")
    p.add_argument("--file", "-f", help="output file (default stdout)")
    _consistency_option(p)
    _progress_option(p)
    p = leaf(vs, "import", commands.vault_import, "import a native, flat JSON or dotenv file (all-or-nothing)")
    p.add_argument("name")
    p.add_argument("file", nargs="?", help="input file ('-' or omitted: stdin)")
    p.add_argument("--format", choices=("native", "flat-json", "dotenv"), default="native")
    p.add_argument("--mode", choices=("fail-if-exists", "overwrite", "skip-existing"), default="fail-if-exists")
    _progress_option(p)

    # key ...
    key = top.add_parser("key", help="keys: put, get, delete, scan, txn")
    ks = key.add_subparsers(dest="cmd", metavar="SUBCOMMAND")
    ks.required = True
    p = leaf(ks, "put", commands.key_put, "create or replace a key")
    p.add_argument("vault")
    p.add_argument("key")
    p.add_argument("value", nargs="?", help="the value ('-' or omitted: stdin; or use --file)")
    p.add_argument("--file", "-f", help="read the value from a file")
    p.add_argument("--expected-version", type=int, help="compare-and-set; 0 = the key must not exist")
    p = leaf(ks, "get", commands.key_get, "read a key (the value is hidden unless --reveal)")
    p.add_argument("vault")
    p.add_argument("key")
    p.add_argument("--reveal", action="store_true", help="print the value")
    p.add_argument("--raw", action="store_true", help="write only the value's bytes to stdout")
    _consistency_option(p)
    p = leaf(ks, "delete", commands.key_delete, "delete a key")
    p.add_argument("vault")
    p.add_argument("key")
    p.add_argument("--expected-version", type=int)
    p = leaf(ks, "scan", commands.key_scan, "list keys by prefix (all pages unless --page-size/--page-token)")
    p.add_argument("vault")
    p.add_argument("--prefix", default="")
    p.add_argument("--page-size", type=int, default=0)
    p.add_argument("--page-token", default="")
    p.add_argument("--keys-only", action="store_true")
    p.add_argument("--reveal", action="store_true", help="include values")
    _consistency_option(p)
    p = leaf(ks, "txn", commands.key_txn, "apply puts/deletes from a JSON file atomically")
    p.add_argument("vault")
    p.add_argument("file", help='JSON: {"ops": [{"put": {"key": "a", "value": "x", "expected_version": 1}}, '
                                '{"delete": {"key": "b"}}]} ("-" for stdin)')

    # cluster ...
    cluster = top.add_parser("cluster", help="cluster: status, members, add, remove, limits")
    cs = cluster.add_subparsers(dest="cmd", metavar="SUBCOMMAND")
    cs.required = True
    p = leaf(cs, "status", commands.cluster_status, "status of a node")
    p.add_argument("--endpoint", help="ask this node (default: the first that answers)")
    leaf(cs, "members", commands.cluster_members, "list members")
    p = leaf(cs, "add", commands.cluster_add, "add a member")
    p.add_argument("node_id")
    p.add_argument("raft_addr")
    p.add_argument("grpc_addr", nargs="?")
    p = leaf(cs, "remove", commands.cluster_remove, "remove a member")
    p.add_argument("node_id")
    limits = cs.add_parser("limits", help="replicated limits: get, set")
    ls = limits.add_subparsers(dest="limits_cmd", metavar="get|set")
    ls.required = True
    leaf(ls, "get", commands.limits_get, "show the limits")
    p = leaf(ls, "set", commands.limits_set, "change limits (unset options keep their value)")
    for name in ("max-vaults", "max-keys-per-vault", "max-value-size", "max-scan-results"):
        p.add_argument(f"--{name}", type=int, default=0)

    auth_commands.add_parsers(top, common)   # token ..., policy ...
    return parser


def _passthrough(argv: list[str]) -> int | None:
    """Server-side commands own their flags: dispatch before parsing."""
    if argv[:1] == ["serve"]:
        from vaultd import serve
        return int(serve.main(argv[1:]) or 0)
    if argv[:1] == ["dev"]:
        from vaultd import dev
        return int(dev.main(argv[1:]) or 0)
    if argv[:2] == ["config", "show"]:
        from vaultd import config
        return int(config.show_main(argv[2:]) or 0)
    return None


def client_from_args(args: argparse.Namespace) -> VaultClient:
    """Flags first, then the VAULTD_* environment (as VaultClient.from_env reads it)."""
    env = os.environ
    if args.token_file:
        token: str | None = read_token_file(args.token_file)
    elif env.get(ENV_TOKEN):
        token = env[ENV_TOKEN]
    else:
        token = read_token_file(env[ENV_TOKEN_FILE]) if env.get(ENV_TOKEN_FILE) else None
    return VaultClient(args.endpoints or default_endpoints(), timeout=args.timeout,
                       ca_file=args.ca_file or env.get(ENV_CA_FILE) or None,
                       cert_file=args.cert_file or env.get(ENV_CERT_FILE) or None,
                       key_file=args.key_file or env.get(ENV_KEY_FILE) or None, token=token,
                       insecure_plaintext=bool(args.insecure_plaintext)
                       or env.get(ENV_INSECURE_PLAINTEXT, "") in ("1", "true", "yes"))


def _report(error: Exception, output: str) -> None:
    if isinstance(error, VaultError):
        if output == "json":
            json.dump({"error": {"code": error.code.name, "reason": error.reason, "message": error.message,
                                 "metadata": error.metadata}}, sys.stderr)
            sys.stderr.write("\n")
        else:
            print(f"error: {error.reason}: {error.message}", file=sys.stderr)
    else:
        print(f"error: {error}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:  # `vaultd ... | head`: the reader left; silence the flush at exit too
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OTHER


def _main(args_list: list[str]) -> int:
    passed = _passthrough(args_list)
    if passed is not None:
        return passed
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except ParseError as exc:
        exc.parser.print_usage(sys.stderr)
        print(f"{exc.parser.prog}: error: {sanitize_usage_message(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # argparse: 0 for --help
        return int(exc.code or 0)
    try:
        with client_from_args(args) as client:
            args.handler(args, client)
    except VaultError as error:
        _report(error, args.output)
        return exit_code_for(error)
    except (commands.UsageError, ValueError) as error:
        _report(error, args.output)
        return EXIT_USAGE
    except BrokenPipeError:
        raise
    except OSError as error:
        _report(error, args.output)
        return EXIT_OTHER
    except KeyboardInterrupt:
        return 130
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

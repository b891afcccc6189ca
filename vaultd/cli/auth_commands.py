"""`vaultd token create|revoke|list|lookup` and `vaultd policy put|get|list|delete`.

Registered by vaultd.cli.main with one `add_parsers` call; handlers take (args, client) like every other
command, so errors map to the same exit codes (7 for UNAUTHENTICATED / PERMISSION_DENIED).

A policy file is JSON or TOML (by extension: .toml is TOML, anything else JSON; `-` is stdin, JSON):
    {"rules": [{"vault_glob": "app-*", "capabilities": ["read", "list"]}]}
    [[rules]]
    vault_glob = "app-*"
    capabilities = ["read", "list"]
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Callable
from typing import Any

from vaultd.cli.commands import UsageError
from vaultd.cli.render import print_fields, print_json, print_table
from vaultd.client import VaultClient, message_to_dict
from vaultd.v1 import auth_pb2

Handler = Callable[[argparse.Namespace, VaultClient], None]


def _when(ts: Any, present: bool) -> str:
    return ts.ToJsonString() if present else "never"


def _token_row(t: auth_pb2.Token) -> tuple[Any, ...]:
    return (t.token_id, t.name, list(t.policies), _when(t.created_at, t.HasField("created_at")),
            _when(t.expires_at, t.HasField("expires_at")), t.revoked)


def token_create(args: argparse.Namespace, client: VaultClient) -> None:
    created = client.create_token(args.name, args.policy or (), args.ttl)
    if args.output == "json":
        print_json(created)
        return
    print_fields([("token_id", created.token_id), ("token", created.secret),
                  ("policies", list(created.token.policies)),
                  ("expires", _when(created.token.expires_at, created.token.HasField("expires_at")))])
    print("the token is shown only now: store it safely", file=sys.stderr)


def token_revoke(args: argparse.Namespace, client: VaultClient) -> None:
    token = client.revoke_token(args.token_id)
    if args.output == "json":
        print_json(token)
        return
    print(f"revoked {token.token_id}")


def token_list(args: argparse.Namespace, client: VaultClient) -> None:
    tokens = client.list_tokens()
    if args.output == "json":
        print_json({"tokens": [_data(t) for t in tokens]})
        return
    print_table(["token_id", "name", "policies", "created", "expires", "revoked"], [_token_row(t) for t in tokens])


def token_lookup(args: argparse.Namespace, client: VaultClient) -> None:
    me = client.lookup_self()
    if args.output == "json":
        print_json(me)
        return
    print_fields(list(zip(("token_id", "name", "policies", "created", "expires", "revoked"), _token_row(me)))
                 + [("root", me.root)])


def read_policy_file(path: str) -> list[tuple[str, list[str]]]:
    """(vault_glob, capabilities) pairs from a JSON or TOML policy file; UsageError when malformed."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        doc = tomllib.loads(text) if path.endswith(".toml") else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path} is not valid {'TOML' if path.endswith('.toml') else 'JSON'}: {exc}") from None
    rules = doc.get("rules") if isinstance(doc, dict) else None
    if not isinstance(rules, list):
        raise UsageError(f'{path}: expected {{"rules": [{{"vault_glob": ..., "capabilities": [...]}}, ...]}}')
    out = []
    for i, rule in enumerate(rules):
        glob = rule.get("vault_glob") if isinstance(rule, dict) else None
        caps = rule.get("capabilities", []) if isinstance(rule, dict) else None
        if not isinstance(glob, str) or not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
            raise UsageError(f"{path}: rules[{i}] needs a string vault_glob and a list of capability strings")
        out.append((glob, caps))
    return out


def _show_policy(args: argparse.Namespace, policy: auth_pb2.Policy) -> None:
    if args.output == "json":
        print_json(policy)
        return
    print(f"policy {policy.name}")
    print_table(["vault_glob", "capabilities"], [(r.vault_glob, list(r.capabilities)) for r in policy.rules])


def policy_put(args: argparse.Namespace, client: VaultClient) -> None:
    _show_policy(args, client.put_policy(args.name, read_policy_file(args.file)))


def policy_get(args: argparse.Namespace, client: VaultClient) -> None:
    _show_policy(args, client.get_policy(args.name))


def policy_list(args: argparse.Namespace, client: VaultClient) -> None:
    policies = client.list_policies()
    if args.output == "json":
        print_json({"policies": [_data(p) for p in policies]})
        return
    print_table(["name", "rules"], [(p.name, [f"{r.vault_glob}: {','.join(r.capabilities)}" for r in p.rules])
                                    for p in policies])


def policy_delete(args: argparse.Namespace, client: VaultClient) -> None:
    client.delete_policy(args.name)
    if args.output != "json":
        print(f"deleted policy {args.name}")


def _data(message: Any) -> dict[str, Any]:
    return message_to_dict(message)


def add_parsers(top: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """The `token` and `policy` command groups; `common` carries the client options every leaf accepts."""
    def leaf(group: argparse._SubParsersAction, name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        p = group.add_parser(name, help=help, parents=[common])
        p.set_defaults(handler=handler)
        return p

    token = top.add_parser("token", help="tokens: create, revoke, list, lookup (all but lookup need admin)")
    ts = token.add_subparsers(dest="cmd", metavar="SUBCOMMAND")
    ts.required = True
    p = leaf(ts, "create", token_create, "create a token (its secret is printed once)")
    p.add_argument("name")
    p.add_argument("--policy", action="append", help="repeatable; the policies must exist")
    p.add_argument("--ttl", type=int, default=0, help="seconds until it expires (default 0: never)")
    p = leaf(ts, "revoke", token_revoke, "revoke a token by id")
    p.add_argument("token_id")
    leaf(ts, "list", token_list, "list tokens (never their secrets)")
    leaf(ts, "lookup", token_lookup, "show the token this command runs with")

    policy = top.add_parser("policy", help="policies: put, get, list, delete (admin)")
    ps = policy.add_subparsers(dest="cmd", metavar="SUBCOMMAND")
    ps.required = True
    p = leaf(ps, "put", policy_put, "create or replace a policy from a JSON or TOML file")
    p.add_argument("name")
    p.add_argument("file", help='{"rules": [{"vault_glob": "app-*", "capabilities": ["read"]}]} (.toml: TOML; '
                                '"-": stdin, JSON)')
    p = leaf(ps, "get", policy_get, "show a policy")
    p.add_argument("name")
    leaf(ps, "list", policy_list, "list policies")
    p = leaf(ps, "delete", policy_delete, "delete a policy (tokens naming it keep the name; it grants nothing)")
    p.add_argument("name")

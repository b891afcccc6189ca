"""Handlers for the client subcommands: each takes the parsed args and a VaultClient and prints the result.

Handlers return normally on success and let vaultd.client errors propagate: main() turns them into the
documented exit codes, so every command fails the same way.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

from vaultd.cli.render import (Progress, entry_dict, print_fields, print_json, print_table, value_text)
from vaultd.client import VaultClient, message_to_dict, txn_delete, txn_put
from vaultd.v1 import cluster_pb2, vault_pb2

Handler = Callable[[argparse.Namespace, VaultClient], None]


class UsageError(Exception):
    """A mistake in the command line or an input file that argparse could not catch (exit code 2)."""


def _json(args: argparse.Namespace) -> bool:
    return args.output == "json"


def _progress_enabled(args: argparse.Namespace) -> bool:
    if args.progress is not None:
        return bool(args.progress)
    return sys.stderr.isatty()


# --- vaults ---

def _show_vault(args: argparse.Namespace, vault: vault_pb2.Vault) -> None:
    if _json(args):
        print_json(vault)
        return
    print_fields([("name", vault.name), ("description", vault.description), ("owner", vault.owner),
                  ("tags", list(vault.tags)), ("keys", vault.key_count), ("bytes", vault.total_bytes),
                  ("created", vault.created_at), ("updated", vault.updated_at)])


def vault_create(args: argparse.Namespace, client: VaultClient) -> None:
    _show_vault(args, client.create_vault(args.name, args.description or "", args.owner or "", args.tag or ()))


def vault_get(args: argparse.Namespace, client: VaultClient) -> None:
    _show_vault(args, client.get_vault(args.name, args.consistency))


def vault_update(args: argparse.Namespace, client: VaultClient) -> None:
    tags = [] if args.clear_tags else args.tag
    if args.description is None and args.owner is None and tags is None:
        raise UsageError("vault update needs --description, --owner, --tag or --clear-tags")
    _show_vault(args, client.update_vault(args.name, description=args.description, owner=args.owner, tags=tags))


def vault_list(args: argparse.Namespace, client: VaultClient) -> None:
    if args.page_token or args.page_size:
        page = client.list_vaults(args.page_size, args.page_token, args.consistency)
        vaults, token = list(page.vaults), page.next_page_token
    else:
        vaults, token = list(client.iter_vaults(consistency=args.consistency)), ""
    if _json(args):
        print_json({"vaults": [_data(v) for v in vaults], "next_page_token": token})
        return
    print_table(["name", "keys", "bytes", "owner", "tags", "updated"],
                [(v.name, v.key_count, v.total_bytes, v.owner, list(v.tags), v.updated_at) for v in vaults])
    if token:
        print(f"next page: --page-token {token}", file=sys.stderr)


def vault_delete(args: argparse.Namespace, client: VaultClient) -> None:
    deleted = client.delete_vault(args.name)
    if _json(args):
        print_json({"name": args.name, "deleted_keys": deleted})
    else:
        print(f"deleted vault {args.name} ({deleted} keys)")


def vault_copy(args: argparse.Namespace, client: VaultClient) -> None:
    copied = client.copy_vault(args.source, args.destination)
    if _json(args):
        print_json({"source": args.source, "destination": args.destination, "copied_keys": copied})
    else:
        print(f"copied {copied} keys from {args.source} to {args.destination}")


def vault_stats(args: argparse.Namespace, client: VaultClient) -> None:
    stats = client.vault_stats(args.name)
    if _json(args):
        print_json(stats)
        return
    print_fields([("name", stats.name), ("keys", stats.key_count), ("bytes", stats.total_bytes),
                  ("avg key size", stats.avg_key_size), ("avg value size", stats.avg_value_size),
                  ("last accessed", stats.last_accessed), ("accesses (24h)", stats.access_count_24h),
                  ("members reporting", list(stats.reporting_members)),
                  ("members not answering", list(stats.unreachable_members) or "-")])
    if stats.top_keys:
        print()
        print_table(["key", "accesses", "last accessed"],
                    [(k.key, k.access_count, k.last_accessed) for k in stats.top_keys])


@contextlib.contextmanager
def _secret_file(path: str) -> Iterator[IO[bytes]]:
    """A file of secrets at `path`, owner-only (0600) from its first byte.

    Written to a new temporary file beside `path` (mkstemp: 0600, O_EXCL, never an existing file or a
    symlink) and renamed over `path` once complete. So an export is never readable by others, not even
    briefly (as with chmod after open) nor because an older file at `path` was 0644; a symlink planted at
    `path` is replaced, not followed; and a failed export leaves any previous file as it was.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, partial = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".partial", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise


def vault_export(args: argparse.Namespace, client: VaultClient) -> None:
    progress = Progress(f"export {args.name}", None, _progress_enabled(args))
    if args.file and args.file != "-":
        with _secret_file(args.file) as out:
            total = client.export_to(args.name, out, args.consistency, progress=progress.update)
    else:
        total = client.export_to(args.name, sys.stdout.buffer, args.consistency, progress=progress.update)
        sys.stdout.buffer.flush()
    progress.finish()
    if args.file and args.file != "-":
        if _json(args):
            print_json({"name": args.name, "file": args.file, "bytes": total})
        else:
            print(f"exported vault {args.name} to {args.file} ({total} bytes)")


def vault_import(args: argparse.Namespace, client: VaultClient) -> None:
    source: bytes | IO[bytes]
    if args.file in (None, "-"):
        if sys.stdin.isatty():
            raise UsageError("no input: give a file, or pipe the file into stdin")
        if sys.stdin.buffer.seekable():
            source = sys.stdin.buffer
        else:  # a pipe cannot be re-read: hold it (imports are at most 64 MiB) so a retry can resend it
            source = sys.stdin.buffer.read()
    else:
        source = open(args.file, "rb")
    total = len(source) if isinstance(source, bytes) else os.fstat(source.fileno()).st_size
    progress = Progress(f"import {args.name}", total, _progress_enabled(args))
    try:
        result = client.import_vault(args.name, source, args.format, args.mode, progress=progress.update)
    finally:
        if not isinstance(source, bytes) and source is not sys.stdin.buffer:
            source.close()
    progress.finish()
    if _json(args):
        print_json({"name": args.name, **_data(result)})
    else:
        print(f"imported {result.imported} keys into {args.name} "
              f"({result.overwritten} overwritten, {result.skipped} skipped)")


# --- keys ---

def _read_value(args: argparse.Namespace) -> bytes:
    given = [v for v in (args.value is not None and args.value != "-", args.file is not None) if v]
    if len(given) > 1:
        raise UsageError("give the value as an argument or with --file, not both")
    if args.file is not None:
        with open(args.file, "rb") as f:
            return f.read()
    if args.value is not None and args.value != "-":
        return args.value.encode()
    if sys.stdin.isatty():
        raise UsageError("no value: give it as an argument, with --file, or on stdin")
    return sys.stdin.buffer.read()


def key_put(args: argparse.Namespace, client: VaultClient) -> None:
    result = client.put(args.vault, args.key, _read_value(args), args.expected_version)
    if _json(args):
        print_json({"vault": args.vault, "key": args.key, **_data(result)})
    else:
        print(f"put {args.vault}/{args.key} version {result.version} (revision {result.revision})")


def key_get(args: argparse.Namespace, client: VaultClient) -> None:
    entry = client.get(args.vault, args.key, args.consistency)
    if args.raw:
        sys.stdout.buffer.write(entry.value)
        sys.stdout.buffer.flush()
        return
    if _json(args):
        print_json(entry_dict(entry, args.reveal))
        return
    print_fields([("key", entry.key),
                  ("value", value_text(entry.value) if args.reveal else f"<hidden, {len(entry.value)} bytes; "
                                                                          "--reveal to show>"),
                  ("version", entry.version), ("revision", entry.revision),
                  ("created", entry.created_at), ("updated", entry.updated_at)])


def key_delete(args: argparse.Namespace, client: VaultClient) -> None:
    deleted = client.delete(args.vault, args.key, args.expected_version)
    if _json(args):
        print_json({"vault": args.vault, "key": args.key, "deleted": deleted})
    else:
        print(f"deleted {args.vault}/{args.key}" if deleted else f"{args.vault}/{args.key} did not exist")


def key_scan(args: argparse.Namespace, client: VaultClient) -> None:
    keys_only = args.keys_only or not args.reveal
    if args.page_token or args.page_size:
        page = client.scan(args.vault, args.prefix, args.page_size, args.page_token, keys_only, args.consistency)
        entries, token = list(page.entries), page.next_page_token
    else:
        entries = list(client.iter_scan(args.vault, args.prefix, args.page_size, keys_only, args.consistency))
        token = ""
    if _json(args):
        print_json({"entries": [entry_dict(e, args.reveal, keys_only) for e in entries],
                    "next_page_token": token})
        return
    headers = ["key", "version", "updated"] + (["value"] if args.reveal and not args.keys_only else [])
    print_table(headers, [(e.key, e.version, e.updated_at) + ((value_text(e.value),) if len(headers) == 4 else ())
                          for e in entries])
    if token:
        print(f"next page: --page-token {token}", file=sys.stderr)


def _txn_ops(path: str) -> list[vault_pb2.TxnOp]:
    """Ops from a JSON file: {"ops": [...]} or a bare list; each {"put": {...}} or {"delete": {...}}.

    A put's value is "value" (text) or "value_base64" (bytes); "expected_version" is optional for both.
    """
    try:
        with (sys.stdin if path == "-" else open(path, encoding="utf-8")) as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read txn file {path}: {exc}") from None
    ops_doc = doc.get("ops") if isinstance(doc, dict) else doc
    if not isinstance(ops_doc, list) or not ops_doc:
        raise UsageError("txn file must hold a non-empty list of ops (or {\"ops\": [...]})")
    ops: list[vault_pb2.TxnOp] = []
    for i, op in enumerate(ops_doc):
        if not isinstance(op, dict) or len(op) != 1 or next(iter(op)) not in ("put", "delete"):
            raise UsageError(f"txn op {i}: expected {{\"put\": {{...}}}} or {{\"delete\": {{...}}}}")
        kind, body = next(iter(op.items()))
        if not isinstance(body, dict) or not isinstance(body.get("key"), str):
            raise UsageError(f"txn op {i}: missing \"key\"")
        expected = body.get("expected_version")
        if expected is not None and not isinstance(expected, int):
            raise UsageError(f"txn op {i}: expected_version must be an integer")
        if kind == "delete":
            ops.append(txn_delete(body["key"], expected))
            continue
        if ("value" in body) == ("value_base64" in body):
            raise UsageError(f"txn op {i}: a put needs exactly one of \"value\" or \"value_base64\"")
        try:
            value = body["value"].encode() if "value" in body else base64.b64decode(body["value_base64"],
                                                                                    validate=True)
        except (AttributeError, ValueError):
            raise UsageError(f"txn op {i}: value must be a string (value_base64: valid base64)") from None
        ops.append(txn_put(body["key"], value, expected))
    return ops


def key_txn(args: argparse.Namespace, client: VaultClient) -> None:
    result = client.txn(args.vault, _txn_ops(args.file))
    if _json(args):
        print_json({"vault": args.vault, **_data(result)})
        return
    print(f"txn committed at revision {result.revision}")
    print_table(["key", "version", "deleted"], [(r.key, r.version, r.deleted) for r in result.results])


# --- cluster ---

def _members_table(members: Any) -> None:
    print_table(["node", "raft", "grpc", "voter", "reachable", "match index"],
                [(m.node_id, m.raft_addr, m.grpc_addr, m.voter, m.reachable, m.match_index) for m in members])


def cluster_status(args: argparse.Namespace, client: VaultClient) -> None:
    status = client.status(endpoint=args.endpoint)
    if _json(args):
        print_json(status)
        return
    print_fields([("node", status.node_id), ("role", status.role), ("leader", status.leader_id or "-"),
                  ("ready", status.ready), ("term", status.term), ("commit index", status.commit_index),
                  ("applied index", status.applied_index), ("snapshot index", status.snapshot_index),
                  ("state hash", status.state_hash), ("raft", status.raft_addr), ("grpc", status.grpc_addr)])
    print()
    _members_table(status.members)


def cluster_members(args: argparse.Namespace, client: VaultClient) -> None:
    status = client.status()
    if _json(args):
        print_json({"leader_id": status.leader_id, "members": [_data(m) for m in status.members]})
        return
    _members_table(status.members)


def cluster_add(args: argparse.Namespace, client: VaultClient) -> None:
    result = client.add_member(args.node_id, args.raft_addr, args.grpc_addr or "")
    if _json(args):
        print_json(result)
    else:
        print(f"added member {args.node_id}")
        _members_table(result.members)


def cluster_remove(args: argparse.Namespace, client: VaultClient) -> None:
    result = client.remove_member(args.node_id)
    if _json(args):
        print_json(result)
    else:
        print(f"removed member {args.node_id}")
        _members_table(result.members)


def _show_limits(args: argparse.Namespace, limits: cluster_pb2.Limits) -> None:
    if _json(args):
        print_json(limits)
    else:
        print_fields([("max vaults", limits.max_vaults), ("max keys per vault", limits.max_keys_per_vault),
                      ("max value size", limits.max_value_size), ("max scan results", limits.max_scan_results)])


def limits_get(args: argparse.Namespace, client: VaultClient) -> None:
    _show_limits(args, client.get_limits())


def limits_set(args: argparse.Namespace, client: VaultClient) -> None:
    values = (args.max_vaults, args.max_keys_per_vault, args.max_value_size, args.max_scan_results)
    if not any(values):
        raise UsageError("limits set needs at least one --max-* option")
    _show_limits(args, client.set_limits(*values))


def _data(message: Any) -> dict[str, Any]:
    return message_to_dict(message)

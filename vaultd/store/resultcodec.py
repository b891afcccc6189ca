"""Serialization of command results for the replicated request table (exactly-once retries).

A retried request must get back the original outcome, possibly long after it was applied and on another node,
so results are stored in the database and are part of the replicated state (and of state_hash). The encoding
is canonical JSON (sorted keys, no whitespace) of the result dataclasses tagged by class name: explicit,
deterministic and readable; results are small (no values in them).
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from vaultd.store import results as r
from vaultd.store.errors import StoreError

_TYPES: dict[str, type] = {cls.__name__: cls for cls in (
    r.Limits, r.VaultInfo, r.MemberRecord, r.PutResult, r.DeleteResult, r.DeleteVaultResult, r.CopyVaultResult,
    r.TxnOpResult, r.TxnResult, r.ImportStaged, r.ImportResult, r.PolicyRule, r.PolicyInfo, r.TokenInfo)}
_FIELDS = {cls: tuple(f.name for f in fields(cls)) for cls in _TYPES.values()}


def _enc(value: Any) -> Any:
    names = _FIELDS.get(type(value))
    if names is not None:
        out = {name: _enc(getattr(value, name)) for name in names}
        out["@"] = type(value).__name__
        return out
    if isinstance(value, (tuple, list)):
        return [_enc(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    raise TypeError(f"result type {type(value).__name__} is not serializable")


def _dec(value: Any) -> Any:
    if isinstance(value, dict):
        cls = _TYPES[value["@"]]
        return cls(**{k: _dec(v) for k, v in value.items() if k != "@"})
    if isinstance(value, list):
        return tuple(_dec(v) for v in value)
    return value


def encode_result(result: r.Result) -> bytes:
    if isinstance(result, r.Err):
        e = result.error
        doc: dict[str, Any] = {"err": {"reason": e.reason, "message": e.message, "metadata": e.metadata}}
    else:
        doc = {"ok": _enc(result.value)}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def decode_result(data: bytes) -> r.Result:
    doc = json.loads(data)
    if "err" in doc:
        e = doc["err"]
        return r.Err(StoreError.restore(e["reason"], e["message"], e["metadata"]))
    return r.Ok(_dec(doc["ok"]))

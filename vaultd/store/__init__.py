"""vaultd.store: the pure, deterministic replicated state machine (SQLite via apsw). See DESIGN.md."""

from vaultd.store import commands, errors
from vaultd.store.commands import Batch, Envelope, ImportMode, decode_batch, encode_batch
from vaultd.store.errors import StorageFailure, StoreError
from vaultd.store.exchange import ImportFormat, parse_import
from vaultd.store.machine import StateMachine
from vaultd.store.reader import Reader
from vaultd.store.results import (DEFAULT_LIMITS, CopyVaultResult, DeleteResult, DeleteVaultResult, Entry, Err,
                                  ImportResult, ImportStaged, Limits, MemberRecord, Ok, PutResult, Result,
                                  SnapshotInfo, TxnOpResult, TxnResult, VaultInfo)
from vaultd.store.stats import AccessStats, KeyAccess, LocalAccessStats, VaultStats, combine_stats
from vaultd.store.validation import validate_key, validate_value, validate_vault_name

__all__ = [
    "AccessStats", "Batch", "CopyVaultResult", "DEFAULT_LIMITS", "DeleteResult", "DeleteVaultResult", "Entry",
    "Envelope", "Err", "ImportFormat", "ImportMode", "ImportResult", "ImportStaged", "KeyAccess", "Limits",
    "LocalAccessStats", "MemberRecord", "Ok", "PutResult", "Reader", "Result", "SnapshotInfo", "StateMachine",
    "StorageFailure", "StoreError", "TxnOpResult", "TxnResult", "VaultInfo", "VaultStats", "combine_stats",
    "commands", "decode_batch", "encode_batch", "errors", "parse_import", "validate_key", "validate_value",
    "validate_vault_name",
]

"""Records the store hands out: command results, read results and the replicated settings.

All are small frozen dataclasses so results can be compared across replicas, stored for exactly-once retries
(see resultcodec) and passed between threads freely. Timestamps are integers in nanoseconds since the Unix
epoch, taken from the proposing node's batch timestamp, never from the applying node's clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar, Union

from vaultd.store.errors import StoreError

T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    """Replicated bounds, enforced inside apply. In SetLimits a 0 field means "keep the current value"."""

    max_vaults: int = 1_000
    max_keys_per_vault: int = 10_000
    max_value_size: int = 1 << 20
    max_scan_results: int = 1_000


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class VaultInfo:
    name: str
    description: str
    owner: str
    tags: tuple[str, ...]
    created_at: int
    updated_at: int
    key_count: int
    total_bytes: int          # sum of value sizes
    total_key_bytes: int      # sum of UTF-8 key sizes (for the average key size statistic)


@dataclass(frozen=True)
class Entry:
    key: str
    value: bytes = field(repr=False)  # a secret (never in a repr); b"" when a scan asked for keys_only
    version: int
    created_at: int
    updated_at: int
    revision: int             # Raft index of the key's last change


@dataclass(frozen=True)
class MemberRecord:
    node_id: str
    raft_addr: str
    grpc_addr: str
    voter: bool


@dataclass(frozen=True)
class PutResult:
    version: int
    revision: int


@dataclass(frozen=True)
class DeleteResult:
    deleted: bool
    revision: int


@dataclass(frozen=True)
class DeleteVaultResult:
    deleted_keys: int


@dataclass(frozen=True)
class CopyVaultResult:
    copied_keys: int


@dataclass(frozen=True)
class TxnOpResult:
    key: str
    version: int              # new version for a put; 0 for a delete
    deleted: bool             # for a delete: whether the key existed


@dataclass(frozen=True)
class TxnResult:
    results: tuple[TxnOpResult, ...]
    revision: int


@dataclass(frozen=True)
class ImportStaged:
    """Outcome of ImportBegin/ImportChunk: how many distinct keys are staged so far, and chunks received."""

    staged_entries: int
    chunks: int


@dataclass(frozen=True)
class ImportResult:
    imported: int             # keys created
    skipped: int              # existing keys left alone (skip mode, or overwrite with an identical value)
    overwritten: int          # existing keys replaced with a different value


@dataclass(frozen=True)
class PolicyRule:
    """`capabilities` on every vault whose name matches `vault_glob` (`*` and `?` wildcards)."""

    vault_glob: str
    capabilities: tuple[str, ...]


@dataclass(frozen=True)
class PolicyInfo:
    name: str
    rules: tuple[PolicyRule, ...]
    created_at: int
    updated_at: int


@dataclass(frozen=True)
class TokenInfo:
    """A token as stored, without its secret hash (results and listings never carry it)."""

    token_id: str
    name: str
    policies: tuple[str, ...]
    created_at: int
    expires_at: int           # 0 = never
    revoked: bool


@dataclass(frozen=True)
class SnapshotInfo:
    path: str
    index: int
    term: int
    size: int                 # bytes of the whole snapshot file
    checksum: str             # sha256 hex of the embedded database image


@dataclass(frozen=True)
class Ok(Generic[T]):
    value: T
    ok = True

    def unwrap(self) -> T:
        return self.value


@dataclass(frozen=True)
class Err:
    error: StoreError
    ok = False

    def unwrap(self) -> object:
        raise self.error


Result = Union[Ok, Err]

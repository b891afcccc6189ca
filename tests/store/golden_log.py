"""The golden log: one batch per command type, encoded once and committed as bytes (tests/store/golden/).

    python -m tests.store.golden_log      # writes golden/log_v1.{hex,json} and snapshot_v1.db; only on purpose

Why committed bytes: a round-trip test passes even if a field of log.proto is renumbered, yet every replica
and every journal on disk would then decode old entries into different commands. These bytes were written by
the version that introduced them and must decode to exactly these commands, and apply to exactly this state
hash, in every later version; likewise the snapshot file of that state must restore to the same hash (a
follower behind the log start receives such a file from a leader of another version during a rolling upgrade). Regenerate only for a deliberate, documented format change (and then keep the
old file too, as log_v<N>).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from vaultd.store import commands as c
from vaultd.store.machine import StateMachine
from vaultd.store.results import PolicyRule

GOLDEN = Path(__file__).resolve().parent / "golden"
T0 = 1_764_806_400_000_000_000   # 2025-12-04T00:00:00Z, in ns: timestamps travel in the batch
SHA = "ab" * 32


def batches() -> list[c.Batch]:
    """Every command type (Unknown is decode-only), with optional fields both set and unset."""
    cmds: list[c.Command] = [
        c.SetLimits(max_vaults=100, max_keys_per_vault=1000, max_value_size=4096, max_scan_results=50,
                    only_if_unset=True),
        c.SetMember("n1", "10.0.0.1:7000", "10.0.0.1:8000"),
        c.SetMember("n2", "10.0.0.2:7000", "10.0.0.2:8000", voter=False),
        c.CreateVault("app", description="d", owner="team", tags=("prod", "eu")),
        c.UpdateVault("app", description="new", owner=None, tags=()),
        c.Put("app", "k1", b"v1"),
        c.Put("app", "k1", b"v2", expected_version=1),
        c.Put("app", "k2", b"\x00\xff"),
        c.Delete("app", "k2", expected_version=1),
        c.Txn("app", (c.TxnPut("t1", b"x"), c.TxnPut("k1", b"v3", expected_version=2), c.TxnDelete("missing"),
                      c.TxnDelete("t1", expected_version=1))),
        c.CopyVault("app", "app-copy"),
        c.Import("imp", c.ImportMode.FAIL_IF_EXISTS, (c.ImportEntry("a", b"1"), c.ImportEntry("b", b"2"))),
        c.ImportBegin("imp-1", "staged", c.ImportMode.OVERWRITE),
        c.ImportChunk("imp-1", (c.ImportEntry("s", b"3"),), seq=0),
        c.ImportCommit("imp-1", chunk_count=1),
        c.ImportBegin("imp-2", "staged", c.ImportMode.SKIP_EXISTING),
        c.ImportChunk("imp-2", (c.ImportEntry("s", b"4"),)),
        c.ImportCommit("imp-2"),
        c.PutPolicy("readers", (PolicyRule("app*", ("read", "list")), PolicyRule("*", ()))),
        c.CreateToken("0123456789abcdef", "ci", ("readers",), SHA, ttl_seconds=3600),
        c.CreateToken("fedcba9876543210", "forever", (), SHA),
        c.RevokeToken("fedcba9876543210"),
        c.DeletePolicy("readers"),
        c.DeleteVault("app-copy"),
        c.RemoveMember("n2"),
        c.Noop(),
        c.Put("app", "k1", b"rejected", expected_version=99),   # a rejection is part of the history too
    ]
    return [c.Batch(timestamp_ns=T0 + i * 1_000_000, commands=(c.Envelope(f"req-{i}" if i % 3 else "", cmd),))
            for i, cmd in enumerate(cmds)]


def apply_all(payloads: list[bytes], snapshot_to: Path | None = None) -> tuple[str, list[list[str]]]:
    """(state hash, per entry the result kinds) after applying the payloads to a new store; optionally the
    store's snapshot file is written to `snapshot_to`."""
    with tempfile.TemporaryDirectory() as tmp:
        machine = StateMachine(str(Path(tmp) / "state.db"))
        try:
            kinds = []
            for index, payload in enumerate(payloads, start=1):
                results = machine.apply_entry(index, 1, payload)
                kinds.append([type(r.error).__name__ if not r.ok else "Ok" for r in results])
            if snapshot_to is not None:
                machine.snapshot(str(snapshot_to))
            return machine.state_hash(), kinds
        finally:
            machine.close()


def main() -> None:
    payloads = [c.encode_batch(b) for b in batches()]
    GOLDEN.mkdir(exist_ok=True)
    state_hash, kinds = apply_all(payloads, snapshot_to=GOLDEN / "snapshot_v1.db")
    (GOLDEN / "log_v1.hex").write_text("".join(p.hex() + "\n" for p in payloads))
    rows = ",\n".join(f"  {json.dumps(k)}" for k in kinds)
    (GOLDEN / "log_v1.json").write_text(f'{{"state_hash": "{state_hash}",\n "results": [\n{rows}\n]}}\n')


if __name__ == "__main__":
    main()

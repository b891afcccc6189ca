"""Wire compatibility: the committed golden log (tests/store/golden, written by tests/store/golden_log.py)
decodes to exactly the commands that wrote it and applies to exactly the recorded state hash. A renumbered
or retyped field in log.proto, a changed codec or a changed apply fails here, not on a running cluster."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.store.golden_log import GOLDEN, apply_all, batches
from vaultd.store import commands as c
from vaultd.store.machine import StateMachine


def _committed() -> list[bytes]:
    return [bytes.fromhex(line) for line in (GOLDEN / "log_v1.hex").read_text().split()]


def test_committed_entries_decode_to_the_commands_that_wrote_them() -> None:
    payloads = _committed()
    assert [c.decode_batch(p) for p in payloads] == batches()


def test_committed_entries_apply_to_the_recorded_state() -> None:
    expected = json.loads((GOLDEN / "log_v1.json").read_text())
    state_hash, results = apply_all(_committed())
    assert results == expected["results"]
    assert state_hash == expected["state_hash"]


def test_this_version_still_writes_the_same_bytes() -> None:
    """Not required for compatibility (decoding is), but a change here means the encoding changed: check
    that old entries still decode before regenerating anything."""
    assert [c.encode_batch(b) for b in batches()] == _committed()


def test_the_committed_snapshot_restores_to_the_recorded_state(tmp_path: Path) -> None:
    expected = json.loads((GOLDEN / "log_v1.json").read_text())
    copy = tmp_path / "snapshot.db"            # restore may read it more than once; never touch the original
    shutil.copyfile(GOLDEN / "snapshot_v1.db", copy)
    machine = StateMachine(str(tmp_path / "state.db"))
    try:
        machine.restore(str(copy))
        assert machine.state_hash() == expected["state_hash"]
    finally:
        machine.close()

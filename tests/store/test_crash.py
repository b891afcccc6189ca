"""kill -9 in the middle of applying: the database holds exactly the entries up to its applied index."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vaultd.store import StateMachine

from .conftest import workload

ROOT = Path(__file__).resolve().parents[2]
SEED, ENTRIES = 11, 1500
CHILD = f"""
import sys
from tests.store.conftest import workload
from vaultd.store import StateMachine
m = StateMachine(sys.argv[1])
for i, payload in enumerate(workload({SEED}, {ENTRIES})):
    m.apply_entry(i + 1, 1, payload)
    if i == 200:
        print("ready", flush=True)
print("done", flush=True)
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("delay", [0.0, 0.03, 0.08])
def test_kill_during_apply_leaves_whole_entries_only(tmp_path: Path, delay: float) -> None:
    db = tmp_path / "state.db"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], cwd=ROOT, stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(30)
    entries = workload(SEED, ENTRIES)
    survivor = StateMachine(str(db))                    # opens (quick_check) and knows where it stopped
    reference = StateMachine(str(tmp_path / "ref.db"))
    try:
        applied = survivor.applied_index
        assert 201 <= applied <= len(entries)
        for i, payload in enumerate(entries[:applied]):
            reference.apply_entry(i + 1, 1, payload)
        assert survivor.state_hash() == reference.state_hash()
        for i, payload in enumerate(entries):         # replay from the start, as the Raft journal does
            survivor.apply_entry(i + 1, 1, payload)
            if i >= applied:
                reference.apply_entry(i + 1, 1, payload)
        assert survivor.state_hash() == reference.state_hash()
    finally:
        survivor.close()
        reference.close()

"""`vault export --file` writes a file of secrets: owner-only from its first byte, never through a symlink
planted at the path, and a failed export leaves the previous file alone. The CLI runs in-process against an
in-process server over a real single-node cluster."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.api.conftest import single_node  # noqa: F401 - the fixture, shared with the API tests
from vaultd import client as vc
from vaultd.cli.main import main

pytestmark = pytest.mark.timeout(60)

SECRET = b"sk_live_export_file_secret"


def test_export_file_is_0600_replaces_a_symlink_and_survives_a_failed_export(single_node, tmp_path: Path,
                                                                          monkeypatch) -> None:  # noqa: F811
    addr, _ = single_node
    monkeypatch.setenv("VAULTD_ENDPOINTS", addr)
    with vc.VaultClient([addr], timeout=5.0) as client:
        client.put("exp", "db/password", SECRET)
    old_umask = os.umask(0o022)  # a usual umask: a plain open() would make the file 0644
    try:
        _check_exports(tmp_path / "exports")
    finally:
        os.umask(old_umask)


def _check_exports(directory: Path) -> None:
    directory.mkdir()
    out = directory / "export.json"
    assert main(["vault", "export", "exp", "--file", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert json.loads(out.read_bytes())["vault"]["name"] == "exp"

    # An existing world-readable file is replaced by an owner-only one.
    out.chmod(0o644)
    assert main(["vault", "export", "exp", "--file", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600

    # A symlink planted at the path is replaced, not followed: its target is untouched.
    target = directory / "elsewhere"
    target.write_bytes(b"not yours")
    link = directory / "link.json"
    link.symlink_to(target)
    assert main(["vault", "export", "exp", "--file", str(link)]) == 0
    assert target.read_bytes() == b"not yours"
    assert not link.is_symlink() and stat.S_IMODE(link.stat().st_mode) == 0o600
    assert SECRET.decode() not in target.read_text()

    # A failed export (no such vault) leaves the previous export as it was and no partial file behind.
    before = out.read_bytes()
    assert main(["vault", "export", "missing", "--file", str(out)]) != 0
    assert out.read_bytes() == before
    assert sorted(p.name for p in directory.iterdir()) == ["elsewhere", "export.json", "link.json"]

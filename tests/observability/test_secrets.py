"""Secrets stay secret: a known value goes through every write path (put, txn, import in each format, copy)
and through failing requests that carry it, on a real 3-node cluster logging at DEBUG with every request
logged as slow; then no node log, error message, error metadata or /metrics page contains it."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable

import pytest

from tests.cluster import Cluster
from vaultd.client import VaultError, txn_delete, txn_put

pytestmark = pytest.mark.timeout(120)

SECRET = "sk_live_0bs3rv4b1l1ty_C4N4RY_91f2e7"


def _forms(secret: str) -> list[str]:
    """As text, and as protobuf-JSON (base64) or a hex dump of bytes would show it."""
    raw = secret.encode()
    return [secret, base64.b64encode(raw).decode(), raw.hex()]


def test_secret_never_logged_or_echoed(cluster_factory: Callable[..., Cluster]) -> None:
    cluster = cluster_factory(3, fsync=False, extra_args=["--log-level", "DEBUG", "--slow-request-ms", "0"])
    clients = itertools.cycle([cluster.client([n]) for n in cluster.nodes])
    c = clients.__next__  # each call goes to the next node, so every node serves (and logs) requests
    value = SECRET.encode()
    errors: list[VaultError] = []

    def expect_error(call: Callable[[], object]) -> None:
        with pytest.raises(VaultError) as info:
            call()
        errors.append(info.value)

    # --- every write path ---
    c().create_vault("payments")
    c().put("payments", "stripe", value)
    c().txn("payments", [txn_put("txn_key", value), txn_put("other", b"x")])
    c().import_vault("imported_dotenv", f"API_KEY={SECRET}\n".encode(), format="dotenv")
    c().import_vault("imported_flat", json.dumps({"api_key": SECRET}).encode(), format="flat_json")
    native = b"".join(c().export_vault("payments"))
    assert base64.b64encode(value) in native  # native export carries values base64-encoded
    c().import_vault("imported_native", native, format="native")
    assert c().copy_vault("payments", "payments_copy") == 3
    # --- reads that return it ---
    assert c().get("payments_copy", "stripe").value == value
    assert c().get("imported_dotenv", "API_KEY").value == value
    assert any(e.value == value for e in c().scan("imported_native").entries)

    # --- failing requests carrying it ---
    expect_error(lambda: c().put("payments", "stripe", value, expected_version=99))       # VERSION_MISMATCH
    expect_error(lambda: c().put("not a vault name!", "k", value))                        # INVALID_VAULT_NAME
    expect_error(lambda: c().put("payments", "big", value * (1024 * 1024 // len(value) + 1)))  # VALUE_TOO_LARGE
    expect_error(lambda: c().txn("payments", [txn_put("a", value), txn_delete("missing", 7)]))
    expect_error(lambda: c().import_vault("payments", f"stripe={SECRET}\n".encode(), format="dotenv"))
    expect_error(lambda: c().import_vault("bad_dotenv", f"{SECRET} no equals sign\n".encode(),
                                          format="dotenv"))                               # MALFORMED_IMPORT
    expect_error(lambda: c().import_vault("bad_json", ('{"k": "' + SECRET + '", ').encode(),
                                          format="flat_json"))
    expect_error(lambda: c().import_vault("bad_native", native[: len(native) // 2], format="native"))
    expect_error(lambda: c().copy_vault("payments", "payments_copy"))                    # VAULT_EXISTS
    assert {e.reason for e in errors} >= {"VERSION_MISMATCH", "INVALID_VAULT_NAME", "VALUE_TOO_LARGE",
                                          "MALFORMED_IMPORT", "VAULT_EXISTS"}

    # --- nothing anywhere echoes it ---
    pages = {n.node_id: cluster.metrics(n) for n in cluster.nodes}
    for node in cluster.nodes:  # clean shutdown: every log line written
        assert cluster.stop(node) == 0
    logs = cluster.logs()
    assert all(text.count("slow_request") >= 5 and "stopped" in text for text in logs.values()), "logs exercised"
    for form in _forms(SECRET):
        for node_id, text in logs.items():
            assert form not in text, f"{node_id} log contains the secret ({form})"
        for node_id, text in pages.items():
            assert form not in text, f"{node_id} /metrics contains the secret"
        for err in errors:
            assert form not in str(err) and form not in json.dumps(err.metadata), (err.reason, str(err))

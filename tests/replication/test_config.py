"""vaultd.config: precedence file < env < flags with recorded sources, validation, `config show` redaction."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster import REPO
from vaultd import config
from vaultd.config import ConfigError

TOML = """
node_id = "from-file"
data_dir = "/var/lib/vaultd"
raft_addr = "127.0.0.1:7000"
peers = ["n2=127.0.0.1:7001", "127.0.0.1:7002"]
grpc_addr = "127.0.0.1:8000"
log_level = "WARNING"
[limits]
max_keys_per_vault = 50
[raft]
append_entries_period = 0.02
"""


def test_precedence_and_sources(tmp_path: Path) -> None:
    f = tmp_path / "vaultd.toml"
    f.write_text(TOML)
    cfg = config.load(["--config", str(f), "--node-id", "n1", "--unsafe-no-fsync"],
                      env={"VAULTD_NODE_ID": "from-env", "VAULTD_LOG_LEVEL": "DEBUG", "VAULTD_SLOW_REQUEST_MS": "5"})
    assert cfg.node_id == "n1" and cfg.sources["node_id"] == "flag --node-id"
    assert cfg.log_level == "DEBUG" and cfg.sources["log_level"] == "env VAULTD_LOG_LEVEL"
    assert cfg.slow_request_seconds == 0.005
    assert cfg.data_dir == "/var/lib/vaultd" and cfg.sources["data_dir"] == f"file {f}"
    assert cfg.unsafe_no_fsync is True and cfg.sources["unsafe_no_fsync"] == "flag --unsafe-no-fsync"
    assert cfg.peer_addrs == ["127.0.0.1:7001", "127.0.0.1:7002"] and cfg.peer_ids == {"127.0.0.1:7001": "n2"}
    assert cfg.bootstrap_limits() == {"max_keys_per_vault": 50}
    assert cfg.append_entries_period == 0.02 and cfg.sources["max_vaults"] == "default"
    cfg.validate()


def test_repeated_and_comma_separated_peers_from_flags_and_env() -> None:
    cfg = config.load(["--peer", "a:1", "--peer", "b:2,c:3"], env={})
    assert cfg.peers == ["a:1", "b:2", "c:3"]
    assert config.load([], env={"VAULTD_PEERS": "x:1, y:2"}).peers == ["x:1", "y:2"]


@pytest.mark.parametrize("argv, env, message", [
    ([], {"VAULTD_SLOW_REQUEST_MS": "soon"}, "slow_request_ms (env VAULTD_SLOW_REQUEST_MS)"),
    (["--unsafe-no-fsync"], {"VAULTD_UNSAFE_NO_FSYNC": "maybe"}, "unsafe_no_fsync"),
])
def test_malformed_values_name_setting_and_source(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config.load(argv, env=env)


def test_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('node_id = "n1"\nfavourite_colour = "blue"\n')
    with pytest.raises(ConfigError, match="unknown setting favourite_colour"):
        config.load(["--config", str(bad)], env={})
    bad.write_text("[limits]\nmax_vaults = 'many'\n")
    with pytest.raises(ConfigError, match="max_vaults"):
        config.load(["--config", str(bad)], env={})
    with pytest.raises(ConfigError, match="cannot read config file"):
        config.load(["--config", str(tmp_path / "missing.toml")], env={})


def test_validate() -> None:
    base = ["--node-id", "n1", "--data-dir", "/d", "--raft-addr", "127.0.0.1:1", "--grpc-addr", "127.0.0.1:2"]
    config.load(base, env={}).validate()
    with pytest.raises(ConfigError, match="node_id is required"):
        config.load(base[2:], env={}).validate()
    with pytest.raises(ConfigError, match="raft_addr"):
        config.load(base[:5] + ["nonsense"] + base[6:], env={}).validate()
    with pytest.raises(ConfigError, match="other members only"):
        config.load(base + ["--peer", "127.0.0.1:1"], env={}).validate()
    with pytest.raises(ConfigError, match="log_format"):
        config.load(base + ["--log-format", "xml"], env={}).validate()


def test_secret_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAULTD_CLUSTER_SECRET", raising=False)
    secret = tmp_path / "secret"
    secret.write_text("hunter2-line\nignored second line\n")
    secret.chmod(0o600)
    assert config.load(["--cluster-secret-file", str(secret)], env={}).read_secret() == "hunter2-line"
    assert config.load([], env={}).read_secret() is None
    with pytest.raises(ConfigError, match="cannot read cluster secret file"):
        config.load(["--cluster-secret-file", str(tmp_path / "nope")], env={}).read_secret()
    monkeypatch.setenv("VAULTD_CLUSTER_SECRET", "from-env")
    assert config.load([], env={}).read_secret() == "from-env"
    # flags win over the environment, as for every other setting; the environment wins over the TOML file
    flagged = config.load(["--cluster-secret-file", str(secret)], env={})
    assert flagged.read_secret() == "hunter2-line"
    assert ("cluster_secret", "<redacted>", f"file {secret}") in config.effective(flagged)
    toml = tmp_path / "vaultd.toml"
    toml.write_text(f'cluster_secret_file = "{secret}"\n')
    from_file = config.load(["--config", str(toml)], env={})
    assert from_file.read_secret() == "from-env"
    assert ("cluster_secret", "<redacted>", "env VAULTD_CLUSTER_SECRET") in config.effective(from_file)


def test_config_show_prints_sources_and_redacts_the_secret(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("TOP-SECRET-VALUE\n")
    secret.chmod(0o600)
    f = tmp_path / "vaultd.toml"
    f.write_text(TOML)
    env = {"PATH": "/usr/bin:/bin", "VAULTD_LOG_FORMAT": "json"}
    out = subprocess.run([sys.executable, "-m", "vaultd.config", "--config", str(f), "--cluster-secret-file",
                          str(secret), "--grpc-addr", "127.0.0.1:9999", "--json"],
                         cwd=str(REPO), env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "TOP-SECRET-VALUE" not in out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert doc["grpc_addr"] == {"value": "127.0.0.1:9999", "source": "flag --grpc-addr"}
    assert doc["log_format"] == {"value": "json", "source": "env VAULTD_LOG_FORMAT"}
    assert doc["limits.max_keys_per_vault"] == {"value": 50, "source": f"file {f}"}
    assert doc["cluster_secret"] == {"value": "<redacted>", "source": f"file {secret}"}
    text = subprocess.run([sys.executable, "-m", "vaultd.config", "--config", str(f)], cwd=str(REPO), env=env,
                          capture_output=True, text=True, timeout=60)
    assert text.returncode == 0 and "node_id" in text.stdout and f"(file {f})" in text.stdout
    bad = subprocess.run([sys.executable, "-m", "vaultd.config", "--slow-request-ms", "x"], cwd=str(REPO),
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "slow_request_ms" in bad.stderr


BASE = ["--node-id", "n1", "--data-dir", "/tmp/x", "--raft-addr", "127.0.0.1:1", "--grpc-addr", "127.0.0.1:2"]


@pytest.mark.parametrize("argv, message", [
    ([], "--insecure-plaintext"),                                           # names both choices
    ([], "--tls-cert FILE --tls-key FILE"),
    (["--insecure-plaintext"], "--root-token-file FILE"),
    (["--insecure-plaintext"], "--insecure-no-auth"),
    (["--tls-cert", "c.pem", "--insecure-no-auth"], "go together"),
    (["--tls-client-ca", "ca.pem", "--insecure-plaintext", "--insecure-no-auth"], "mTLS"),
    (["--tls-cert", "c", "--tls-key", "k", "--insecure-plaintext", "--insecure-no-auth"], "contradicts"),
    (["--insecure-plaintext", "--root-token-file", "t", "--insecure-no-auth"], "contradicts"),
    (["--insecure-plaintext", "--insecure-no-auth", "--peer-tls-cert", "c"], "go together"),
])
def test_secure_by_default_refuses_without_tls_and_auth(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("-", r"\-")):
        config.load(BASE + argv, env={}).validate_security()


def test_insecure_modes_and_secure_settings_pass() -> None:
    config.load(BASE + ["--insecure-plaintext", "--insecure-no-auth"], env={}).validate_security()
    cfg = config.load(BASE + ["--tls-cert", "c", "--tls-key", "k", "--tls-client-ca", "ca",
                              "--root-token-file", "t"], env={})
    cfg.validate_security()
    assert cfg.tls_enabled and cfg.auth_enabled and not cfg.peer_tls_enabled


def test_secret_files_must_be_private_and_long(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("x" * 40 + "\n")
    secret.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        config.load(["--cluster-secret-file", str(secret)], env={}).read_secret()
    token = tmp_path / "root-token"
    token.write_text("short\n")
    token.chmod(0o604)
    with pytest.raises(ConfigError, match="group or others"):
        config.load(["--root-token-file", str(token)], env={}).read_root_token()
    token.chmod(0o600)
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        config.load(["--root-token-file", str(token)], env={}).read_root_token()
    token.write_text("t" * 32 + "\n")
    assert config.load(["--root-token-file", str(token)], env={}).read_root_token() == "t" * 32
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        config.check_secret_strength("short", "the cluster secret")


def test_serve_refuses_a_short_cluster_secret(tmp_path: Path) -> None:
    from vaultd import serve
    secret = tmp_path / "secret"
    secret.write_text("too-short\n")
    secret.chmod(0o600)
    code = serve.main(BASE + ["--insecure-plaintext", "--insecure-no-auth", "--cluster-secret-file", str(secret)])
    assert code == serve.EXIT_CONFIG


def test_serve_usage_errors_never_echo_an_argument(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        config.load(["--cluster-secret", "sk_live_SECRET"], env={})   # no such flag (and no abbreviations)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "sk_live_SECRET" not in err and "unrecognized argument" in err

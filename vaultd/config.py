"""Node configuration: TOML file, then VAULTD_* environment variables, then command-line flags (later wins).

Why one table of fields (`FIELDS`) drives all three sources: every setting then has exactly one name per
source, one parser and one recorded origin, which is what `vaultd config show` prints. The cluster secret is
never stored in a field that is printed: `config show` redacts it, and `NodeConfig.read_secret()` reads the
secret file (or VAULTD_CLUSTER_SECRET) only when the node starts.

Layout of the TOML file (every key optional; flags and env override):

    node_id = "n1"
    data_dir = "/var/lib/vaultd"
    raft_addr = "10.0.0.1:7000"
    peers = ["n2=10.0.0.2:7000", "10.0.0.3:7000"]     # other members; "ID=" prefix optional
    grpc_addr = "10.0.0.1:8000"
    metrics_addr = "10.0.0.1:9100"
    cluster_secret_file = "/etc/vaultd/secret"
    audit_log = "/var/log/vaultd/audit.log"
    unsafe_no_fsync = false
    log_format = "text"          # or "json"
    log_level = "INFO"
    slow_request_ms = 1000
    [tls]                        # client TLS (or insecure_plaintext = true) and Raft peer TLS
    tls_cert = "/etc/vaultd/tls/node.crt"
    tls_key = "/etc/vaultd/tls/node.key"
    tls_client_ca = "/etc/vaultd/tls/clients-ca.crt"   # optional: require client certificates
    peer_tls_cert = "/etc/vaultd/tls/peer.crt"
    peer_tls_key = "/etc/vaultd/tls/peer.key"
    peer_tls_ca = "/etc/vaultd/tls/peer-ca.crt"
    [auth]
    root_token_file = "/etc/vaultd/root-token"          # or insecure_no_auth = true
    [limits]                     # bootstrap limits: applied once to a new cluster, later only via SetLimits
    max_vaults = 1000
    max_keys_per_vault = 10000
    max_value_size = 1048576
    max_scan_results = 1000
    [raft]                       # tuning; see vaultd/replication/DESIGN.md
    append_entries_period = 0.01
    ...
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

ENV_PREFIX = "VAULTD_"
SECRET_ENV = "VAULTD_CLUSTER_SECRET"
REDACTED = "<redacted>"


MIN_SECRET_BYTES = 32


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the setting and its source, never a secret."""


def check_private_file(fd: int, path: str, what: str) -> None:
    """A file holding a secret must not be readable or writable by group or others (as ssh insists for
    keys): a world-readable cluster secret or root token is as good as none."""
    mode = os.fstat(fd).st_mode
    if mode & 0o077:
        raise ConfigError(f"{what} {path} is accessible by group or others (mode {mode & 0o777:o}); "
                          f"run `chmod 600 {path}`")


def check_secret_strength(secret: str, what: str) -> None:
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"{what} must hold at least {MIN_SECRET_BYTES} bytes (e.g. `python3 -c 'import "
                          f"secrets; print(secrets.token_urlsafe(32))'`)")


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _parse_list(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def parse_hostport(addr: str) -> tuple[str, int]:
    """'host:port' -> (host, port); IPv6 hosts in brackets."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {addr!r}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class Field:
    """One setting: its TOML location, environment name, optional flag, and parser for env/flag text."""

    name: str
    section: str              # "" = top level of the TOML file
    parse: Callable[[str], Any]
    flag: str | None = None
    help: str = ""
    secret: bool = False

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


FIELDS: tuple[Field, ...] = (
    Field("node_id", "", str, "--node-id", "this node's id, e.g. n1"),
    Field("data_dir", "", str, "--data-dir", "data directory (created if missing)"),
    Field("raft_addr", "", str, "--raft-addr", "HOST:PORT of this node's Raft port"),
    Field("peers", "", _parse_list, "--peer", "another member's Raft HOST:PORT (optionally ID=HOST:PORT); repeat"),
    Field("grpc_addr", "", str, "--grpc-addr", "HOST:PORT for the gRPC API"),
    Field("metrics_addr", "", str, "--metrics-addr", "HOST:PORT for /metrics /healthz /readyz ('' disables)"),
    Field("cluster_secret_file", "", str, "--cluster-secret-file",
          "file holding the cluster secret (one line, >= 32 bytes, not readable by group or others)"),
    Field("tls_cert", "tls", str, "--tls-cert", "PEM certificate (chain) the gRPC API serves; re-read on SIGHUP"),
    Field("tls_key", "tls", str, "--tls-key", "PEM private key of --tls-cert"),
    Field("tls_client_ca", "tls", str, "--tls-client-ca",
          "PEM CA bundle: require client certificates signed by it (mTLS)"),
    Field("tls_ca", "tls", str, "--tls-ca",
          "PEM CA bundle that signs the other nodes' gRPC certificates (node-to-node calls such as stats fan-out)"),
    Field("insecure_plaintext", "tls", _parse_bool, "--insecure-plaintext",
          "INSECURE: serve gRPC without TLS (anyone on the network can read secrets in transit)"),
    Field("peer_tls_cert", "tls", str, "--peer-tls-cert", "PEM certificate this node presents to its Raft peers"),
    Field("peer_tls_key", "tls", str, "--peer-tls-key", "PEM private key of --peer-tls-cert"),
    Field("peer_tls_ca", "tls", str, "--peer-tls-ca", "PEM CA bundle that signs every member's peer certificate"),
    Field("root_token_file", "auth", str, "--root-token-file",
          "file holding the root token (every capability); the same file on every node"),
    Field("insecure_no_auth", "auth", _parse_bool, "--insecure-no-auth",
          "INSECURE: accept gRPC calls without a token (anyone who reaches the port can read every secret)"),
    Field("audit_log", "", str, "--audit-log", "append one JSON line per request to FILE (reopened on SIGHUP)"),
    Field("unsafe_no_fsync", "", _parse_bool, "--unsafe-no-fsync",
          "UNSAFE: do not fsync the Raft journal (acknowledged writes can be lost on power failure)"),
    Field("log_format", "", str, "--log-format", "text or json"),
    Field("log_level", "", str, "--log-level", "DEBUG, INFO, WARNING, ERROR"),
    Field("slow_request_ms", "", int, "--slow-request-ms", "log requests slower than this"),
    Field("grpc_workers", "grpc", int, "--grpc-workers", "gRPC worker threads"),
    Field("grpc_max_concurrent_rpcs", "grpc", int, "--grpc-max-concurrent-rpcs",
          "RPCs in flight beyond which new ones get RESOURCE_EXHAUSTED (bounds memory)"),
    Field("max_concurrent_streams", "grpc", int, "--max-concurrent-streams",
          "export/import streams in flight beyond which new ones get RESOURCE_EXHAUSTED (keeps workers free)"),
    Field("stream_max_seconds", "grpc", float, "--stream-max-seconds",
          "an export or import stream running longer than this is ended with DEADLINE_EXCEEDED"),
    Field("max_vaults", "limits", int),
    Field("max_keys_per_vault", "limits", int),
    Field("max_value_size", "limits", int),
    Field("max_scan_results", "limits", int),
    Field("append_entries_use_batch", "raft", _parse_bool),
    Field("append_entries_period", "raft", float),
    Field("auto_tick_period", "raft", float),
    Field("raft_min_timeout", "raft", float),
    Field("raft_max_timeout", "raft", float),
    Field("leader_fallback_timeout", "raft", float),
    Field("log_compaction_min_entries", "raft", int),
    Field("log_compaction_min_time", "raft", float),
    Field("journal_max_bytes", "raft", int),
    Field("batch_max_bytes", "raft", int),
    Field("entry_max_bytes", "raft", int),
    Field("batch_linger_ms", "raft", float),
    Field("max_inflight_entries", "raft", int),
    Field("max_pending_commands", "raft", int),
    Field("ready_window_seconds", "raft", float),
    Field("shutdown_grace_seconds", "raft", float),
)
_BY_NAME = {f.name: f for f in FIELDS}


@dataclass
class NodeConfig:
    """Effective settings of one node. `sources` maps each field name to where its value came from."""

    node_id: str = ""
    data_dir: str = ""
    raft_addr: str = ""
    peers: list[str] = field(default_factory=list)
    grpc_addr: str = "127.0.0.1:8000"
    metrics_addr: str = "127.0.0.1:9100"
    cluster_secret_file: str = ""
    unsafe_no_fsync: bool = False
    log_format: str = "text"
    log_level: str = "INFO"
    slow_request_ms: int = 1000
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    tls_ca: str = ""
    insecure_plaintext: bool = False
    peer_tls_cert: str = ""
    peer_tls_key: str = ""
    peer_tls_ca: str = ""
    root_token_file: str = ""
    insecure_no_auth: bool = False
    audit_log: str = ""
    grpc_workers: int = 32
    grpc_max_concurrent_rpcs: int = 256
    max_concurrent_streams: int = 8
    stream_max_seconds: float = 600.0
    # bootstrap limits (None = the store's default)
    max_vaults: int | None = None
    max_keys_per_vault: int | None = None
    max_value_size: int | None = None
    max_scan_results: int | None = None
    # Raft tuning (measured: benchmarks/bench_replication.py, figures in vaultd/replication/DESIGN.md)
    append_entries_use_batch: bool = False
    append_entries_period: float = 0.05
    auto_tick_period: float = 0.005
    raft_min_timeout: float = 0.5
    raft_max_timeout: float = 1.2
    leader_fallback_timeout: float = 2.5
    log_compaction_min_entries: int = 2000
    log_compaction_min_time: float = 300.0
    journal_max_bytes: int = 64 * 1024 * 1024
    batch_max_bytes: int = 64 * 1024
    entry_max_bytes: int = 1024 * 1024 + 64 * 1024
    batch_linger_ms: float = 0.0
    max_inflight_entries: int = 2
    max_pending_commands: int = 20000
    ready_window_seconds: float = 3.0
    shutdown_grace_seconds: float = 5.0
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    # Only for `vaultd dev` and tests: a secret handed over in memory instead of via a file.
    cluster_secret: str | None = field(default=None, repr=False, compare=False)

    # --- derived paths -----------------------------------------------------------------------------------
    @property
    def db_path(self) -> str:
        return os.path.join(self.data_dir, "state.db")

    @property
    def stats_path(self) -> str:
        return os.path.join(self.data_dir, "access_stats.db")

    @property
    def raft_dir(self) -> str:
        return os.path.join(self.data_dir, "raft")

    @property
    def peer_addrs(self) -> list[str]:
        """Raft addresses of the other members (the optional `ID=` prefix stripped)."""
        return [split_peer(p)[1] for p in self.peers]

    @property
    def peer_ids(self) -> dict[str, str]:
        """raft_addr -> node id for peers given as ID=HOST:PORT (seeds the members table)."""
        return {addr: pid for pid, addr in map(split_peer, self.peers) if pid}

    @property
    def slow_request_seconds(self) -> float:
        return self.slow_request_ms / 1000.0

    def bootstrap_limits(self) -> dict[str, int]:
        """The [limits] values that were set (others keep the store's defaults)."""
        out = {}
        for name in ("max_vaults", "max_keys_per_vault", "max_value_size", "max_scan_results"):
            value = getattr(self, name)
            if value is not None:
                out[name] = int(value)
        return out

    def secret_origin(self) -> str:
        """Where read_secret() takes the secret from: "memory" (dev), "env", "file" or "unset".

        Same precedence as every other setting: a --cluster-secret-file flag beats VAULTD_CLUSTER_SECRET,
        which beats a secret file named in the TOML file or in VAULTD_CLUSTER_SECRET_FILE."""
        if self.cluster_secret:
            return "memory"
        file_from_flag = self.sources.get("cluster_secret_file", "").startswith("flag")
        if self.cluster_secret_file and file_from_flag:
            return "file"
        if os.environ.get(SECRET_ENV, "").strip():
            return "env"
        return "file" if self.cluster_secret_file else "unset"

    def read_secret(self) -> str | None:
        """The cluster secret: in-memory (dev), VAULTD_CLUSTER_SECRET, or the first line of the secret file
        (see secret_origin for the precedence)."""
        origin = self.secret_origin()
        if origin == "memory":
            return self.cluster_secret
        if origin == "env":
            return os.environ[SECRET_ENV].strip()
        if origin == "unset":
            return None
        try:
            with open(self.cluster_secret_file, encoding="utf-8") as f:
                check_private_file(f.fileno(), self.cluster_secret_file, "cluster secret file")
                secret = f.readline().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read cluster secret file {self.cluster_secret_file}: "
                              f"{exc.strerror or type(exc).__name__}") from None
        return secret or None

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls_cert)

    @property
    def peer_tls_enabled(self) -> bool:
        return bool(self.peer_tls_cert)

    @property
    def auth_enabled(self) -> bool:
        return not self.insecure_no_auth

    def validate_security(self) -> None:
        """Secure by default: refuse to serve without TLS and authentication unless the insecure mode is
        asked for by name. Raises ConfigError with a message that names both choices."""
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("--tls-cert and --tls-key go together")
        if (self.tls_client_ca or self.tls_ca) and not self.tls_cert:
            raise ConfigError("--tls-client-ca (mTLS) and --tls-ca need --tls-cert and --tls-key")
        if self.tls_cert and self.insecure_plaintext:
            raise ConfigError("--insecure-plaintext contradicts --tls-cert: choose one")
        if not self.tls_cert and not self.insecure_plaintext:
            raise ConfigError(
                "refusing to serve gRPC without TLS: pass --tls-cert FILE --tls-key FILE (PEM; add "
                "--tls-client-ca FILE to require client certificates), or --insecure-plaintext to serve "
                "unencrypted traffic on purpose")
        peer = [self.peer_tls_cert, self.peer_tls_key, self.peer_tls_ca]
        if any(peer) and not all(peer):
            raise ConfigError("--peer-tls-cert, --peer-tls-key and --peer-tls-ca go together")
        if self.root_token_file and self.insecure_no_auth:
            raise ConfigError("--insecure-no-auth contradicts --root-token-file: choose one")
        if not self.root_token_file and not self.insecure_no_auth:
            raise ConfigError(
                "refusing to serve without authentication: pass --root-token-file FILE (the same file on "
                "every node; a token with every capability, to create policies and tokens), or "
                "--insecure-no-auth to accept unauthenticated calls on purpose")

    def read_root_token(self) -> str | None:
        """The root token (first line of --root-token-file, >= 32 bytes, owner-only), or None without auth."""
        if not self.root_token_file:
            return None
        try:
            with open(self.root_token_file, encoding="utf-8") as f:
                check_private_file(f.fileno(), self.root_token_file, "root token file")
                token = f.readline().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read root token file {self.root_token_file}: "
                              f"{exc.strerror or type(exc).__name__}") from None
        if len(token.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(f"root token file {self.root_token_file}: the token must hold at least "
                              f"{MIN_SECRET_BYTES} bytes (e.g. `python3 -c 'import secrets; "
                              f"print(secrets.token_urlsafe(32))'`)")
        return token

    def validate(self) -> None:
        """Check what a serving node needs; raises ConfigError naming the setting."""
        for name in ("node_id", "data_dir", "raft_addr", "grpc_addr"):
            if not getattr(self, name):
                raise ConfigError(f"{name} is required (flag {_BY_NAME[name].flag}, env {_BY_NAME[name].env})")
        for name in ("raft_addr", "grpc_addr") + (("metrics_addr",) if self.metrics_addr else ()):
            try:
                parse_hostport(getattr(self, name))
            except ValueError as exc:
                raise ConfigError(f"{name}: {exc}") from None
        for peer in self.peers:
            try:
                parse_hostport(split_peer(peer)[1])
            except ValueError as exc:
                raise ConfigError(f"peer: {exc}") from None
        if self.raft_addr in self.peer_addrs:
            raise ConfigError("--peer lists the other members only; this node's own address is --raft-addr")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"log_format must be text or json, not {self.log_format!r}")
        if not self.raft_min_timeout < self.raft_max_timeout:
            raise ConfigError("raft_min_timeout must be below raft_max_timeout")
        if self.max_concurrent_streams < 1 or not self.stream_max_seconds > 0:
            raise ConfigError("max_concurrent_streams must be at least 1 and stream_max_seconds above 0")


def split_peer(peer: str) -> tuple[str, str]:
    """'n2=host:port' -> ('n2', 'host:port'); 'host:port' -> ('', 'host:port')."""
    pid, sep, addr = peer.partition("=")
    return (pid.strip(), addr.strip()) if sep else ("", peer.strip())


def _coerce(f: Field, value: Any, origin: str) -> Any:
    """TOML values arrive typed; env/flag values as text. Either way return the field's type."""
    try:
        if isinstance(value, str):
            return f.parse(value)
        if f.name == "peers":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError("expected a list of strings")
            return list(value)
        if f.parse is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if f.parse is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if f.parse is _parse_bool and isinstance(value, bool):
            return value
        if f.parse is str:
            raise ValueError(f"expected a string, got {type(value).__name__}")
        raise ValueError(f"unexpected {type(value).__name__}")
    except ValueError as exc:
        raise ConfigError(f"{f.name} ({origin}): {exc}") from None


def _from_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or type(exc).__name__}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    known_sections = {f.section for f in FIELDS if f.section}
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key in known_sections and isinstance(value, dict):
            for sub, subvalue in value.items():
                f = _BY_NAME.get(sub)
                if f is None or f.section != key:
                    raise ConfigError(f"config file {path}: unknown setting [{key}] {sub}")
                out[sub] = _coerce(f, subvalue, f"file {path}")
            continue
        f = _BY_NAME.get(key)
        if f is None or f.section:
            raise ConfigError(f"config file {path}: unknown setting {key}")
        out[key] = _coerce(f, value, f"file {path}")
    return out


_CHOICES = re.compile(r" \(choose from [^)]*\)$")
_AMBIGUOUS = re.compile(r"^ambiguous option: (-[^=\s]*)=\S*")


def sanitize_usage_message(message: str) -> str:
    """argparse's error message without any argument value in it (Python 3.11 wording): "unrecognized
    arguments: ..." lists them and is replaced as a whole; other messages quote the offending value
    ("invalid choice: 'x'", "invalid int value: 'x'", "ignored explicit argument 'x'") and are cut before the
    quote, keeping the option's name and the list of valid choices (those are ours, not the user's)."""
    if message.startswith("unrecognized arguments:"):
        count = len(message.split(":", 1)[1].split())
        return (f"{count} unrecognized argument{'s' if count != 1 else ''} (not shown: they could be secrets; "
                f"see --help)")
    message = _AMBIGUOUS.sub(r"ambiguous option: \1=...", message)
    choices = _CHOICES.search(message)
    head = message[:choices.start()] if choices else message
    quote = min((i for i in (head.find("'"), head.find('"')) if i >= 0), default=-1)
    if quote >= 0:
        head = head[:quote].rstrip(" :")
    return head + (choices.group(0) if choices else "")


class _QuietParser(argparse.ArgumentParser):
    """`vaultd serve`'s parser: a usage error names the problem, never an argument's value (a mistyped flag
    could be followed by a secret)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {sanitize_usage_message(message)}\n")


def build_parser(prog: str = "vaultd serve") -> argparse.ArgumentParser:
    """Flags of `vaultd serve` (also accepted by `vaultd config show`)."""
    p = _QuietParser(prog=prog, description="Run one vaultd node.", allow_abbrev=False)
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")
    for f in FIELDS:
        if f.flag is None:
            continue
        if f.name == "peers":
            p.add_argument(f.flag, dest=f.name, action="append", metavar="HOST:PORT", help=f.help)
        elif f.parse is _parse_bool:
            p.add_argument(f.flag, dest=f.name, action="store_const", const="true", help=f.help)
        else:
            p.add_argument(f.flag, dest=f.name, metavar=f.name.upper(), help=f.help)
    return p


def load(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
         prog: str = "vaultd serve") -> NodeConfig:
    """Build the effective NodeConfig: defaults < TOML file < VAULTD_* env < flags. Raises ConfigError."""
    env = os.environ if env is None else env
    args = build_parser(prog).parse_args(list(argv or []))
    cfg = NodeConfig()
    sources = {f.name: "default" for f in FIELDS}
    config_file = args.config or env.get(ENV_PREFIX + "CONFIG")
    if config_file:
        for name, value in _from_toml(config_file).items():
            setattr(cfg, name, value)
            sources[name] = f"file {config_file}"
    for f in FIELDS:
        if f.env in env:
            setattr(cfg, f.name, _coerce(f, env[f.env], f"env {f.env}"))
            sources[f.name] = f"env {f.env}"
    for f in FIELDS:
        value = getattr(args, f.name, None)
        if value is None:
            continue
        if f.name == "peers":
            parsed: Any = [p for v in value for p in _parse_list(v)]
        else:
            parsed = _coerce(f, value, f"flag {f.flag}")
        setattr(cfg, f.name, parsed)
        sources[f.name] = f"flag {f.flag}"
    cfg.sources = sources
    return cfg


def effective(cfg: NodeConfig) -> list[tuple[str, Any, str]]:
    """(dotted name, value, source) for every setting, secrets redacted."""
    rows: list[tuple[str, Any, str]] = []
    for f in FIELDS:
        name = f"{f.section}.{f.name}" if f.section else f.name
        rows.append((name, getattr(cfg, f.name), cfg.sources.get(f.name, "default")))
    origin = cfg.secret_origin()
    secret_source = {"env": f"env {SECRET_ENV}", "file": f"file {cfg.cluster_secret_file}"}.get(origin, origin)
    rows.append(("cluster_secret", REDACTED if origin != "unset" else None, secret_source))
    return rows


def show_main(argv: Sequence[str] | None = None) -> int:
    """`vaultd config show [--json] [serve flags...]`: the effective configuration and each value's source."""
    argv = list(argv or [])
    as_json = "--json" in argv or ("-o" in argv and argv[argv.index("-o") + 1:argv.index("-o") + 2] == ["json"])
    argv = [a for i, a in enumerate(argv) if a != "--json" and not (a == "-o" or (i and argv[i - 1] == "-o"))]
    try:
        cfg = load(argv, prog="vaultd config show")
    except ConfigError as exc:
        print(f"vaultd: config error: {exc}", file=sys.stderr)
        return 2
    rows = effective(cfg)
    if as_json:
        print(json.dumps({name: {"value": value, "source": source} for name, value, source in rows}, indent=2))
    else:
        width = max(len(r[0]) for r in rows)
        for name, value, source in rows:
            shown = value if isinstance(value, str) and value else json.dumps(value)
            print(f"{name:<{width}}  {shown}  ({source})")
    return 0


def replace(cfg: NodeConfig, **changes: Any) -> NodeConfig:
    """A copy with some settings changed (tests and `vaultd dev`); keeps sources of unchanged fields."""
    new = dataclasses.replace(cfg, **changes)
    new.sources = {**cfg.sources, **{k: "override" for k in changes if k in _BY_NAME}}
    return new


if __name__ == "__main__":
    raise SystemExit(show_main(sys.argv[1:]))

"""VaultClient: failover across endpoints, retries with one request id per call, streaming export/import (the
package docstring, vaultd/client/__init__.py, says why retries are safe)."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any, TypeVar

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vaultd import tls
from vaultd.client.credentials import (ENV_CA_FILE, ENV_CERT_FILE, ENV_ENDPOINTS, ENV_INSECURE_PLAINTEXT,
                                       ENV_KEY_FILE, ENV_TOKEN, ENV_TOKEN_FILE, auth_metadata, read_token_file)
from vaultd.client.errors import VaultError, retryable, error_from_rpc
from vaultd.client.messages import as_bytes, consistency_value, enum_value, new_request_id
from vaultd.v1 import auth_pb2, auth_pb2_grpc, cluster_pb2, cluster_pb2_grpc, vault_pb2, vault_pb2_grpc

DEFAULT_TIMEOUT = 10.0
# Client receive limit: the largest answer is a scan page of keys with values up to the value limit (1 MiB
# default); beyond this the caller should page with a smaller page_size.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
IMPORT_CHUNK_BYTES = 256 * 1024
_BACKOFF_START = 0.05
_BACKOFF_MAX = 1.0

T = TypeVar("T")


class VaultClient:
    """A connection to a vaultd cluster through any of `endpoints` ("host:port").

    `timeout` is each call's total budget including retries and failover; `attempt_timeout` bounds one
    attempt on one node (default: half the remaining budget for unary calls when there are several
    endpoints), so a hung node costs at most that before the next endpoint is tried.

    `ca_file` (PEM) turns TLS on and is what the servers' certificates are verified against; `cert_file` and
    `key_file` add a client certificate (mTLS). `token` is sent as `authorization: Bearer <token>` on every
    call, and only over TLS unless `insecure_plaintext=True`. Unreadable or mismatched files raise ValueError
    (vaultd.tls.TLSFileError) here, not on the first call.
    """

    def __init__(self, endpoints: Sequence[str] | str, timeout: float = DEFAULT_TIMEOUT,
                 attempt_timeout: float | None = None, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 channel_options: Sequence[tuple[str, Any]] = (), *, ca_file: str | None = None,
                 cert_file: str | None = None, key_file: str | None = None, token: str | None = None,
                 insecure_plaintext: bool = False) -> None:
        if isinstance(endpoints, str):
            endpoints = [e for e in endpoints.split(",") if e.strip()]
        self.endpoints = [e.strip() for e in endpoints]
        if not self.endpoints:
            raise ValueError("at least one endpoint is required")
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self._options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", -1),  # let the server judge size: it answers RESOURCE_EXHAUSTED
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
            ("grpc.enable_retries", 0),  # retries are ours: same request id, failover, deadline-bounded
            *channel_options,
        ]
        if (cert_file or key_file) and not ca_file:
            raise ValueError("a client certificate (cert_file/key_file) needs ca_file: TLS is on only with a CA")
        if token and not ca_file and not insecure_plaintext:
            # Secure by default on this side too: a forgotten CA file must not put a token on the wire in the
            # clear (to a TLS port it may leave before the handshake fails; to a spoofed one, it is handed over).
            raise ValueError("refusing to send a token without TLS: give ca_file (--ca-file, VAULTD_CA_FILE), "
                             "or insecure_plaintext=True (--insecure-plaintext) to send it in the clear on purpose")
        self._credentials = tls.channel_credentials(ca_file, cert_file, key_file) if ca_file else None
        self._auth = auth_metadata(token)
        self._channels: dict[str, grpc.Channel] = {}
        self._channels_lock = threading.Lock()
        self._preferred = 0
        self._closed = False

    @classmethod
    def from_env(cls, endpoints: Sequence[str] | str | None = None, **kwargs: Any) -> VaultClient:
        """A client configured as the CLI is: endpoints from VAULTD_ENDPOINTS (unless given), TLS files from
        VAULTD_CA_FILE / VAULTD_CERT_FILE / VAULTD_KEY_FILE, the token from VAULTD_TOKEN or the file named by
        VAULTD_TOKEN_FILE. Keyword arguments win over the environment."""
        env = os.environ
        endpoints = endpoints or env.get(ENV_ENDPOINTS, "")
        if not endpoints:
            raise ValueError(f"no endpoints: pass them or set {ENV_ENDPOINTS}=host:port,host:port")
        for name, var in (("ca_file", ENV_CA_FILE), ("cert_file", ENV_CERT_FILE), ("key_file", ENV_KEY_FILE)):
            kwargs.setdefault(name, env.get(var) or None)
        if "token" not in kwargs:
            kwargs["token"] = env.get(ENV_TOKEN) or (read_token_file(env[ENV_TOKEN_FILE])
                                                     if env.get(ENV_TOKEN_FILE) else None)
        kwargs.setdefault("insecure_plaintext", env.get(ENV_INSECURE_PLAINTEXT, "") in ("1", "true", "yes"))
        return cls(endpoints, **kwargs)

    @property
    def uses_tls(self) -> bool:
        return self._credentials is not None

    def _explain(self, error: VaultError) -> VaultError:
        """A plaintext client's failed connection to a TLS port reads only "Socket closed": say what to try."""
        if self.uses_tls or error.reason != "CONNECTION_FAILED":
            return error
        hint = (f"{error.message} (this client speaks plaintext because no CA file was given; if the server uses "
                f"TLS, pass ca_file=, --ca-file or {ENV_CA_FILE})")
        return type(error)(error.code, error.reason, hint, error.metadata)

    # context manager / lifecycle
    def __enter__(self) -> VaultClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._channels_lock:
            self._closed = True
            channels, self._channels = self._channels, {}
        for channel in channels.values():
            channel.close()

    @property
    def current_endpoint(self) -> str:
        return self.endpoints[self._preferred % len(self.endpoints)]

    def _channel(self, endpoint: str) -> grpc.Channel:
        with self._channels_lock:
            if self._closed:
                raise RuntimeError("VaultClient is closed")
            channel = self._channels.get(endpoint)
            if channel is None:
                channel = self._channels[endpoint] = (
                    grpc.secure_channel(endpoint, self._credentials, options=self._options)
                    if self._credentials is not None else grpc.insecure_channel(endpoint, options=self._options))
            return channel

    def _vault(self, endpoint: str) -> vault_pb2_grpc.VaultServiceStub:
        return vault_pb2_grpc.VaultServiceStub(self._channel(endpoint))

    def _cluster(self, endpoint: str) -> cluster_pb2_grpc.ClusterServiceStub:
        return cluster_pb2_grpc.ClusterServiceStub(self._channel(endpoint))

    # the retry loop
    def _attempt_budget(self, remaining: float, split: bool) -> float:
        """Time for one attempt on one node. Without an explicit attempt_timeout, a call that may fail over
        gives its first attempts half of what remains, so a hung (not refusing) node cannot eat the whole
        deadline; streaming calls (split=False) get everything, since a long import is not a hang."""
        if self.attempt_timeout is not None:
            return min(remaining, self.attempt_timeout)
        if split and len(self.endpoints) > 1 and remaining > 1.0:
            return remaining / 2
        return remaining

    def _call(self, invoke: Callable[[str, float, list[tuple[str, str]]], T], timeout: float | None,
              request_id: str = "", retry: bool = True, split: bool = True) -> T:
        """Run invoke(endpoint, attempt_timeout, metadata) with failover and backoff until the deadline."""
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        metadata = [*self._auth, *([("x-request-id", request_id)] if request_id else [])]
        backoff = _BACKOFF_START
        attempt = 0
        while True:
            endpoint_index = (self._preferred + attempt) % len(self.endpoints)
            endpoint = self.endpoints[endpoint_index]
            remaining = deadline - time.monotonic()
            per_attempt = self._attempt_budget(remaining, split)
            try:
                result = invoke(endpoint, max(per_attempt, 0.001), metadata)
                self._preferred = endpoint_index
                return result
            except grpc.RpcError as err:
                error = self._explain(error_from_rpc(err))
            attempt += 1
            if not retry or not retryable(error):
                raise error
            sleep = min(backoff, _BACKOFF_MAX) * random.uniform(0.5, 1.0)
            if time.monotonic() + sleep >= deadline:
                raise error
            # A whole round of endpoints failed: back off before the next round; otherwise fail over at once.
            if attempt % len(self.endpoints) == 0:
                time.sleep(sleep)
                backoff *= 2

    def _unary(self, service: str, method: str, request: Message, timeout: float | None,
               request_id: str = "", retry: bool = True) -> Any:
        def invoke(endpoint: str, attempt_timeout: float, metadata: list[tuple[str, str]]) -> Any:
            stub = self._vault(endpoint) if service == "vault" else self._cluster(endpoint)
            return getattr(stub, method)(request, timeout=attempt_timeout, metadata=metadata)
        return self._call(invoke, timeout, request_id, retry)

    # --- vaults ---
    def create_vault(self, name: str, description: str = "", owner: str = "", tags: Iterable[str] = (),
                     *, request_id: str | None = None, timeout: float | None = None) -> vault_pb2.Vault:
        rid = request_id or new_request_id()
        req = vault_pb2.CreateVaultRequest(name=name, description=description, owner=owner, tags=list(tags),
                                           request_id=rid)
        return self._unary("vault", "CreateVault", req, timeout, rid)

    def get_vault(self, name: str, consistency: str | int | None = None, *,
                  timeout: float | None = None) -> vault_pb2.Vault:
        req = vault_pb2.GetVaultRequest(name=name, consistency=consistency_value(consistency))
        return self._unary("vault", "GetVault", req, timeout)

    def update_vault(self, name: str, *, description: str | None = None, owner: str | None = None,
                     tags: Iterable[str] | None = None, request_id: str | None = None,
                     timeout: float | None = None) -> vault_pb2.Vault:
        """Change only the fields given (an update_mask names them)."""
        rid = request_id or new_request_id()
        req = vault_pb2.UpdateVaultRequest(name=name, request_id=rid)
        if description is not None:
            req.description = description
            req.update_mask.paths.append("description")
        if owner is not None:
            req.owner = owner
            req.update_mask.paths.append("owner")
        if tags is not None:
            req.tags.extend(tags)
            req.update_mask.paths.append("tags")
        if not req.update_mask.paths:
            raise ValueError("update_vault needs at least one of description, owner, tags")
        return self._unary("vault", "UpdateVault", req, timeout, rid)

    def list_vaults(self, page_size: int = 0, page_token: str = "", consistency: str | int | None = None, *,
                    timeout: float | None = None) -> vault_pb2.ListVaultsResponse:
        req = vault_pb2.ListVaultsRequest(page_size=page_size, page_token=page_token,
                                          consistency=consistency_value(consistency))
        return self._unary("vault", "ListVaults", req, timeout)

    def iter_vaults(self, page_size: int = 0, consistency: str | int | None = None) -> Iterator[vault_pb2.Vault]:
        token = ""
        while True:
            page = self.list_vaults(page_size, token, consistency)
            yield from page.vaults
            token = page.next_page_token
            if not token:
                return

    def delete_vault(self, name: str, *, request_id: str | None = None, timeout: float | None = None) -> int:
        rid = request_id or new_request_id()
        resp = self._unary("vault", "DeleteVault", vault_pb2.DeleteVaultRequest(name=name, request_id=rid),
                           timeout, rid)
        return int(resp.deleted_keys)

    def copy_vault(self, source: str, destination: str, *, request_id: str | None = None,
                   timeout: float | None = None) -> int:
        rid = request_id or new_request_id()
        req = vault_pb2.CopyVaultRequest(source=source, destination=destination, request_id=rid)
        return int(self._unary("vault", "CopyVault", req, timeout, rid).copied_keys)

    def vault_stats(self, name: str, *, timeout: float | None = None) -> vault_pb2.VaultStats:
        return self._unary("vault", "GetVaultStats", vault_pb2.GetVaultStatsRequest(name=name), timeout)

    # --- keys ---
    def put(self, vault: str, key: str, value: bytes | str, expected_version: int | None = None, *,
            request_id: str | None = None, timeout: float | None = None) -> vault_pb2.PutResponse:
        """Create or replace a key; with expected_version a compare-and-set (0 = must not exist)."""
        rid = request_id or new_request_id()
        req = vault_pb2.PutRequest(vault=vault, key=key, value=as_bytes(value), request_id=rid)
        if expected_version is not None:
            req.expected_version = expected_version
        return self._unary("vault", "Put", req, timeout, rid)

    def get(self, vault: str, key: str, consistency: str | int | None = None, *,
            timeout: float | None = None) -> vault_pb2.Entry:
        req = vault_pb2.GetRequest(vault=vault, key=key, consistency=consistency_value(consistency))
        return self._unary("vault", "Get", req, timeout)

    def delete(self, vault: str, key: str, expected_version: int | None = None, *,
               request_id: str | None = None, timeout: float | None = None) -> bool:
        rid = request_id or new_request_id()
        req = vault_pb2.DeleteRequest(vault=vault, key=key, request_id=rid)
        if expected_version is not None:
            req.expected_version = expected_version
        return bool(self._unary("vault", "Delete", req, timeout, rid).deleted)

    def scan(self, vault: str, prefix: str = "", page_size: int = 0, page_token: str = "",
             keys_only: bool = False, consistency: str | int | None = None, *,
             timeout: float | None = None) -> vault_pb2.ScanResponse:
        req = vault_pb2.ScanRequest(vault=vault, prefix=prefix, page_size=page_size, page_token=page_token,
                                    keys_only=keys_only, consistency=consistency_value(consistency))
        return self._unary("vault", "Scan", req, timeout)

    def iter_scan(self, vault: str, prefix: str = "", page_size: int = 0, keys_only: bool = False,
                  consistency: str | int | None = None) -> Iterator[vault_pb2.Entry]:
        """Every entry under prefix, in key order, following page tokens (each page its own call)."""
        token = ""
        while True:
            page = self.scan(vault, prefix, page_size, token, keys_only, consistency)
            yield from page.entries
            token = page.next_page_token
            if not token:
                return

    def txn(self, vault: str, ops: Iterable[vault_pb2.TxnOp], *, request_id: str | None = None,
            timeout: float | None = None) -> vault_pb2.TxnResponse:
        """All-or-nothing puts/deletes (build ops with txn_put / txn_delete)."""
        rid = request_id or new_request_id()
        req = vault_pb2.TxnRequest(vault=vault, ops=list(ops), request_id=rid)
        return self._unary("vault", "Txn", req, timeout, rid)

    # --- export / import ---
    def export_vault(self, name: str, consistency: str | int | None = None, *,
                     timeout: float | None = None) -> Iterator[bytes]:
        """Consecutive pieces of the vault's native JSON document.

        Fails over only until the first piece arrives: a stream cut midway raises, since a restarted export
        would be a different point-in-time view.
        """
        req = vault_pb2.ExportVaultRequest(name=name, consistency=consistency_value(consistency))
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget

        def invoke(endpoint: str, _attempt: float, metadata: list[tuple[str, str]]) -> tuple[Any, bytes | None]:
            stream = self._vault(endpoint).ExportVault(req, timeout=max(deadline - time.monotonic(), 0.001),
                                                       metadata=metadata)
            first = next(stream, None)
            return stream, (first.data if first is not None else None)

        stream, first = self._call(invoke, budget, split=False)
        if first is None:
            return
        yield first
        try:
            for chunk in stream:
                yield chunk.data
        except grpc.RpcError as err:
            raise error_from_rpc(err) from None

    def export_to(self, name: str, out: IO[bytes], consistency: str | int | None = None, *,
                  progress: Callable[[int], None] | None = None, timeout: float | None = None) -> int:
        """Write the export to a binary file object; returns the byte count. progress(bytes_so_far)."""
        total = 0
        for piece in self.export_vault(name, consistency, timeout=timeout):
            out.write(piece)
            total += len(piece)
            if progress is not None:
                progress(total)
        return total

    def import_vault(self, vault: str, source: bytes | IO[bytes], format: str | int = "native",
                     mode: str | int = "fail_if_exists", *, request_id: str | None = None,
                     chunk_size: int = IMPORT_CHUNK_BYTES, progress: Callable[[int], None] | None = None,
                     timeout: float | None = None) -> vault_pb2.ImportVaultResponse:
        """Stream a file (native export, flat JSON or dotenv) into a vault; all-or-nothing.

        `source` is bytes or a binary file object; a seekable file (or bytes) is re-sent on a retry and its
        size is announced (so the server refuses an upload cut short), a non-seekable one is sent once.
        format: native | flat_json | dotenv; mode: fail_if_exists |
        overwrite | skip_existing.
        """
        rid = request_id or new_request_id()
        stream_obj: IO[bytes] | None = None if isinstance(source, (bytes, bytearray, memoryview)) else source
        start = stream_obj.tell() if stream_obj is not None and stream_obj.seekable() else None
        replayable = stream_obj is None or start is not None
        # The size lets the server refuse an upload cut short instead of importing the part it received.
        if stream_obj is None:
            size = memoryview(source).nbytes  # type: ignore[arg-type]
        elif start is not None:
            size = stream_obj.seek(0, os.SEEK_END) - start
            stream_obj.seek(start)
        else:
            size = 0  # unknown: a pipe
        header = vault_pb2.ImportHeader(
            vault=vault, format=enum_value(vault_pb2.ImportFormat, "IMPORT_FORMAT_", format),
            mode=enum_value(vault_pb2.ImportMode, "IMPORT_MODE_", mode), request_id=rid, size=size)

        def chunks() -> Iterator[vault_pb2.ImportChunk]:
            yield vault_pb2.ImportChunk(header=header)
            sent = 0
            if stream_obj is None:
                data = bytes(source)  # type: ignore[arg-type]
                pieces: Iterable[bytes] = (data[i:i + chunk_size] for i in range(0, len(data), chunk_size))
            else:
                if start is not None:
                    stream_obj.seek(start)
                pieces = iter(lambda: stream_obj.read(chunk_size), b"")
            for piece in pieces:
                yield vault_pb2.ImportChunk(data=piece)
                sent += len(piece)
                if progress is not None:
                    progress(sent)

        def invoke(endpoint: str, attempt_timeout: float, metadata: list[tuple[str, str]]) -> Any:
            return self._vault(endpoint).ImportVault(chunks(), timeout=attempt_timeout, metadata=metadata)

        return self._call(invoke, timeout, rid, retry=replayable, split=False)

    # --- cluster ---
    def status(self, *, endpoint: str | None = None, timeout: float | None = None) -> cluster_pb2.NodeStatus:
        """Status of the node the client talks to (or of `endpoint`, without failover)."""
        if endpoint is None:
            return self._unary("cluster", "GetStatus", cluster_pb2.GetStatusRequest(), timeout)
        try:
            return self._cluster(endpoint).GetStatus(cluster_pb2.GetStatusRequest(), metadata=self._auth,
                                                     timeout=self.timeout if timeout is None else timeout)
        except grpc.RpcError as err:
            raise self._explain(error_from_rpc(err)) from None

    def add_member(self, node_id: str, raft_addr: str, grpc_addr: str = "", *,
                   timeout: float | None = None) -> cluster_pb2.MembershipResponse:
        req = cluster_pb2.AddMemberRequest(node_id=node_id, raft_addr=raft_addr, grpc_addr=grpc_addr)
        return self._unary("cluster", "AddMember", req, timeout)

    def remove_member(self, node_id: str, *, timeout: float | None = None) -> cluster_pb2.MembershipResponse:
        return self._unary("cluster", "RemoveMember", cluster_pb2.RemoveMemberRequest(node_id=node_id), timeout)

    def get_limits(self, *, timeout: float | None = None) -> cluster_pb2.Limits:
        return self._unary("cluster", "GetLimits", cluster_pb2.GetLimitsRequest(), timeout)

    def set_limits(self, max_vaults: int = 0, max_keys_per_vault: int = 0, max_value_size: int = 0,
                   max_scan_results: int = 0, *, timeout: float | None = None) -> cluster_pb2.Limits:
        """Change replicated limits; 0 keeps a limit. Returns the limits now in force."""
        req = cluster_pb2.Limits(max_vaults=max_vaults, max_keys_per_vault=max_keys_per_vault,
                                 max_value_size=max_value_size, max_scan_results=max_scan_results)
        return self._unary("cluster", "SetLimits", req, timeout)

    def health(self, endpoint: str | None = None, *, timeout: float = 2.0) -> str:
        """grpc.health.v1 status of one node ("SERVING", "NOT_SERVING", ...), no failover."""
        stub = health_pb2_grpc.HealthStub(self._channel(endpoint or self.current_endpoint))
        try:
            resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout, metadata=self._auth)
        except grpc.RpcError as err:
            raise self._explain(error_from_rpc(err)) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    # --- auth (policies and tokens; every method but lookup_self needs admin) ---
    def _auth_call(self, method: str, request: Message, timeout: float | None, request_id: str = "",
                   retry: bool = True) -> Any:
        def invoke(endpoint: str, attempt_timeout: float, metadata: list[tuple[str, str]]) -> Any:
            stub = auth_pb2_grpc.AuthServiceStub(self._channel(endpoint))
            return getattr(stub, method)(request, timeout=attempt_timeout, metadata=metadata)
        return self._call(invoke, timeout, request_id, retry)

    def put_policy(self, name: str, rules: Iterable[tuple[str, Iterable[str]]], *, request_id: str | None = None,
                   timeout: float | None = None) -> auth_pb2.Policy:
        """Create or replace a policy; `rules` are (vault_glob, capabilities) pairs."""
        rid = request_id or new_request_id()
        req = auth_pb2.Policy(name=name, request_id=rid, rules=[
            auth_pb2.PolicyRule(vault_glob=glob, capabilities=list(caps)) for glob, caps in rules])
        return self._auth_call("PutPolicy", req, timeout, rid)

    def get_policy(self, name: str, *, timeout: float | None = None) -> auth_pb2.Policy:
        return self._auth_call("GetPolicy", auth_pb2.GetPolicyRequest(name=name), timeout)

    def list_policies(self, *, timeout: float | None = None) -> list[auth_pb2.Policy]:
        return list(self._auth_call("ListPolicies", auth_pb2.ListPoliciesRequest(), timeout).policies)

    def delete_policy(self, name: str, *, request_id: str | None = None, timeout: float | None = None) -> None:
        rid = request_id or new_request_id()
        self._auth_call("DeletePolicy", auth_pb2.DeletePolicyRequest(name=name, request_id=rid), timeout, rid)

    def create_token(self, name: str, policies: Iterable[str] = (), ttl_seconds: int = 0, *,
                     request_id: str | None = None, timeout: float | None = None) -> auth_pb2.CreateTokenResponse:
        """A new token; `.secret` (the bearer token) is in this answer only. A retry whose first attempt
        created the token gets FailedPrecondition TOKEN_ALREADY_CREATED (metadata token_id): revoke that one."""
        rid = request_id or new_request_id()
        req = auth_pb2.CreateTokenRequest(name=name, policies=list(policies), ttl_seconds=ttl_seconds,
                                          request_id=rid)
        return self._auth_call("CreateToken", req, timeout, rid)

    def revoke_token(self, token_id: str, *, request_id: str | None = None,
                     timeout: float | None = None) -> auth_pb2.Token:
        rid = request_id or new_request_id()
        return self._auth_call("RevokeToken", auth_pb2.RevokeTokenRequest(token_id=token_id, request_id=rid),
                               timeout, rid)

    def list_tokens(self, *, timeout: float | None = None) -> list[auth_pb2.Token]:
        return list(self._auth_call("ListTokens", auth_pb2.ListTokensRequest(), timeout).tokens)

    def lookup_self(self, *, timeout: float | None = None) -> auth_pb2.Token:
        return self._auth_call("LookupSelf", auth_pb2.LookupSelfRequest(), timeout)

"""Authentication and authorization of every RPC: a handler wrapper applied once at registration.

Each call carries `authorization: Bearer <token>` metadata. A token is either the root token (read from
--root-token-file, compared in memory in constant time, never stored; principal id `root`, every capability)
or `vt.<token_id>.<secret>`: the token is looked up by id and the sha256 of the secret compared in constant
time with the stored hash. Missing, malformed, unknown, expired (by this node's clock, at request time) and
revoked tokens get UNAUTHENTICATED; a valid token without the capability the method table
(vaultd.api.targets) names gets PERMISSION_DENIED with metadata `capability` and `vault`.

Why a cache, and why it is safe: a store read per RPC would cost more than the RPC's own read. Verified
token records and compiled policy sets are kept in memory, each tagged with `machine.auth_revision` as read
*before* loading; an entry is used only while the revision is unchanged, and the state machine bumps the
revision after committing any change to policies or tokens (and after a snapshot restore). So a revocation
or a policy change applied on this node takes effect on its next RPC, with no lock on the request path.

What the wrapper leaves for inner code: `current_principal` (for ListVaults filtering, the import header
check, LookupSelf and request-id scoping) and the fields of `vaultd.observability.context.current_caller`
(token id, name, policy names; never the secret) for the audit log.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from vaultd.api import errors, targets
from vaultd.api.decoding import UNDECODABLE
from vaultd.api.wrapping import HandlerWrapper
from vaultd.observability.context import Caller, current_caller
from vaultd.store.errors import TokenNotFound
from vaultd.store.policies import CLUSTER, TOKEN_ID_PATTERN, CompiledPolicies, compile_policies
from vaultd.store.results import TokenInfo

AUTHORIZATION = "authorization"
BEARER = "bearer "
TOKEN_PREFIX = "vt."
ROOT_PRINCIPAL = "root"
# Bounds on what one node remembers; when full, the cache starts over (entries are cheap to reload).
_MAX_CACHED_TOKENS = 20_000
_MAX_CACHED_POLICY_SETS = 1_000


@dataclass(frozen=True)
class Principal:
    """Who a verified call comes from. `grants` is None for root (every capability)."""

    token_id: str
    name: str
    policies: tuple[str, ...]
    grants: CompiledPolicies | None
    token: TokenInfo | None = None

    @property
    def root(self) -> bool:
        return self.grants is None

    def allows(self, capability: str, vault: str) -> bool:
        return self.grants is None or self.grants.allows(capability, vault)


current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("vaultd_principal",
                                                                                      default=None)


def new_token() -> tuple[str, str, str]:
    """(token_id, bearer token `vt.<id>.<secret>`, sha256 hex of the secret): what CreateToken proposes."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return token_id, f"{TOKEN_PREFIX}{token_id}.{secret}", _sha256(secret)


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def allows(capability: str, vault: str) -> bool:
    """Whether the current call may use `capability` on `vault`; always true on a node without auth."""
    principal = current_principal.get()
    return principal is None or principal.allows(capability, vault)


def scoped_request_id(request_id: str) -> str:
    """The exactly-once key of a client request id: `<principal>/<id>`, so one principal can neither replay
    nor observe another's outcome by reusing its request id. Unchanged on a node without auth."""
    principal = current_principal.get()
    if principal is None or not request_id:
        return request_id
    return f"{principal.token_id}/{request_id}"


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying `token` (e.g. node-to-node calls with the root token)."""
    return ((AUTHORIZATION, f"Bearer {token}"),)


class Authenticator:
    """Verifies bearer tokens against the replicated tables (cached) and decides capabilities."""

    def __init__(self, machine: Any, root_token: str | None, clock: Callable[[], int] = time.time_ns) -> None:
        self._machine = machine
        self._root = root_token.encode() if root_token else None
        self._root_principal = Principal(ROOT_PRINCIPAL, ROOT_PRINCIPAL, (), None)
        self._clock = clock
        # token_id -> (revision, principal, secret hash); policy names -> (revision, compiled)
        self._tokens: dict[str, tuple[int, Principal, str]] = {}
        self._grants: dict[tuple[str, ...], tuple[int, CompiledPolicies]] = {}

    def authenticate(self, metadata: Sequence[tuple[str, Any]] | None) -> Principal:
        """The principal of a call's metadata, or UNAUTHENTICATED (ApiError)."""
        bearer = _bearer(metadata)
        if bearer is None:
            raise errors.unauthenticated("missing `authorization: Bearer <token>` metadata")
        if self._root is not None and hmac.compare_digest(bearer.encode(), self._root):
            return self._root_principal
        token_id, _, secret = bearer[len(TOKEN_PREFIX):].partition(".")
        if not bearer.startswith(TOKEN_PREFIX) or not TOKEN_ID_PATTERN.fullmatch(token_id) or not secret:
            raise errors.unauthenticated("malformed bearer token")   # and no store read for garbage ids
        found = self._token(token_id)
        if found is None or not hmac.compare_digest(_sha256(secret), found[1]):
            raise errors.unauthenticated("unknown, expired or revoked token")
        principal = found[0]
        info = principal.token
        if info is None or info.revoked or (info.expires_at and info.expires_at <= self._clock()):
            raise errors.unauthenticated("unknown, expired or revoked token")
        return principal

    def _token(self, token_id: str) -> tuple[Principal, str] | None:
        """(principal, secret hash) of a stored token, from the cache while the auth revision holds."""
        revision = self._machine.auth_revision
        cached = self._tokens.get(token_id)
        if cached is not None and cached[0] == revision:
            return cached[1], cached[2]
        try:
            info, digest = self._machine.reader().token_with_hash(token_id)
        except TokenNotFound:
            return None
        principal = Principal(info.token_id, info.name, info.policies, self._compiled(info.policies, revision), info)
        if len(self._tokens) >= _MAX_CACHED_TOKENS:
            self._tokens = {}
        self._tokens[token_id] = (revision, principal, digest)
        return principal, digest

    def _compiled(self, names: tuple[str, ...], revision: int) -> CompiledPolicies:
        """The token's policies that exist (an unknown or deleted policy grants nothing), compiled."""
        cached = self._grants.get(names)
        if cached is not None and cached[0] == revision:
            return cached[1]
        wanted = set(names)
        compiled = compile_policies([p.rules for p in self._machine.reader().policies() if p.name in wanted])
        if len(self._grants) >= _MAX_CACHED_POLICY_SETS:
            self._grants = {}
        self._grants[names] = (revision, compiled)
        return compiled

    def wrapper(self) -> HandlerWrapper:
        """The handler wrapper for build_server: authenticates every method but open health checks."""
        def wrap(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
            rule = targets.rule_for(method)
            if rule is None:
                return handler
            return _wrap(self, method, rule, handler)
        return wrap


def _bearer(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    for key, value in metadata or ():
        if key == AUTHORIZATION and isinstance(value, str) and value[:len(BEARER)].lower() == BEARER:
            return value[len(BEARER):].strip()
    return None


def authorize(principal: Principal, rule: targets.Rule, request: Any) -> None:
    """Every check of the method's rule against the request; PERMISSION_DENIED (ApiError) at the first miss.
    Without a request to name the vaults (a request stream other than import's), a vault capability is
    needed cluster-wide."""
    for check in rule.checks:
        if check.capability is None:
            continue
        for vault in (check.vaults(request) if check.vaults is not None and request is not None else [CLUSTER]):
            if not principal.allows(check.capability, vault):
                raise errors.permission_denied(check.capability, vault)


def _enter(auth: Authenticator, context: grpc.ServicerContext) -> Principal:
    """Authenticate the call and publish who it is; aborts the call with UNAUTHENTICATED."""
    try:
        principal = auth.authenticate(context.invocation_metadata())
    except errors.ApiError as exc:
        errors.abort(context, exc.failure)
    caller = current_caller.get()
    if caller is None:
        caller = Caller()
        current_caller.set(caller)
    caller.token_id, caller.name, caller.policies = principal.token_id, principal.name, principal.policies
    current_principal.set(principal)
    return principal


def _checked_import(principal: Principal, rule: targets.Rule, requests: Iterator[Any]) -> Iterator[Any]:
    """ImportVault's vault is in its first message: check the header when it arrives, before any data."""
    first = True
    for request in requests:
        if first:
            first = False
            if request is not UNDECODABLE and request.WhichOneof("chunk") == "header":
                authorize(principal, rule, request.header)
        yield request


def _wrap(auth: Authenticator, method: str, rule: targets.Rule,
          handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    deserialize, serialize = handler.request_deserializer, handler.response_serializer
    if handler.request_streaming:
        stream_behavior = handler.stream_unary or handler.stream_stream
        is_import = method == targets.IMPORT_METHOD

        def from_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            principal = _enter(auth, context)
            if is_import:
                requests = _checked_import(principal, rule, requests)
            else:
                try:
                    authorize(principal, rule, None)
                except errors.ApiError as exc:
                    errors.abort(context, exc.failure)
            return stream_behavior(requests, context)
        make = (grpc.stream_unary_rpc_method_handler if handler.stream_unary is not None
                else grpc.stream_stream_rpc_method_handler)
        return make(from_stream, deserialize, serialize)
    behavior = handler.unary_unary or handler.unary_stream

    def from_message(request: Any, context: grpc.ServicerContext) -> Any:
        principal = _enter(auth, context)
        if request is not UNDECODABLE:   # the decoding guard inside answers INVALID_ARGUMENT
            try:
                authorize(principal, rule, request)
            except errors.ApiError as exc:
                errors.abort(context, exc.failure)
        return behavior(request, context)
    make = (grpc.unary_unary_rpc_method_handler if handler.unary_unary is not None
            else grpc.unary_stream_rpc_method_handler)
    return make(from_message, deserialize, serialize)

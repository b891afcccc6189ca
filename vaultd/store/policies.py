"""Policies and tokens: the input rules apply enforces, and how a set of policies decides a capability.

Pure functions, shared by apply (validation, so every replica rejects alike) and by the API's authorization
(`decide`), so the glob syntax that is stored is exactly the syntax that is evaluated.

Decision rule: of every rule (in every policy of the token) whose `vault_glob` matches the vault name, the
most specific one decides, and it grants exactly its capabilities (default deny: no matching rule, nothing).
Specificity: a glob without wildcards beats any glob with one; then more literal characters win; rules tied
on both (e.g. the same glob in two policies) grant the union of their capabilities. So `*: [read]` plus
`prod-*: []` reads everything except the prod vaults. Cluster-wide capabilities (admin) are decided the same
way against the name `*`, which only the glob `*` matches (and `*` is never a vault name).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from vaultd.store.errors import InvalidArgument
from vaultd.store.results import PolicyRule

READ, LIST, WRITE, DELETE, EXPORT, IMPORT, ADMIN = "read", "list", "write", "delete", "export", "import", "admin"
CAPABILITIES = (READ, LIST, WRITE, DELETE, EXPORT, IMPORT, ADMIN)
CLUSTER = "*"   # the pseudo vault name cluster-wide capabilities are checked against

MAX_POLICIES = 1_000
MAX_RULES = 64
MAX_LIVE_TOKENS = 10_000
MAX_TOKEN_POLICIES = 32
MAX_TOKEN_NAME_CHARS = 128
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}", re.ASCII)
MAX_VAULT_NAME_CHARS = 64
_GLOB = re.compile(r"[A-Za-z0-9_.\-*?]{1,64}", re.ASCII)
TOKEN_ID_PATTERN = re.compile(r"[0-9a-f]{16,64}", re.ASCII)
_SHA256_HEX = re.compile(r"[0-9a-f]{64}", re.ASCII)
_MAX_DECIDED = 4096   # remembered decisions per compiled policy set


def validate_policy_name(name: object, field: str = "name") -> str:
    """Like a vault name: 1-64 of [A-Za-z0-9_.-], starting with a letter or digit."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidArgument(field, "a policy name is 1-64 of [A-Za-z0-9_.-] starting with a letter or digit")
    return name


def validate_rules(rules: object) -> tuple[PolicyRule, ...]:
    if not isinstance(rules, (tuple, list)):
        raise InvalidArgument("rules", "must be a list of rules")
    if len(rules) > MAX_RULES:
        raise InvalidArgument("rules", f"at most {MAX_RULES} rules per policy")
    seen: set[str] = set()
    out = []
    for i, rule in enumerate(rules):
        glob = getattr(rule, "vault_glob", None)
        if not isinstance(glob, str) or not _GLOB.fullmatch(glob):
            raise InvalidArgument(f"rules[{i}].vault_glob",
                                  "1-64 of [A-Za-z0-9_.-] and the wildcards * (any run) and ? (one character)")
        if glob in seen:
            raise InvalidArgument(f"rules[{i}].vault_glob", "each glob may appear once per policy")
        seen.add(glob)
        caps = getattr(rule, "capabilities", None)
        if not isinstance(caps, (tuple, list)) or any(cap not in CAPABILITIES for cap in caps):
            raise InvalidArgument(f"rules[{i}].capabilities", "capabilities are " + ", ".join(CAPABILITIES))
        out.append(PolicyRule(glob, tuple(cap for cap in CAPABILITIES if cap in caps)))   # canonical order
    return tuple(out)


def validate_token_name(name: object) -> str:
    # Control characters by code point, not str.isprintable(): its answer follows the Unicode tables of the
    # Python that runs apply, and replicas on different Pythons must agree.
    if not isinstance(name, str) or len(name) > MAX_TOKEN_NAME_CHARS or any(
            ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 or ch in "\u2028\u2029" for ch in name):
        raise InvalidArgument("name", f"a token name is at most {MAX_TOKEN_NAME_CHARS} characters, none a control "
                                      "character")
    return name


def validate_token_policies(policies: object) -> tuple[str, ...]:
    if not isinstance(policies, (tuple, list)) or len(policies) > MAX_TOKEN_POLICIES:
        raise InvalidArgument("policies", f"at most {MAX_TOKEN_POLICIES} policy names")
    names = tuple(validate_policy_name(p, "policies") for p in policies)
    return tuple(dict.fromkeys(names))


def validate_ttl(ttl: object) -> int:
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 <= ttl <= MAX_TTL_SECONDS:
        raise InvalidArgument("ttl_seconds", f"must be 0 (no expiry) to {MAX_TTL_SECONDS} seconds")
    return ttl


def validate_token_id(token_id: object) -> str:
    if not isinstance(token_id, str) or not TOKEN_ID_PATTERN.fullmatch(token_id):
        raise InvalidArgument("token_id", "16-64 lowercase hex characters")
    return token_id


def validate_secret_hash(digest: object) -> str:
    if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
        raise InvalidArgument("secret_sha256", "64 lowercase hex characters")
    return digest


def glob_match(glob: str, name: str) -> bool:
    """`*` any run, `?` one character, anything else itself; whole-name match.

    Greedy matching that backtracks only to the last `*` seen: O(len(glob) * len(name)) at worst, never the
    exponential time a backtracking regex takes on globs like `*a*a*a*a*b` (authorization runs on every
    request, on the tick thread's GIL, with names the caller chooses)."""
    g = n = 0
    star = -1
    resume = 0
    while n < len(name):
        if g < len(glob) and (glob[g] == "?" or glob[g] == name[n]):
            g += 1
            n += 1
        elif g < len(glob) and glob[g] == "*":
            star, resume = g, n
            g += 1
        elif star >= 0:
            g = star + 1
            resume += 1
            n = resume
        else:
            return False
    while g < len(glob) and glob[g] == "*":
        g += 1
    return g == len(glob)


class CompiledPolicies:
    """The rules of a set of policies, ready to decide; build once per (policy set, auth revision)."""

    __slots__ = ("_rules", "_decided")

    def __init__(self, rules: Iterable[PolicyRule]) -> None:
        compiled = []
        for rule in rules:
            literal = sum(1 for ch in rule.vault_glob if ch not in "*?")
            exact = not any(ch in "*?" for ch in rule.vault_glob)
            compiled.append(((exact, literal), rule.vault_glob, frozenset(rule.capabilities)))
        compiled.sort(key=lambda item: item[0], reverse=True)
        self._rules = tuple(compiled)
        self._decided: dict[str, frozenset[str]] = {}   # vault -> capabilities; bounded, immutable rules

    def capabilities(self, vault: str) -> frozenset[str]:
        """What the most specific matching rules grant on `vault` (CLUSTER for cluster-wide capabilities).

        A name longer than any valid vault name (the request will be refused as INVALID_VAULT_NAME when
        allowed to reach the servicer) is judged by the rules whose glob is all `*` only, and never cached:
        matching or caching megabytes of a caller's garbage would cost every other request."""
        if len(vault) > MAX_VAULT_NAME_CHARS:
            return self._decide_garbage()
        decided = self._decided.get(vault)
        if decided is None:
            decided = self._decide(vault)
            if len(self._decided) >= _MAX_DECIDED:
                self._decided = {}
            self._decided[vault] = decided
        return decided

    def _decide(self, vault: str) -> frozenset[str]:
        best = None
        granted: frozenset[str] = frozenset()
        for specificity, glob, caps in self._rules:
            if best is not None and specificity != best:
                break
            if (vault == CLUSTER and glob == "*") or (vault != CLUSTER and glob_match(glob, vault)):
                best = specificity
                granted = granted | caps
        return granted

    def _decide_garbage(self) -> frozenset[str]:
        best = None
        granted: frozenset[str] = frozenset()
        for specificity, glob, caps in self._rules:
            if best is not None and specificity != best:
                break
            if not glob.strip("*"):
                best = specificity
                granted = granted | caps
        return granted

    def allows(self, capability: str, vault: str) -> bool:
        return capability in self.capabilities(vault)


def compile_policies(policies: Sequence[Sequence[PolicyRule]]) -> CompiledPolicies:
    return CompiledPolicies(rule for rules in policies for rule in rules)

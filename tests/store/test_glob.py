"""Policy globs: the linear matcher agrees with the documented meaning (`*` any run, `?` one character) and
stays fast on globs a backtracking regex takes exponential time on; over-long vault names are judged by
all-`*` rules only."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from vaultd.store.policies import CompiledPolicies, glob_match
from vaultd.store.results import PolicyRule


def _reference(glob: str, name: str) -> bool:
    pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.fullmatch(pattern, name, re.S) is not None


@settings(max_examples=2000, deadline=None)
@given(st.text("ab.*?", min_size=1, max_size=10), st.text("ab.", max_size=12))
def test_glob_match_agrees_with_the_reference(glob: str, name: str) -> None:
    assert glob_match(glob, name) == _reference(glob, name)


def test_pathological_globs_finish() -> None:
    # A backtracking regex needs ~2^13 steps per start position here; the matcher a few thousand in all.
    assert not glob_match("*a*a*a*a*a*a*a*a*a*a*a*a*b", "a" * 64)
    assert glob_match("*a*a*a*a*a*a*a*a*a*a*a*a*b", "a" * 63 + "b")


def test_over_long_names_only_match_all_star_rules() -> None:
    rules = CompiledPolicies([PolicyRule("a*", ("read",)), PolicyRule("**", ("list",))])
    assert rules.capabilities("a" * 65) == frozenset({"list"})
    assert rules.capabilities("a" * 64) == frozenset({"read"})
    only_prefix = CompiledPolicies([PolicyRule("a*", ("read",))])
    assert only_prefix.capabilities("a" * 4_000_000) == frozenset()

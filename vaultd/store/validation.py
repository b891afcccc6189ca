"""Input rules shared by apply and by the API (which rejects bad input before proposing it).

Apply re-checks everything: the log is the authority, and a proposal may have been built by an older or buggy
node. The checks are pure functions of their arguments (and the replicated limits), so every replica rejects
identically.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from vaultd.store.errors import InvalidArgument, InvalidKey, InvalidName, ValueTooLarge

MAX_KEY_BYTES = 1024
_VAULT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}", re.ASCII)
# Vault metadata is small and bounded so that list_vaults pages stay small.
MAX_DESCRIPTION_CHARS = 1024
MAX_OWNER_CHARS = 256
MAX_TAGS = 32
MAX_TAG_CHARS = 64


def validate_vault_name(name: object) -> str:
    """1-64 characters of [A-Za-z0-9_.-], starting with a letter or digit."""
    if not isinstance(name, str):
        raise InvalidName("", "must be a string")
    if not name:
        raise InvalidName(name, "must not be empty")
    if len(name) > 64:
        raise InvalidName(name, "must be at most 64 characters")
    if not _VAULT_NAME.fullmatch(name):
        raise InvalidName(name, "must be [A-Za-z0-9_.-] starting with a letter or digit")
    return name


def validate_key(key: object) -> str:
    """1-1024 bytes of UTF-8 without NUL. Lone surrogates cannot be encoded, so they are refused too."""
    if not isinstance(key, str):
        raise InvalidKey("", "must be a string")
    if not key:
        raise InvalidKey(key, "must not be empty")
    _check_key_text(key, InvalidKey)
    return key


def validate_prefix(prefix: object) -> str:
    """Like a key but may be empty (scan/count everything)."""
    if not isinstance(prefix, str):
        raise InvalidKey("", "prefix must be a string")
    if prefix:
        _check_key_text(prefix, InvalidKey)
    return prefix


def _check_key_text(key: str, error: type[InvalidKey]) -> None:
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise error(key.encode("utf-8", "backslashreplace").decode("ascii"), "must be valid UTF-8") from None
    if size > MAX_KEY_BYTES:
        raise error(key[:64] + "...", f"must be at most {MAX_KEY_BYTES} bytes of UTF-8")
    if "\x00" in key:
        raise error(key.replace("\x00", "\\x00"), "must not contain NUL")


def validate_value(value: object, max_value_size: int, key: str | None = None) -> bytes:
    """The size check the API also runs before proposing; `max_value_size` is the replicated limit."""
    if not isinstance(value, (bytes, bytearray)):
        raise InvalidArgument("value", "must be bytes")
    if len(value) > max_value_size:
        raise ValueTooLarge(len(value), max_value_size, key)
    return bytes(value)


def validate_expected_version(expected: object, field: str = "expected_version") -> int | None:
    if expected is None:
        return None
    if not isinstance(expected, int) or isinstance(expected, bool) or not 0 <= expected < 1 << 63:
        raise InvalidArgument(field, "must be a non-negative 64-bit integer")
    return expected


def validate_text(value: object, field: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(field, "must be a string")
    if len(value) > max_chars:
        raise InvalidArgument(field, f"must be at most {max_chars} characters")
    if "\x00" in value:
        raise InvalidArgument(field, "must not contain NUL")
    return value


def validate_tags(tags: object) -> tuple[str, ...]:
    if isinstance(tags, str) or not isinstance(tags, Sequence):
        raise InvalidArgument("tags", "must be a list of strings")
    if len(tags) > MAX_TAGS:
        raise InvalidArgument("tags", f"at most {MAX_TAGS} tags")
    return tuple(validate_text(t, "tags", MAX_TAG_CHARS) for t in tags)


def prefix_successor(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (None: no upper bound).

    SQLite compares TEXT with memcmp over UTF-8, and UTF-8 byte order equals code point order, so incrementing
    the last code point (skipping the surrogate block, which UTF-8 cannot hold) gives the byte-successor range
    `prefix <= key < successor`: an index range scan that treats %, _ and every other character literally.
    """
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:
                nxt = 0xE000
            chars.append(chr(nxt))
            return "".join(chars)
    return None

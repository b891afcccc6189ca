"""Output for the CLI: `-o table` for people, `-o json` for scripts; progress on stderr.

Secret values are printed only when the user asked (`--reveal`); otherwise entries show their size, so a
shared terminal or a CI log never shows a secret by accident.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import IO, Any

from google.protobuf.message import Message

from vaultd.client import message_to_dict
from vaultd.v1 import vault_pb2


def entry_dict(entry: vault_pb2.Entry, reveal: bool, keys_only: bool = False) -> dict[str, Any]:
    """Entry as JSON-able data: value (base64 and, when it is UTF-8, text) only with reveal."""
    data = message_to_dict(entry)
    data.pop("value", None)
    if not keys_only:
        data["value_size"] = len(entry.value)
        if reveal:
            data["value_base64"] = base64.b64encode(entry.value).decode()
            text = _utf8(entry.value)
            if text is not None:
                data["value"] = text
    return data


def _utf8(value: bytes) -> str | None:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def value_text(value: bytes) -> str:
    """How a table shows a revealed value: the text if UTF-8, else base64 marked as such."""
    text = _utf8(value)
    return text if text is not None else "base64:" + base64.b64encode(value).decode()


def to_data(obj: Any) -> Any:
    if isinstance(obj, Message):
        return message_to_dict(obj)
    if isinstance(obj, (list, tuple)):
        return [to_data(o) for o in obj]
    return obj


def print_json(obj: Any, out: IO[str] | None = None) -> None:
    out = out or sys.stdout
    json.dump(to_data(obj), out, indent=2, sort_keys=False, ensure_ascii=False)
    out.write("\n")


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], out: IO[str] | None = None) -> None:
    out = out or sys.stdout
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    out.write("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")


def print_fields(fields: Iterable[tuple[str, Any]], out: IO[str] | None = None) -> None:
    """One `name: value` line per field (a single object in table mode)."""
    out = out or sys.stdout
    pairs = [(k, _cell(v)) for k, v in fields]
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        out.write(f"{(key + ':').ljust(width + 1)} {value}\n")


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_cell(v) for v in value)
    if hasattr(value, "ToJsonString") and hasattr(value, "seconds"):
        return value.ToJsonString() if (value.seconds or value.nanos) else "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class Progress:
    """A one-line progress bar on stderr, redrawn at most 10 times a second; silent when disabled.

    Enabled by default only when stderr is a terminal, so scripts and captured output stay clean.
    """

    def __init__(self, label: str, total: int | None, enabled: bool, out: IO[str] | None = None) -> None:
        self.label = label
        self.total = total
        self.enabled = enabled
        self.out = out or sys.stderr
        self.start = time.monotonic()
        self._last_draw = 0.0
        self._done = 0

    def update(self, done: int) -> None:
        self._done = done
        now = time.monotonic()
        if self.enabled and now - self._last_draw >= 0.1:
            self._last_draw = now
            self._draw(final=False)

    def finish(self) -> None:
        if self.enabled:
            self._draw(final=True)

    def _draw(self, final: bool) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-6)
        rate = human_bytes(self._done / elapsed) + "/s"
        if self.total:
            frac = min(self._done / self.total, 1.0)
            bar = ("#" * int(frac * 30)).ljust(30)
            line = f"{self.label} [{bar}] {frac * 100:5.1f}% {human_bytes(self._done)} {rate}"
        else:
            line = f"{self.label} {human_bytes(self._done)} {rate}"
        self.out.write("\r" + line + ("\n" if final else ""))
        self.out.flush()

"""What the CLI prints: aligned tables, JSON, and printable text.

Everything a row, a generator or the database controls is passed through printable() before it reaches a
terminal: control characters (escape sequences), Unicode format characters (bidi overrides, zero-width)
and line separators are shown as escapes, so a hostile generator name cannot repaint or reorder the
admin's screen. JSON output escapes every non-ASCII character.
"""

from __future__ import annotations

import datetime
import decimal
import json
import unicodedata
import uuid
from collections.abc import Sequence
from typing import Any

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn"})


def printable(text: str) -> str:
    """text with every character a terminal would act on (or hide) written as a Python escape."""
    if text.isprintable() and text.isascii():
        return text
    out = []
    for ch in text:
        if unicodedata.category(ch) not in _UNSAFE_CATEGORIES:
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def cell(value: Any) -> str:
    """One table cell, printable."""
    if value is None:
        return ""
    if isinstance(value, datetime.timedelta):
        seconds = int(value.total_seconds())
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
            f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
    if isinstance(value, datetime.datetime):
        if value in (datetime.datetime.min, datetime.datetime.max):
            return "-infinity" if value == datetime.datetime.min else "infinity"
        return value.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (dict, list)):
        return printable(json.dumps(value, ensure_ascii=False))
    return printable(str(value))


MAX_CELL = 200  # a table cell is cut here: one huge value must not pad every line to its width (--json is whole)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """An aligned text table (as psql prints one); cells longer than MAX_CELL are cut, marked with …."""
    cells = [[_cut(cell(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
             "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (datetime.datetime, uuid.UUID, decimal.Decimal)):
        return str(value)
    raise TypeError(type(value).__name__)


def to_json(value: Any) -> str:
    """One line of JSON, ASCII only (so no character can act on a terminal)."""
    return json.dumps(value, default=_json_default, ensure_ascii=True)


def records(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """asyncpg records as dicts, with a jsonb `detail` decoded."""
    out = []
    for r in rows:
        item = dict(r)
        if isinstance(item.get("detail"), str):
            item["detail"] = json.loads(item["detail"])
        out.append(item)
    return out

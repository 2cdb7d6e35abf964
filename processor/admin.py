"""The admin API from a shell: each command is one call of the SQL admin API (SPEC 3.6), so psql and
the CLI never disagree. Output: aligned tables on a terminal, JSON with --json.
"""

from __future__ import annotations

import datetime
import decimal
import json
import sys
import uuid
from collections.abc import Sequence
from typing import Any, TextIO

from processor import db
from processor.config import Settings
from processor.errors import UsageError

OVERVIEW = "SELECT * FROM genretry.overview"
STUCK = """SELECT id, user_id, generator, status, retries, attempt, overdue_by, last_outcome, reason
           FROM genretry.stuck ORDER BY deadline_at LIMIT $1"""


def parse_id(text: str) -> uuid.UUID:
    """A generation id, or a usage error (exit 2) before anything touches the database."""
    try:
        return uuid.UUID(text)
    except ValueError as exc:
        raise UsageError(f"{text[:60]!r} is not a generation id (a UUID)") from exc


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime.timedelta):
        seconds = int(value.total_seconds())
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
            f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """An aligned text table (as psql prints one)."""
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
             "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (datetime.datetime, uuid.UUID, decimal.Decimal)):
        return str(value)
    raise TypeError(type(value).__name__)


def _records(rows: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        item = dict(r)
        if isinstance(item.get("detail"), str):
            item["detail"] = json.loads(item["detail"])
        out.append(item)
    return out


async def status(settings: Settings, *, as_json: bool, limit: int = 50, out: TextIO = sys.stdout) -> int:
    """The overview and the stuck rows with their reason."""
    conn = await db.connect(settings.database_url)
    try:
        overview = _records(await db.admin_call(conn, OVERVIEW))
        stuck = _records(await db.admin_call(conn, STUCK, limit))
    finally:
        await conn.close()
    if as_json:
        print(json.dumps({"overview": overview, "stuck": stuck}, default=_json_default), file=out)
        return 0
    print("overview (live generations; retries and failures in the last hour)", file=out)
    print(table(overview, ["generator", "status", "rows", "due", "oldest_overdue", "retries_1h",
                           "failed_deliveries_1h", "failures_1h", "circuit"]) if overview else "  (nothing live)",
          file=out)
    print(f"\nstuck ({len(stuck)}{'+' if len(stuck) == limit else ''})", file=out)
    print(table(stuck, ["id", "generator", "status", "retries", "attempt", "overdue_by", "reason"]) if stuck
          else "  (nothing stuck)", file=out)
    return 0


async def call(settings: Settings, sql: str, *args: Any, out: TextIO = sys.stdout) -> int:
    """One admin function that returns a sentence (reset, retry_now, give_up)."""
    conn = await db.connect(settings.database_url)
    try:
        rows = await db.admin_call(conn, sql, *args)
    finally:
        await conn.close()
    print(rows[0][0], file=out)
    return 0


async def history(settings: Settings, generation_id: uuid.UUID, *, as_json: bool, out: TextIO = sys.stdout) -> int:
    conn = await db.connect(settings.database_url)
    try:
        rows = _records(await db.admin_call(conn, "SELECT * FROM genretry.history($1)", generation_id))
    finally:
        await conn.close()
    if as_json:
        print(json.dumps(rows, default=_json_default), file=out)
    else:
        print(table(rows, ["at", "attempt", "event", "worker", "actor", "detail"]) if rows else "(no events)",
              file=out)
    return 0

"""The admin API from a shell: each command calls the SQL admin API (SPEC 3.6), so psql and the CLI never
disagree. Output: aligned tables on a terminal, JSON with --json; everything from the database printable.

Every database error becomes one line and an exit code here: 2 when the operator must change something
(schema missing, no rights, a bad argument), 1 otherwise (unknown id, a live lease, the server down).
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

import asyncpg

from processor import db
from processor.config import Settings
from processor.errors import EXIT_USAGE, DatabaseError, NotFoundError, SchemaError, UsageError
from processor.output import printable, records, table, to_json

OVERVIEW = "SELECT * FROM genretry.overview"
STUCK = """SELECT id, user_id, generator, status, retries, attempt, overdue_by, last_outcome, reason
           FROM genretry.stuck ORDER BY deadline_at LIMIT $1"""
FAILED = "SELECT * FROM genretry.failed($1, $2, $3, $4)"
HISTORY = "SELECT * FROM genretry.history($1)"
ROWS = """SELECT id, generator, status, retry_count, lease_until > now() AS in_flight
          FROM public.generation_history WHERE id = ANY($1::uuid[]) ORDER BY id"""
SENTENCES = {
    "reset": "SELECT genretry.reset($1, force => $2)",
    "retry-now": "SELECT genretry.retry_now($1, force => $2)",
    "give-up": "SELECT genretry.give_up($1, $3, force => $2)",
}
_MISSING_SCHEMA = (asyncpg.UndefinedTableError, asyncpg.UndefinedFunctionError, asyncpg.InvalidSchemaNameError,
                   asyncpg.UndefinedColumnError)


class AccessError(DatabaseError):
    """The login role lacks a right the command needs."""

    exit_code = EXIT_USAGE


class BadArgumentError(DatabaseError):
    """The database refused an argument."""

    exit_code = EXIT_USAGE


def parse_id(text: str) -> uuid.UUID:
    """A generation id, or a usage error (exit 2) before anything touches the database."""
    try:
        return uuid.UUID(text)
    except ValueError as exc:
        raise UsageError(f"{printable(text[:60])!r} is not a generation id (a UUID)") from exc


def _one_line(exc: asyncpg.PostgresError) -> str:
    hint = f" ({exc.hint})" if getattr(exc, "hint", None) else ""
    return printable(f"{exc.message}{hint}".splitlines()[0] if exc.message else type(exc).__name__)


async def fetch(conn: db.Conn, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Run one admin call; every refusal of the database becomes a ProcessorError of one line."""
    try:
        return list(await conn.fetch(sql, *args))
    except asyncpg.NoDataFoundError as exc:
        raise NotFoundError(_one_line(exc)) from exc
    except _MISSING_SCHEMA as exc:
        raise SchemaError(f"the database has no genretry admin API or an older one ({_one_line(exc)}): "
                          "run `processor migrate`") from exc
    except asyncpg.InsufficientPrivilegeError as exc:
        raise AccessError(f"permission denied: {_one_line(exc)} (connect as a role granted genretry_admin)") \
            from exc
    except (asyncpg.InvalidParameterValueError, asyncpg.DataError) as exc:
        raise BadArgumentError(_one_line(exc)) from exc
    except asyncpg.PostgresError as exc:
        raise DatabaseError(_one_line(exc)) from exc
    except (asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        raise DatabaseError(f"the database connection failed: {printable(str(exc) or type(exc).__name__)}") \
            from exc


@contextlib.asynccontextmanager
async def session(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await db.connect(settings.database_url)
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            await conn.close()


def emit(out: TextIO, as_json: bool, data: Any, text: str) -> None:
    print(to_json(data) if as_json else text, file=out)


async def status(settings: Settings, *, as_json: bool, limit: int = 50, out: TextIO = sys.stdout) -> int:
    """The overview and the stuck rows with their reason."""
    async with session(settings) as conn:
        overview = records(await fetch(conn, OVERVIEW))
        stuck = records(await fetch(conn, STUCK, limit))
    if as_json:
        emit(out, True, {"overview": overview, "stuck": stuck}, "")
        return 0
    lines = ["overview (live generations; retries and failures in the last hour)",
             table(overview, ["generator", "status", "rows", "due", "oldest_overdue", "retries_1h",
                              "failed_deliveries_1h", "failures_1h", "circuit"]) if overview else "  (nothing live)",
             f"\nstuck ({len(stuck)}{'+' if len(stuck) == limit else ''})",
             table(stuck, ["id", "generator", "status", "retries", "attempt", "overdue_by", "reason"]) if stuck
             else "  (nothing stuck)"]
    print("\n".join(lines), file=out)
    return 0


async def call(settings: Settings, command: str, generation_id: uuid.UUID, force: bool, *extra: Any,
               as_json: bool = False, out: TextIO = sys.stdout) -> int:
    """One admin function that returns a sentence (reset, retry_now, give_up)."""
    async with session(settings) as conn:
        rows = await fetch(conn, SENTENCES[command], generation_id, force, *extra)
    message = printable(str(rows[0][0]))
    emit(out, as_json, {"id": generation_id, "ok": True, "message": message}, message)
    return 0


async def history(settings: Settings, generation_id: uuid.UUID, *, as_json: bool, out: TextIO = sys.stdout) -> int:
    async with session(settings) as conn:
        rows = records(await fetch(conn, HISTORY, generation_id))
    emit(out, as_json, rows,
         table(rows, ["at", "attempt", "event", "worker", "actor", "detail"]) if rows else "(no events)")
    return 0


@dataclass(frozen=True)
class FailedFilter:
    generator: str | None = None
    since: datetime | None = None
    reason: str | None = None
    limit: int = 50


async def failed(settings: Settings, where: FailedFilter, *, as_json: bool, out: TextIO = sys.stdout) -> int:
    """Failed generations, newest first, with how each failed."""
    async with session(settings) as conn:
        rows, more = await _failed_rows(conn, where)
    emit(out, as_json, rows,
         (table(rows, ["id", "generator", "failed_at", "retry_count", "how", "error_message"]) if rows
          else "(no failed generations match)") + _more_note(more, where, "listed"))
    return 0


async def _failed_rows(conn: asyncpg.Connection, where: FailedFilter) -> tuple[list[dict[str, Any]], bool]:
    """The newest `limit` failed rows the filter selects, and whether more match (one row more is read)."""
    rows = records(await fetch(conn, FAILED, where.generator, where.since, where.reason, where.limit + 1))
    return rows[:where.limit], len(rows) > where.limit


def _more_note(more: bool, where: FailedFilter, done: str) -> str:
    """For a reader of the table: the filter selects more rows than --limit let through."""
    from processor.cli_admin import MAX_LIMIT  # the CLI's bound (it imports this module lazily)

    if not more:
        return ""
    return (f"\nmore failed generations match: only the newest {where.limit} were {done} (--limit, up to "
            f"{MAX_LIMIT}; or narrow with --generator, --since, --reason)")


async def reset_many(settings: Settings, ids: Sequence[uuid.UUID] | None, where: FailedFilter | None, *,
                     force: bool, dry_run: bool, as_json: bool, out: TextIO = sys.stdout) -> int:
    """Reset the given ids, or the failed rows the filter selects; each in its own transaction.

    With dry_run, list what would be reset and change nothing. Exit 1 when any id was refused.
    """
    async with session(settings) as conn:
        more = False
        if ids is None:
            assert where is not None
            selected, more = await _failed_rows(conn, where)
            ids = [r["id"] for r in selected]
        note = _more_note(more, where, "reset") if where is not None else ""
        if dry_run:
            rows = records(await fetch(conn, ROWS, list(ids)))
            found = {r["id"] for r in rows}
            rows += [{"id": i, "status": "(not found)"} for i in ids if i not in found]
            emit(out, as_json, {"dry_run": True, "would_reset": rows, **({"more_match": more} if where else {})},
                 f"would reset {len(found)} generation(s)" + (f":\n{table(rows, list(ROWS_COLUMNS))}" if rows else "")
                 + note.replace("were reset", "would be reset"))
            return 0 if len(found) == len(ids) else 1
        results = []
        for generation_id in ids:
            try:
                message = printable(str((await fetch(conn, SENTENCES["reset"], generation_id, force))[0][0]))
                results.append({"id": generation_id, "ok": True, "message": message})
            except DatabaseError as exc:
                if isinstance(exc, (AccessError, BadArgumentError)):
                    raise
                results.append({"id": generation_id, "ok": False, "message": str(exc)})
    refused = [r for r in results if not r["ok"]]
    emit(out, as_json, {"dry_run": False, "results": results, **({"more_match": more} if where else {})},
         "\n".join(str(r["message"]) if r["ok"] else f"{r['id']}: refused: {r['message']}" for r in results)
         + f"\nreset {len(results) - len(refused)} of {len(results)} generation(s)" + note)
    return 1 if refused else 0


ROWS_COLUMNS = ("id", "generator", "status", "retry_count", "in_flight")

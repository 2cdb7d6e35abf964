"""Apply sql/ to a database: numbered migrations once each, then the code files (functions, views).

The only module that reads migration files. Migrations are state and append-only: each is applied once,
in its own transaction, recorded with a checksum; an applied migration whose file changed is refused.
Code files are re-applied (CREATE OR REPLACE) in one transaction whenever their combined checksum changes,
so a second run with nothing new changes nothing. Everything happens under an advisory lock, so two
concurrent runs are safe: the second waits, then finds nothing to do.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import asyncpg

from processor.db import Conn
from processor.errors import DatabaseError, MigrationError, SchemaError

# pg_advisory_lock key: the first 8 bytes of sha256("genretry.migrate"), as a signed bigint.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"genretry.migrate").digest()[:8], "big", signed=True)

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS genretry;
CREATE TABLE IF NOT EXISTS genretry.schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS genretry.schema_code (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True)
class SqlFile:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class Migration(SqlFile):
    version: int = 0


@dataclass
class MigrateReport:
    applied: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    code_applied: bool = False
    code_pending: bool = False
    version: int = 0


def sql_dir() -> Path:
    """The sql/ directory: inside the installed package, or beside it in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "sql", here.parent / "sql"):
        if (candidate / "migrations").is_dir():
            return candidate
    raise SchemaError(f"sql/ not found beside {here}: the installation is incomplete")


@cache
def migrations() -> tuple[Migration, ...]:
    """The migrations shipped with this version, in order."""
    found = []
    for path in sorted((sql_dir() / "migrations").glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise SchemaError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append(Migration(name=path.name, sql=path.read_text(), version=int(match.group(1))))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise SchemaError("two migration files share a version number")
    return tuple(found)


@cache
def code_files() -> tuple[SqlFile, ...]:
    """Functions, triggers and views, in the order they are applied."""
    return tuple(SqlFile(p.name, p.read_text()) for p in sorted((sql_dir() / "code").glob("*.sql")))


def code_checksum() -> str:
    digest = hashlib.sha256()
    for f in code_files():
        digest.update(f.name.encode() + b"\0" + f.sql.encode() + b"\0")
    return digest.hexdigest()


def required_version() -> int:
    """The schema version this processor needs: its newest migration."""
    return migrations()[-1].version


async def migrate(conn: asyncpg.Connection, *, dry_run: bool = False) -> MigrateReport:
    """Bring the database up to date (or, with dry_run, report what that would do)."""
    report = MigrateReport()
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        try:
            applied = await _applied(conn, create=not dry_run)
            _check_checksums(applied)
            todo = [m for m in migrations() if m.version not in applied]
            code_current = await _code_checksum_in_db(conn) == code_checksum()
            if dry_run:
                report.pending = [m.name for m in todo]
                report.code_pending = bool(todo) or not code_current
                report.version = max(applied, default=0)
                return report
            for m in todo:
                async with conn.transaction():
                    await conn.execute(m.sql)
                    await conn.execute(
                        "INSERT INTO genretry.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        m.version, m.name, m.checksum,
                    )
                report.applied.append(m.name)
            if todo or not code_current:
                async with conn.transaction():
                    for f in code_files():
                        await conn.execute(f.sql)
                    await conn.execute(
                        """INSERT INTO genretry.schema_code (singleton, checksum) VALUES (true, $1)
                           ON CONFLICT (singleton) DO UPDATE SET checksum = $1, applied_at = now()""",
                        code_checksum(),
                    )
                report.code_applied = True
            report.version = max([*applied, *(m.version for m in todo)], default=0)
            return report
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    except asyncpg.PostgresError as exc:
        raise DatabaseError(f"migration failed: {exc}") from exc


def script(todo: Sequence[Migration], *, code: bool) -> str:
    """The SQL `migrate` would run for these migrations (and the code files), for psql or another tool.

    Each migration in its own transaction with its schema_migrations row, then the code files in one, so a
    database migrated from this script is one `processor migrate` and `processor run` accept.
    """
    parts = [f"-- generation-processor schema: {len(todo)} migration(s){' and the code files' if code else ''}",
             _BOOTSTRAP.strip()]
    for m in todo:
        parts += [f"-- {m.name}", "BEGIN;", m.sql.strip(),
                  "INSERT INTO genretry.schema_migrations (version, name, checksum) VALUES "
                  f"({m.version}, '{m.name}', '{m.checksum}');", "COMMIT;"]
    if code or todo:
        parts.append("BEGIN;")
        for f in code_files():
            parts += [f"-- code: {f.name}", f.sql.strip()]
        parts += ["INSERT INTO genretry.schema_code (singleton, checksum) VALUES (true, "
                  f"'{code_checksum()}') ON CONFLICT (singleton) DO UPDATE SET checksum = EXCLUDED.checksum, "
                  "applied_at = now();", "COMMIT;"]
    return "\n".join(parts) + "\n"


async def check_schema(conn: Conn) -> tuple[int, bool]:
    """Return (schema version, whether the functions match ours), or raise SchemaError naming the fix.

    Missing migrations refuse: the processor would call what is not there. Different function code only
    warns (the caller logs it): a newer processor may have migrated while this one still runs.
    """
    applied = await _applied(conn, create=False)
    version = max(applied, default=0)
    if any(m.version not in applied for m in migrations()):
        raise SchemaError(
            f"database schema is at version {version}, this processor needs {required_version()}: "
            "run `processor migrate`"
        )
    _check_checksums(applied)
    return version, await _code_checksum_in_db(conn) == code_checksum()


async def _applied(conn: Conn, *, create: bool) -> dict[int, str]:
    if create:
        await conn.execute(_BOOTSTRAP)
    elif await conn.fetchval("SELECT to_regclass('genretry.schema_migrations')") is None:
        return {}
    rows = await conn.fetch("SELECT version, checksum FROM genretry.schema_migrations")
    return {r["version"]: r["checksum"] for r in rows}


async def _code_checksum_in_db(conn: Conn) -> str | None:
    if await conn.fetchval("SELECT to_regclass('genretry.schema_code')") is None:
        return None
    value: str | None = await conn.fetchval("SELECT checksum FROM genretry.schema_code")
    return value


def _check_checksums(applied: dict[int, str]) -> None:
    for m in migrations():
        if m.version in applied and applied[m.version] != m.checksum:
            raise MigrationError(
                f"migration {m.name} was changed after it was applied (checksum differs): "
                "migrations are append-only; restore the file and add a new migration instead"
            )

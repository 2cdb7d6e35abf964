"""processor migrate: once each, in order, checksummed, under a lock; adoption of a legacy table."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg
import pytest

from processor import migrate
from processor.errors import MigrationError, SchemaError
from tests.support.factories import SEED_ID


async def test_first_run_applies_everything_and_second_changes_nothing(empty_db_url: str) -> None:
    conn = await asyncpg.connect(empty_db_url)
    try:
        first = await migrate.migrate(conn)
        assert first.applied == [m.name for m in migrate.migrations()]
        assert first.code_applied
        second = await migrate.migrate(conn)
        assert second.applied == [] and not second.code_applied
        assert second.version == migrate.required_version()
        assert await migrate.check_schema(conn) == (migrate.required_version(), True)
    finally:
        await conn.close()


async def test_dry_run_lists_pending_and_changes_nothing(empty_db_url: str) -> None:
    conn = await asyncpg.connect(empty_db_url)
    try:
        report = await migrate.migrate(conn, dry_run=True)
        assert report.pending == [m.name for m in migrate.migrations()]
        assert report.code_pending
        assert await conn.fetchval("SELECT to_regnamespace('genretry')") is None
        assert await conn.fetchval("SELECT to_regclass('public.generation_history')") is None
    finally:
        await conn.close()


async def test_edited_migration_is_refused(db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("UPDATE genretry.schema_migrations SET checksum = 'x' WHERE version = 1")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate.migrate(conn)
    finally:
        await conn.close()


async def test_schema_check_names_the_command(empty_db_url: str) -> None:
    conn = await asyncpg.connect(empty_db_url)
    try:
        with pytest.raises(SchemaError, match="run `processor migrate`"):
            await migrate.check_schema(conn)
    finally:
        await conn.close()


async def test_concurrent_migrations_apply_each_file_once(empty_db_url: str) -> None:
    conns = [await asyncpg.connect(empty_db_url) for _ in range(3)]
    try:
        reports = await asyncio.gather(*(migrate.migrate(c) for c in conns))
        applied = [name for r in reports for name in r.applied]
        assert sorted(applied) == sorted(m.name for m in migrate.migrations())
        count = await conns[0].fetchval("SELECT count(*) FROM genretry.schema_migrations")
        assert count == len(migrate.migrations())
    finally:
        for c in conns:
            await c.close()


LEGACY_TABLE = """
CREATE TABLE public.generation_history (
    id uuid PRIMARY KEY,
    user_id uuid,
    status text DEFAULT 'pending',
    prompt text,
    site_url text,
    error_message text,
    admin_note text,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now()
);
"""


async def test_adopts_a_legacy_table_without_losing_a_byte(empty_db_url: str) -> None:
    conn = await asyncpg.connect(empty_db_url)
    try:
        await conn.execute(LEGACY_TABLE)
        await conn.execute(
            """INSERT INTO generation_history (id, user_id, status, prompt, admin_note, error_message,
                                               created_at, updated_at)
               VALUES ($1, gen_random_uuid(), 'generating', 'Сайт пекарні «Хліб»', 'retry:2', NULL,
                       now() - interval '3 days', now() - interval '3 days')""",
            SEED_ID,
        )
        await conn.execute(
            """INSERT INTO generation_history (id, user_id, status, prompt, admin_note, site_url)
               SELECT gen_random_uuid(), gen_random_uuid(), 'completed', 'p' || i, 'note ' || i, 'https://x/' || i
               FROM generate_series(1, 500) i"""
        )
        await conn.execute(
            """INSERT INTO generation_history (id, user_id, status, admin_note, error_message)
               VALUES (gen_random_uuid(), NULL, 'failed', 'retry:1', 'Invalid JWT structure')"""
        )
        before = await conn.fetch("SELECT id, to_jsonb(g) AS doc FROM generation_history g ORDER BY id")

        await migrate.migrate(conn)

        after = {r["id"]: r["doc"] for r in await conn.fetch(
            "SELECT id, to_jsonb(g) AS doc FROM generation_history g ORDER BY id")}
        assert len(after) == len(before)
        import json
        for r in before:
            old, new = json.loads(r["doc"]), json.loads(after[r["id"]])
            assert {k: new[k] for k in old} == old, "an original column changed"
        seed = await conn.fetchrow("SELECT * FROM generation_history WHERE id = $1", SEED_ID)
        assert seed["retry_count"] == 2
        assert seed["generator"] == "generate-website"
        assert seed["deadline_at"] is not None  # live: due (3 days old)
        assert await conn.fetchval("SELECT deadline_at <= now() FROM generation_history WHERE id = $1", SEED_ID)
        assert await conn.fetchval(
            "SELECT retry_count FROM generation_history WHERE error_message = 'Invalid JWT structure'") == 1
        assert await conn.fetchval(
            "SELECT count(*) FROM generation_history WHERE status = 'completed' AND deadline_at IS NULL") == 500
        assert await conn.fetchval(
            "SELECT count(*) FROM pg_constraint WHERE conname = 'generation_history_status_check'") == 1
        # the seed's row is found by the claim right away, and its retries are spent
        claimed = await conn.fetch("SELECT * FROM genretry.claim('w', 10, '1 min')")
        assert [(r["id"], r["action"]) for r in claimed] == [(SEED_ID, "exhausted")]
    finally:
        await conn.close()


async def test_adoption_keeps_unknown_statuses_and_skips_the_check(empty_db_url: str) -> None:
    conn = await asyncpg.connect(empty_db_url)
    try:
        await conn.execute(LEGACY_TABLE)
        await conn.execute(
            "INSERT INTO generation_history (id, user_id, status) "
            "VALUES (gen_random_uuid(), gen_random_uuid(), 'cancelled')")
        await migrate.migrate(conn)
        assert await conn.fetchval("SELECT status FROM generation_history") == "cancelled"
        assert await conn.fetchval(
            "SELECT count(*) FROM pg_constraint WHERE conname = 'generation_history_status_check'") == 0
        # the application can still write the status it always wrote
        await conn.execute(
            "INSERT INTO generation_history (id, user_id, status) "
            "VALUES (gen_random_uuid(), gen_random_uuid(), 'cancelled')")
    finally:
        await conn.close()


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "processor", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60)


def test_cli_migrate_without_database_url_is_one_line_exit_2() -> None:
    result = _cli("migrate", env={"DATABASE_URL": ""})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "processor: config: DATABASE_URL: required (postgresql://user:password@host:5432/dbname)"]


def test_cli_migrate_unreachable_database_is_one_line_exit_1() -> None:
    result = _cli("migrate", env={"DATABASE_URL": "postgresql://u:hunter2@127.0.0.1:1/nope"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot connect to the database at 127.0.0.1:1/nope" in lines[0]
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


def test_cli_migrate_refuses_an_edited_migration_with_exit_2(db_url: str) -> None:
    async def tamper() -> None:
        c = await asyncpg.connect(db_url)
        await c.execute("UPDATE genretry.schema_migrations SET checksum = 'x' WHERE version = 1")
        await c.close()

    asyncio.run(tamper())
    result = _cli("migrate", env={"DATABASE_URL": db_url})
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "0001_genretry_schema.sql was changed" in result.stderr


def test_cli_migrate_twice_then_dry_run_says_up_to_date(empty_db_url: str) -> None:
    first = _cli("migrate", env={"DATABASE_URL": empty_db_url})
    assert first.returncode == 0 and "applied 0001_genretry_schema.sql" in first.stdout
    second = _cli("migrate", env={"DATABASE_URL": empty_db_url})
    assert second.returncode == 0 and "up to date" in second.stdout and "applied" not in second.stdout
    dry = _cli("migrate", "--dry-run", env={"DATABASE_URL": empty_db_url})
    assert dry.returncode == 0 and dry.stdout.startswith("up to date")

"""Least privilege (issue 7): what genretry_processor, genretry_admin and an application role can do."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.support.factories import make_generation
from tests.support.pg import as_role


@pytest.fixture
async def app_role(conn: asyncpg.Connection) -> AsyncIterator[str]:
    """An application role like the platform's service_role: table rights, nothing in schema genretry."""
    name = "genretry_test_app"
    await conn.execute(f"DROP ROLE IF EXISTS {name}")
    await conn.execute(f"CREATE ROLE {name}")
    await conn.execute(f"GRANT SELECT, INSERT, UPDATE ON generation_history TO {name}")
    yield name
    await conn.execute("RESET ROLE")
    await conn.execute(f"REVOKE ALL ON generation_history FROM {name}")
    await conn.execute(f"DROP ROLE {name}")


@pytest.mark.parametrize("sql", [
    "SELECT * FROM generation_history",
    "UPDATE generation_history SET status = 'failed'",
    "SELECT * FROM genretry.events",
    "SELECT * FROM genretry.policy",
    "SELECT genretry.reset(gen_random_uuid())",
    "SELECT genretry.give_up(gen_random_uuid(), 'x')",
    "SELECT * FROM genretry.stuck",
    "SELECT * FROM pg_catalog.pg_authid",
])
async def test_the_daemons_role_cannot_read_or_change_tables_nor_administer(conn: asyncpg.Connection,
                                                                            sql: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_role(conn, "genretry_processor", sql)


async def test_the_daemons_role_does_its_job(conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, due=True)
    claimed = await as_role(conn, "genretry_processor", "SELECT * FROM genretry.claim('w', 10, '1 minute')")
    assert [c["id"] for c in claimed] == [row_id]
    recorded = await as_role(conn, "genretry_processor",
                         "SELECT * FROM genretry.record_deliveries($1::jsonb, 'w')",
                         f'[{{"id": "{row_id}", "lease_id": "{claimed[0]["lease_id"]}", "outcome": "accepted", '
                         f'"http_status": 202}}]')
    assert recorded[0]["result"] == "recorded"
    assert (await as_role(conn, "genretry_processor", "SELECT genretry.next_wakeup()"))[0][0] is not None
    assert (await as_role(conn, "genretry_processor", "SELECT * FROM genretry.metrics_snapshot()"))[0]["due"] == 0
    assert (await as_role(conn, "genretry_processor", "SELECT max(version) FROM genretry.schema_migrations"))[0][0] >= 4


async def test_the_admin_role_administers_and_is_recorded(conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, status="failed")
    await as_role(conn, "genretry_admin", "SELECT genretry.reset($1)", row_id)
    await as_role(conn, "genretry_admin", "UPDATE genretry.policy SET max_retries = 3 WHERE generator = '*'")
    assert len(await as_role(conn, "genretry_admin", "SELECT * FROM genretry.stuck")) == 1
    assert len(await as_role(conn, "genretry_admin", "SELECT * FROM genretry.history($1)", row_id)) == 1
    actor = await conn.fetchval("SELECT actor FROM genretry.events WHERE generation_id = $1", row_id)
    assert actor == "genretry_admin"
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_role(conn, "genretry_admin", "SELECT * FROM genretry.claim('w', 10, '1 minute')")


async def test_an_application_role_writes_rows_and_the_triggers_still_work(conn: asyncpg.Connection,
                                                                           app_role: str) -> None:
    rows = await as_role(conn, app_role, "INSERT INTO generation_history (user_id, status) "
                                     "VALUES (gen_random_uuid(), 'pending') RETURNING id, deadline_at")
    assert rows[0]["deadline_at"] is not None
    await as_role(conn, app_role, "UPDATE generation_history SET status = 'generating' WHERE id = $1", rows[0]["id"])
    await as_role(conn, app_role, "UPDATE generation_history SET heartbeat_at = now() + interval '1 minute' "
                              "WHERE id = $1", rows[0]["id"])
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_role(conn, app_role, "SELECT * FROM genretry.claim('w', 10, '1 minute')")


async def test_generators_report_through_their_role(conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn)
    assert (await as_role(conn, "genretry_generator", "SELECT genretry.heartbeat($1, 0)", row_id))[0][0] is True
    assert (await as_role(conn, "genretry_generator", "SELECT genretry.finish($1, 0, 'completed')", row_id))[0][0]
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_role(conn, "genretry_generator", "SELECT * FROM generation_history")

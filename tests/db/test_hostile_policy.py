"""Issue 10, class 9: the * policy row (the default of every generator) cannot be deleted, renamed or
truncated away, by an admin or by the owner; other policy rows come and go as before."""

from __future__ import annotations

import asyncpg
import pytest

from tests.support.factories import make_generation

pytestmark = pytest.mark.hostile

ATTACKS = [
    "DELETE FROM genretry.policy WHERE generator = '*'",
    "DELETE FROM genretry.policy",
    "UPDATE genretry.policy SET generator = 'generate-website' WHERE generator = '*'",
    "TRUNCATE genretry.policy",
]


async def _as(conn: asyncpg.Connection, role: str | None, sql: str) -> None:
    async with conn.transaction():
        if role:
            await conn.execute(f"SET LOCAL ROLE {role}")
        await conn.execute(sql)


@pytest.mark.parametrize("role", [None, "genretry_admin"], ids=["owner", "admin"])
@pytest.mark.parametrize("sql", ATTACKS)
async def test_the_default_policy_row_stays(conn: asyncpg.Connection, role: str | None, sql: str) -> None:
    await conn.execute("INSERT INTO genretry.policy (generator) VALUES ('generate-php-website')")
    # an admin has no TRUNCATE right at all; everything else reaches the guard
    denied = role is not None and sql.startswith("TRUNCATE")
    expected = asyncpg.InsufficientPrivilegeError if denied else asyncpg.IntegrityConstraintViolationError
    with pytest.raises(expected) as caught:
        await _as(conn, role, sql)
    if not denied:
        assert "the * row of genretry.policy is the default policy of every generator" in str(caught.value)
    assert await conn.fetchval("SELECT count(*) FROM genretry.policy WHERE generator = '*'") == 1
    # the rescue goes on: a new row gets a deadline and a due row is claimed
    fresh = await make_generation(conn)
    assert await conn.fetchval("SELECT deadline_at IS NOT NULL FROM generation_history WHERE id = $1", fresh)
    due = await make_generation(conn, due=True)
    assert [r["id"] for r in await conn.fetch("SELECT * FROM genretry.claim('w', 10, '1 minute')")] == [due]


async def test_other_policy_rows_and_the_default_settings_change_as_before(conn: asyncpg.Connection) -> None:
    await _as(conn, "genretry_admin", "INSERT INTO genretry.policy (generator) VALUES ('generate-php-website')")
    await _as(conn, "genretry_admin", "UPDATE genretry.policy SET generator = 'generate-react-website' "
                                      "WHERE generator = 'generate-php-website'")
    await _as(conn, "genretry_admin", "DELETE FROM genretry.policy WHERE generator <> '*'")
    await _as(conn, "genretry_admin",
              "UPDATE genretry.policy SET max_retries = 4, enabled = false WHERE generator = '*'")
    assert await conn.fetchval("SELECT count(*) FROM genretry.policy") == 1
    assert await conn.fetchval("SELECT max_retries FROM genretry.policy WHERE generator = '*'") == 4


@pytest.mark.parametrize("assignment", [
    "stale_after = '1000 years'", "pending_stale_after = '200000 years'", "backoff_max = '10 years'",
    "pause_for = '5 years'", "max_retries = 2000000000", "max_dispatch_failures = 2000000000",
])
async def test_absurd_policy_values_are_refused(conn: asyncpg.Connection, assignment: str) -> None:
    with pytest.raises(asyncpg.CheckViolationError, match="policy_bounded"):
        await _as(conn, "genretry_admin", f"UPDATE genretry.policy SET {assignment} WHERE generator = '*'")


async def test_the_largest_backoff_a_policy_allows_is_computed_without_overflow(conn: asyncpg.Connection) -> None:
    await conn.execute("UPDATE genretry.policy SET backoff_base = '24 hours', backoff_max = '24 hours' "
                       "WHERE generator = '*'")
    seconds = await conn.fetchval(
        "SELECT extract(epoch FROM genretry.backoff_delay(genretry.effective_policy('x'), 31, 0.5))::float8")
    assert seconds == 86400

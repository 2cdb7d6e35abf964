"""deadline_at per status and policy; heartbeats push it; updated_at is kept (SPEC 3.2)."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from tests.support.factories import make_generation, row


async def _offset(conn: asyncpg.Connection, row_id: object) -> timedelta | None:
    """deadline_at minus the moment the row's status last changed."""
    value: timedelta | None = await conn.fetchval(
        "SELECT deadline_at - greatest(heartbeat_at, status_changed_at) FROM generation_history WHERE id = $1",
        row_id)
    return value


async def test_deadline_per_status_from_the_default_policy(conn: asyncpg.Connection) -> None:
    pending = await make_generation(conn, status="pending")
    generating = await make_generation(conn, status="generating")
    completed = await make_generation(conn, status="completed")
    failed = await make_generation(conn, status="failed")
    assert await _offset(conn, pending) == timedelta(minutes=2)
    assert await _offset(conn, generating) == timedelta(minutes=7)
    assert (await row(conn, completed))["deadline_at"] is None
    assert (await row(conn, failed))["deadline_at"] is None


async def test_a_generator_policy_overrides_the_default(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "INSERT INTO genretry.policy (generator, stale_after, pending_stale_after) "
        "VALUES ('generate-php-website', '90 seconds', '30 seconds')")
    php = await make_generation(conn, generator="generate-php-website")
    other = await make_generation(conn, generator="generate-react-website")
    assert await _offset(conn, php) == timedelta(seconds=90)
    assert await _offset(conn, other) == timedelta(minutes=7)


async def test_status_changes_recompute_and_terminal_clears(conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, status="pending", age=timedelta(minutes=1))
    await conn.execute("UPDATE generation_history SET status = 'generating' WHERE id = $1", row_id)
    r = await row(conn, row_id)
    assert await _offset(conn, row_id) == timedelta(minutes=7)
    assert await conn.fetchval(
        "SELECT status_changed_at > now() - interval '5 seconds' FROM generation_history WHERE id = $1", row_id)
    await conn.execute("UPDATE generation_history SET status = 'completed' WHERE id = $1", row_id)
    r = await row(conn, row_id)
    assert r["deadline_at"] is None and r["retry_phase"] is None


async def test_heartbeat_pushes_the_deadline_beyond_the_slack(conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, age=timedelta(minutes=5))
    base = (await row(conn, row_id))["status_changed_at"]

    async def beat(after: timedelta) -> timedelta:
        await conn.execute("UPDATE generation_history SET heartbeat_at = $2 WHERE id = $1", row_id, base + after)
        deadline: timedelta = (await row(conn, row_id))["deadline_at"] - base
        return deadline

    # moves the deadline by 5 min, more than the slack (stale_after / 10 = 42 s): rewritten
    assert await beat(timedelta(minutes=5)) == timedelta(minutes=12)
    # 10 s more: within the slack, the indexed column is left alone (the update can stay HOT)
    assert await beat(timedelta(minutes=5, seconds=10)) == timedelta(minutes=12)
    # a minute more: beyond the slack again
    assert await beat(timedelta(minutes=6)) == timedelta(minutes=13)


async def test_heartbeat_function_is_fenced_on_the_attempt(conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, age=timedelta(minutes=5))
    assert await conn.fetchval("SELECT genretry.heartbeat($1, 0)", row_id) is True
    assert (await row(conn, row_id))["heartbeat_at"] is not None
    assert await conn.fetchval("SELECT genretry.heartbeat($1, 3)", row_id) is False
    with pytest.raises(asyncpg.NoDataFoundError, match="not found"):
        await conn.fetchval("SELECT genretry.heartbeat(gen_random_uuid(), 0)")


async def test_updated_at_is_kept_by_the_trigger(conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn)
    await conn.execute("UPDATE generation_history SET updated_at = now() - interval '1 day' WHERE id = $1", row_id)
    await conn.execute("UPDATE generation_history SET error_message = 'x' WHERE id = $1", row_id)
    assert await conn.fetchval(
        "SELECT updated_at > now() - interval '5 seconds' FROM generation_history WHERE id = $1", row_id)


async def test_a_due_row_with_a_fresh_heartbeat_is_corrected_not_claimed(conn: asyncpg.Connection) -> None:
    # the stored deadline is early (heartbeat within the slack): the claim fixes it and moves on
    row_id = await make_generation(conn, age=timedelta(minutes=10))
    await conn.execute(
        "UPDATE generation_history SET heartbeat_at = now() - interval '30 seconds', "
        "deadline_at = now() - interval '1 second' WHERE id = $1", row_id)
    assert await conn.fetch("SELECT * FROM genretry.claim('w', 10, '1 min')") == []
    assert await conn.fetchval(
        "SELECT deadline_at = heartbeat_at + interval '7 minutes' FROM generation_history WHERE id = $1", row_id)


async def test_a_policy_change_applies_to_live_rows_at_once(conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn)
    leased = await make_generation(conn, due=True)
    await conn.fetch("SELECT * FROM genretry.claim('w', 10, '1 minute')")
    before = (await row(conn, leased))["deadline_at"]
    await conn.execute("UPDATE genretry.policy SET stale_after = '30 seconds' WHERE generator = '*'")
    assert await _offset(conn, row_id) == timedelta(seconds=30)
    assert (await row(conn, row_id))["stale_for"] == timedelta(seconds=30)
    assert (await row(conn, leased))["deadline_at"] == before  # the processor's lease is left alone


async def test_a_heartbeat_within_the_slack_runs_no_trigger(conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn)
    r = await row(conn, row_id)
    await conn.execute("UPDATE generation_history SET updated_at = now() - interval '1 hour' WHERE id = $1", row_id)
    stamp = (await row(conn, row_id))["updated_at"]
    await conn.execute("UPDATE generation_history SET heartbeat_at = $2 WHERE id = $1", row_id,
                       r["status_changed_at"] + timedelta(seconds=5))
    after = await row(conn, row_id)
    assert after["deadline_at"] == r["deadline_at"] and after["updated_at"] == stamp

"""genretry.claim: due rows only, SKIP LOCKED between sessions, leases, re-check, exhaustion."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import asyncpg

from tests.support.factories import events, make_generation, one, row

CLAIM = "SELECT * FROM genretry.claim($1, $2, $3::text::interval, now() + $4::text::interval)"


async def claim(conn: asyncpg.Connection, worker: str = "w1", limit: int = 100, lease: str = "1 minute",
                later: str = "0") -> list[asyncpg.Record]:
    return await conn.fetch(CLAIM, worker, limit, lease, later)


async def test_only_due_live_rows_are_claimed(conn: asyncpg.Connection) -> None:
    due = await make_generation(conn, due=True)
    await make_generation(conn)  # generating, fresh
    await make_generation(conn, status="completed")
    pending_due = await make_generation(conn, status="pending", due=True)
    rows = await claim(conn)
    assert {r["id"] for r in rows} == {due, pending_due}
    assert all(r["action"] == "deliver" and r["attempt"] == 1 for r in rows)
    r = await row(conn, due)
    assert (r["retry_phase"], r["leased_by"], r["attempt"], r["retry_count"]) == ("leased", "w1", 1, 0)
    assert r["lease_until"] == r["deadline_at"]
    assert await events(conn, due) == ["claimed"]
    worker, actor = await one(conn,
        "SELECT worker, actor FROM genretry.events WHERE generation_id = $1", due)
    assert (worker, actor) == ("w1", "postgres")


async def test_claim_takes_rows_in_deadline_order_up_to_the_limit(conn: asyncpg.Connection) -> None:
    ids = [await make_generation(conn, due=True) for _ in range(5)]
    for i, row_id in enumerate(ids):
        await conn.execute(
            "UPDATE generation_history SET deadline_at = now() - $2::interval WHERE id = $1",
            row_id, timedelta(seconds=10 - i))
    assert [r["id"] for r in await claim(conn, limit=3)] == ids[:3]


async def test_two_sessions_never_claim_the_same_row(db_url: str, conn: asyncpg.Connection) -> None:
    await conn.execute(
        """INSERT INTO generation_history (user_id, status, deadline_at, status_changed_at)
           SELECT gen_random_uuid(), 'generating', now() - interval '1 second', now() - interval '1 hour'
           FROM generate_series(1, 600)""")
    sessions = [await asyncpg.connect(db_url) for _ in range(4)]

    async def drain(c: asyncpg.Connection, worker: str) -> list[uuid.UUID]:
        got: list[uuid.UUID] = []
        while batch := await c.fetch(CLAIM, worker, 7, "1 minute", "0"):
            got.extend(r["id"] for r in batch)
        return got

    try:
        results = await asyncio.gather(*(drain(c, f"w{i}") for i, c in enumerate(sessions)))
    finally:
        for c in sessions:
            await c.close()
    claimed = [i for r in results for i in r]
    assert len(claimed) == 600 and len(set(claimed)) == 600
    assert await conn.fetchval("SELECT count(*) FROM genretry.events WHERE event = 'claimed'") == 600


async def test_an_expired_lease_makes_the_row_due_again_with_the_same_attempt(conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, due=True)
    first = (await claim(conn, "w1"))[0]
    assert await claim(conn, "w2", later="30 seconds") == []  # lease still live
    second = (await claim(conn, "w2", later="61 seconds"))[0]
    assert second["id"] == row_id
    assert second["attempt"] == first["attempt"] == 1  # same Idempotency-Key on redelivery
    assert second["lease_id"] != first["lease_id"]
    # the first worker's late report is refused: its lease is no longer current
    result = await conn.fetchval(
        "SELECT result FROM genretry.record_delivery($1, $2, 'accepted', 202)", row_id, first["lease_id"])
    assert result == "stale"
    assert (await row(conn, row_id))["retry_count"] == 0


async def test_a_row_finished_while_being_read_is_left_alone(db_url: str, conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, due=True)
    other = await asyncpg.connect(db_url)
    try:
        tx = other.transaction()
        await tx.start()
        # the generator finishes the row; its transaction holds the row lock while the claim runs
        await other.execute("UPDATE generation_history SET status = 'completed' WHERE id = $1", row_id)
        assert await claim(conn) == []
        await tx.commit()
    finally:
        await other.close()
    assert await claim(conn) == []
    r = await row(conn, row_id)
    assert (r["status"], r["attempt"], r["lease_id"]) == ("completed", 0, None)


async def test_exhausted_rows_fail_with_the_count_and_an_event(conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, due=True, retry_count=2)
    rows = await claim(conn)
    assert [(r["id"], r["action"]) for r in rows] == [(row_id, "exhausted")]
    r = await row(conn, row_id)
    assert r["status"] == "failed" and r["deadline_at"] is None
    assert r["error_message"].startswith("retries exhausted: 2 automatic retries made; still generating")
    assert await events(conn, row_id) == ["exhausted"]


async def test_max_retries_comes_from_the_generators_policy(conn: asyncpg.Connection) -> None:
    await conn.execute("INSERT INTO genretry.policy (generator, max_retries) VALUES ('generate-php-website', 5)")
    row_id = await make_generation(conn, due=True, retry_count=2, generator="generate-php-website")
    assert [r["action"] for r in await claim(conn)] == ["deliver"]
    assert (await row(conn, row_id))["attempt"] == 1


async def test_disabled_generators_are_not_claimed(conn: asyncpg.Connection) -> None:
    await conn.execute("INSERT INTO genretry.policy (generator, enabled) VALUES ('generate-php-website', false)")
    await make_generation(conn, due=True, generator="generate-php-website")
    website = await make_generation(conn, due=True)
    assert [r["id"] for r in await claim(conn)] == [website]
    # the disabled row is not a wake-up; the leased row's lease end is
    assert await conn.fetchval("SELECT genretry.next_wakeup()") == (await row(conn, website))["lease_until"]
    await conn.execute("UPDATE genretry.policy SET enabled = false WHERE generator = '*'")
    await conn.execute("UPDATE genretry.policy SET enabled = true WHERE generator = 'generate-php-website'")
    assert len(await claim(conn)) == 1


async def test_next_wakeup_is_the_earliest_claimable_deadline(conn: asyncpg.Connection) -> None:
    assert await conn.fetchval("SELECT genretry.next_wakeup()") is None
    await make_generation(conn)
    soon = await make_generation(conn, status="pending")
    expected = (await row(conn, soon))["deadline_at"]
    assert await conn.fetchval("SELECT genretry.next_wakeup()") == expected


async def test_claim_validates_its_arguments(conn: asyncpg.Connection) -> None:
    for args in (("w", 0, "1 minute"), ("w", 10, "0 seconds")):
        try:
            await conn.fetch("SELECT * FROM genretry.claim($1, $2, $3::text::interval)", *args)
        except asyncpg.InvalidParameterValueError:
            continue
        raise AssertionError(f"claim accepted {args}")

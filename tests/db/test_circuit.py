"""The generator pause (circuit breaker) kept in genretry.generator_state, shared by every daemon."""

from __future__ import annotations

import asyncpg

from tests.support.factories import events, make_generation, one

CLAIM = "SELECT * FROM genretry.claim('w1', 100, '3 minutes', now() + $1::text::interval)"
RECORD = "SELECT * FROM genretry.record_delivery($1, $2, $3, $4, '{}', NULL, 'w1', now() + $5::text::interval, 0.5)"


async def _fail_five(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    for _ in range(8):
        await make_generation(conn, due=True, generator="generate-php-website")
    rows = await conn.fetch(CLAIM, "0")
    results = [await one(conn, RECORD, r["id"], r["lease_id"], "unreachable", 503, "0") for r in rows[:5]]
    return results


async def test_five_consecutive_failures_open_the_circuit(conn: asyncpg.Connection) -> None:
    results = await _fail_five(conn)
    assert [r["circuit"] for r in results] == [None, None, None, None, "opened"]
    state = await conn.fetchrow("SELECT * FROM genretry.generator_state WHERE generator = 'generate-php-website'")
    assert (state["state"], state["consecutive_failures"], state["reason"]) == (
        "open", 5, "503 from generate-php-website")
    # the paused generator's rows are not claimed; other generators' rows are
    website = await make_generation(conn, due=True)
    assert [r["id"] for r in await conn.fetch(CLAIM, "1 second")] == [website]
    # the daemon wakes when the pause ends (30 s), not before
    wake = await conn.fetchval("SELECT genretry.next_wakeup(now() + interval '1 second')")
    assert wake == state["open_until"]
    reasons = await conn.fetch("SELECT reason FROM genretry.stuck WHERE generator = 'generate-php-website'")
    assert reasons and all(r["reason"].startswith("generator paused: 503 from generate-php-website") for r in reasons)


async def test_after_the_pause_one_probe_at_a_time_then_close(conn: asyncpg.Connection) -> None:
    await _fail_five(conn)
    probe = await conn.fetch(CLAIM, "31 seconds")
    assert len(probe) == 1  # 7 rows due, one probe
    assert await conn.fetch(CLAIM, "32 seconds") == []  # while probing, nothing else
    assert await conn.fetchval(
        "SELECT state FROM genretry.generator_state WHERE generator = 'generate-php-website'") == "probing"
    result = await conn.fetchrow(RECORD, probe[0]["id"], probe[0]["lease_id"], "accepted", 202, "33 seconds")
    assert result["circuit"] == "closed"
    assert "generator_resumed" in await events(conn, probe[0]["id"])
    assert len(await conn.fetch(CLAIM, "34 seconds")) > 1


async def test_a_failed_probe_reopens_for_longer(conn: asyncpg.Connection) -> None:
    await _fail_five(conn)
    probe = (await conn.fetch(CLAIM, "31 seconds"))[0]
    result = await conn.fetchrow(RECORD, probe["id"], probe["lease_id"], "unreachable", 502, "31 seconds")
    assert result["circuit"] == "opened"
    seconds = await conn.fetchval(
        "SELECT extract(epoch FROM open_until - opened_at) FROM genretry.generator_state "
        "WHERE generator = 'generate-php-website'")
    assert seconds == 60  # 30 s doubled
    assert await conn.fetch(CLAIM, "60 seconds") == []


async def test_a_success_resets_the_consecutive_count(conn: asyncpg.Connection) -> None:
    for _ in range(6):
        await make_generation(conn, due=True)
    rows = await conn.fetch(CLAIM, "0")
    for r in rows[:4]:
        await conn.fetchrow(RECORD, r["id"], r["lease_id"], "unreachable", 503, "0")
    await conn.fetchrow(RECORD, rows[4]["id"], rows[4]["lease_id"], "accepted", 202, "0")
    result = await conn.fetchrow(RECORD, rows[5]["id"], rows[5]["lease_id"], "unreachable", 503, "0")
    assert result["circuit"] is None
    assert await conn.fetchval(
        "SELECT consecutive_failures FROM genretry.generator_state WHERE generator = 'generate-website'") == 1


async def test_outage_burns_no_retries(conn: asyncpg.Connection) -> None:
    await _fail_five(conn)
    assert await conn.fetchval(
        "SELECT max(retry_count) FROM generation_history WHERE generator = 'generate-php-website'") == 0


async def test_the_probe_skips_a_row_an_admin_holds(db_url: str, conn: asyncpg.Connection) -> None:
    """The probe row is locked like any claimed row, SKIP LOCKED: an admin's open transaction on the paused
    generator's first due row neither blocks the claim nor becomes the probe; the next due row does."""
    await _fail_five(conn)
    waiting = await conn.fetch(
        "SELECT id FROM generation_history WHERE generator = 'generate-php-website' AND status = 'generating' "
        "AND deadline_at <= now() + interval '31 seconds' ORDER BY deadline_at")
    assert len(waiting) >= 2
    admin = await asyncpg.connect(db_url)
    try:
        async with admin.transaction():
            await admin.execute("SELECT 1 FROM generation_history WHERE id = $1 FOR UPDATE", waiting[0]["id"])
            await conn.execute("SET lock_timeout = '2s'")  # a claim that waited would raise here
            probe = await conn.fetch(CLAIM, "31 seconds")
    finally:
        await admin.close()
    assert [r["id"] for r in probe] == [waiting[1]["id"]]
    state = await conn.fetchrow("SELECT * FROM genretry.generator_state WHERE generator = 'generate-php-website'")
    assert (state["state"], state["probe_lease"]) == ("probing", probe[0]["lease_id"])
    probe_flags = await conn.fetch(
        "SELECT generation_id, detail->>'probe' AS probe FROM genretry.events WHERE event = 'claimed' "
        "AND generator = 'generate-php-website' ORDER BY id")
    assert [p["probe"] for p in probe_flags] == ["false"] * 8 + ["true"]  # the five failures' claim, then the probe
    assert probe_flags[-1]["generation_id"] == waiting[1]["id"]


async def test_a_disabled_generator_is_neither_probed_nor_woken_for(conn: asyncpg.Connection) -> None:
    """`enabled = false` (README: pause one generator) outlasts its circuit's pause: no probe is sent when the pause
    ends, and the end of that pause is no work to wake for (else the daemon would wake for it at once, over and
    over: next_wakeup would keep answering a moment already past)."""
    await _fail_five(conn)
    await conn.execute("INSERT INTO genretry.policy (generator, enabled) VALUES ('generate-php-website', false)")
    assert await conn.fetch(CLAIM, "31 seconds") == []
    state = await conn.fetchrow("SELECT * FROM genretry.generator_state WHERE generator = 'generate-php-website'")
    assert (state["state"], state["probe_lease"]) == ("open", None)
    assert await conn.fetchval("SELECT genretry.next_wakeup(now() + interval '31 seconds')") is None
    await conn.execute("UPDATE genretry.policy SET enabled = true WHERE generator = 'generate-php-website'")
    assert len(await conn.fetch(CLAIM, "32 seconds")) == 1  # enabled again: the probe goes

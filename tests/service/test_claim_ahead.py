"""Claiming ahead (Scheduler.claim_ahead): rows claimed beyond the free slots wait in `ready`, start the moment a
slot frees (no claim in between), and are given back unsent, with the same attempt, at drain and when their
generator's circuit opens."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp import web

from processor.scheduler import Scheduler
from tests.support.factories import make_generation
from tests.support.http import Stub, answer, answer_after, scheduler_on, settings_for, wait_until


@pytest.fixture
async def two_slots(db_url: str, stub: Stub) -> AsyncIterator[Scheduler]:
    async with scheduler_on(db_url, stub.url, claim_ahead=2, max_connections=2, PROCESSOR_MAX_IN_FLIGHT="2",
                            PROCESSOR_BATCH_SIZE="10") as scheduler:
        yield scheduler


async def _events(conn: asyncpg.Connection, event: str) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT generation_id, attempt, detail FROM genretry.events WHERE event = $1", event)


async def test_a_freed_slot_starts_a_ready_row_without_another_claim(conn: asyncpg.Connection, stub: Stub,
                                                                   two_slots: Scheduler) -> None:
    ids = [await make_generation(conn, due=True) for _ in range(5)]
    first = await two_slots.run_once()
    assert first.claimed == 4 and first.capacity_limited  # two slots and two ahead
    assert two_slots.in_flight + len(two_slots.ready) <= 4
    await stub.wait_for(4)  # no second sweep: the ready rows went out as slots freed
    assert await conn.fetchval("SELECT count(*) FROM genretry.events WHERE event = 'claimed'") == 4
    await wait_until(lambda: _true(two_slots.outcomes["accepted"] == 4))
    second = await two_slots.run_once()
    assert second.claimed == 1
    await stub.wait_for(5)
    assert sorted(s.body["retryHistoryId"] for s in stub.seen) == sorted(str(i) for i in ids)


async def test_drain_gives_ready_rows_back_unsent_with_their_attempt(conn: asyncpg.Connection, stub: Stub,
                                                                  two_slots: Scheduler) -> None:
    stub.behaviours["generate-website"] = answer_after(0.5)
    for _ in range(4):
        await make_generation(conn, due=True)
    assert (await two_slots.run_once()).claimed == 4
    assert len(two_slots.ready) == 2
    ready = {row.id: row.attempt for row, _at in two_slots.ready}
    assert await two_slots.drain(10)
    assert len(stub.seen) == 2 and two_slots.outcomes["accepted"] == 2
    released = await _events(conn, "released")
    assert {r["generation_id"] for r in released} == set(ready)
    rows = await conn.fetch("SELECT id, attempt, retry_count, deadline_at <= now() AS due FROM generation_history "
                            "WHERE id = ANY($1)", list(ready))
    assert all(r["attempt"] == ready[r["id"]] and r["retry_count"] == 0 and r["due"] for r in rows)
    stub.behaviours.clear()
    again = await two_slots.run_once()  # due again at once, claimed with the same attempt (same Idempotency-Key)
    assert again.claimed == 2
    await stub.wait_for(4)
    keys = {s.headers["idempotency-key"] for s in stub.seen[2:]}
    assert keys == {f"{row_id}:{attempt}" for row_id, attempt in ready.items()}


async def test_a_paused_generator_gets_its_ready_rows_back(conn: asyncpg.Connection, stub: Stub,
                                                          two_slots: Scheduler) -> None:
    calls = 0

    async def refuse_then_stall(_request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls > 1:
            await asyncio.sleep(1.0)  # the second request is still in flight when the pause is recorded
        return await answer(401)(_request)

    stub.behaviours["generate-website"] = refuse_then_stall
    for _ in range(6):
        await make_generation(conn, due=True)
    two_slots.settings = settings_for(two_slots.settings.database_url, stub.url, PROCESSOR_MAX_IN_FLIGHT="1",
                                      PROCESSOR_BATCH_SIZE="10")
    two_slots.claim_ahead = 3
    assert (await two_slots.run_once()).claimed == 4  # one slot and three ahead

    async def three_released() -> bool:
        return len(await _events(conn, "released")) >= 3
    await wait_until(three_released, within_s=10)
    await two_slots.drain(10)
    released = await _events(conn, "released")
    # Only the first goes out: its 401 marks the pause before its slot starts the next ready row, which is
    # then given back unsent too (it used to be sent before the 401 was recorded).
    assert len(stub.seen) == 1
    assert len(released) == 3
    assert all("generator paused" in r["detail"] for r in released)


async def _true(value: bool) -> bool:
    return value

"""Rows claimed before their generator paused are given back unsent (processor.pauses), not only those in the
ready queue: rows whose delivery task waits for the generator's own slot (PROCESSOR_GENERATOR_IN_FLIGHT) too.
A probe claimed after the pause still goes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp import web

from processor.scheduler import Scheduler
from tests.support.factories import make_generation
from tests.support.http import Stub, answer, scheduler_on, wait_until

ROWS = 4


@pytest.fixture
async def one_per_generator(db_url: str, stub: Stub) -> AsyncIterator[Scheduler]:
    """Four slots in all, one per generator, no claiming ahead: every claimed row has its task, and all but one
    wait for the generator's slot."""
    async with scheduler_on(db_url, stub.url, claim_ahead=0, max_connections=4,
                            PROCESSOR_MAX_IN_FLIGHT=str(ROWS), PROCESSOR_GENERATOR_IN_FLIGHT="1",
                            PROCESSOR_BATCH_SIZE="10") as scheduler:
        yield scheduler


async def _released(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT generation_id, attempt, detail->>'label' AS label FROM genretry.events "
                            "WHERE event = 'released'")


async def _sweep_until_released(conn: asyncpg.Connection, scheduler: Scheduler, n: int) -> list[asyncpg.Record]:
    for _ in range(ROWS):
        await make_generation(conn, due=True)
    assert (await scheduler.run_once()).claimed == ROWS
    assert scheduler.in_flight == ROWS and not scheduler.ready

    async def released() -> bool:
        return len(await _released(conn)) >= n
    await wait_until(released, within_s=10)
    assert await scheduler.drain(10)
    return await _released(conn)


async def test_a_401_holds_back_the_rows_waiting_for_the_generator_s_slot(
        conn: asyncpg.Connection, stub: Stub, one_per_generator: Scheduler) -> None:
    stub.behaviours["generate-website"] = answer(401)
    released = await _sweep_until_released(conn, one_per_generator, ROWS - 1)
    assert len(stub.seen) == 1  # before: all four were sent, each refused
    assert len(released) == ROWS - 1 and {r["label"] for r in released} == {"released: generator paused"}
    rows = await conn.fetch("SELECT retry_count, deadline_at <= now() AS due FROM generation_history "
                            "WHERE id = ANY($1)", [r["generation_id"] for r in released])
    assert all(r["retry_count"] == 0 and r["due"] for r in rows)  # given back as they were: nothing counted
    assert await conn.fetchval("SELECT state FROM genretry.generator_state "
                               "WHERE generator = 'generate-website'") == "open"


async def test_a_pause_recorded_later_holds_back_the_rows_still_waiting(
        conn: asyncpg.Connection, stub: Stub, one_per_generator: Scheduler) -> None:
    """A 503 pauses the generator only when its record says so (pause_after_failures = 1 here): the row whose
    turn came before that record is sent; the ones after it are not."""
    await conn.execute("INSERT INTO genretry.policy (generator, pause_after_failures) "
                       "VALUES ('generate-website', 1)")

    async def slow_503(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.5)  # the second row is in flight when the first one's pause is recorded
        return await answer(503)(request)

    stub.behaviours["generate-website"] = slow_503
    released = await _sweep_until_released(conn, one_per_generator, ROWS - 2)
    assert len(stub.seen) == 2  # before: all four were sent
    assert len(released) == ROWS - 2 and {r["label"] for r in released} == {"released: generator paused"}


async def test_a_probe_claimed_after_the_pause_is_sent(
        conn: asyncpg.Connection, stub: Stub, one_per_generator: Scheduler) -> None:
    stub.behaviours["generate-website"] = answer(401)
    await _sweep_until_released(conn, one_per_generator, ROWS - 1)
    await conn.execute("UPDATE genretry.generator_state SET open_until = now() WHERE generator = 'generate-website'")
    stub.behaviours.clear()
    probe = await one_per_generator.run_once()
    assert probe.claimed == 1  # the one probe of an open circuit whose pause is over
    await stub.wait_for(2)

    async def closed() -> bool:  # the probe's record closes the circuit
        state = await conn.fetchval("SELECT state FROM genretry.generator_state "
                                    "WHERE generator = 'generate-website'")
        return bool(state == "closed")
    await wait_until(closed)
    assert one_per_generator.outcomes["accepted"] == 1

"""Adversary: rows claimed before their generator paused are given back unsent (processor.pauses, the scheduler).
Many generators, a 403, one generator's 401 beside another's success, the clock edge of a mark, a 401 that
arrives while a claim is on its way back, rows released and claimed again, and a drain while rows wait for
their generator's slot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from processor.pauses import MAX_NAMES, Pauses
from processor.scheduler import Scheduler
from tests.support.factories import make_generation
from tests.support.http import Stub, answer, answer_after, scheduler_on, wait_until

pytestmark = pytest.mark.hostile
GEN, OTHER = "generate-website", "generate-logo"
PAUSED = "released: generator paused"


@pytest.fixture
async def one_per_generator(db_url: str, stub: Stub) -> AsyncIterator[Scheduler]:
    """Eight slots in all, one per generator, no claiming ahead: rows of one generator wait for its slot."""
    async with scheduler_on(db_url, stub.url, claim_ahead=0, max_connections=8, drain_s=20,
                            PROCESSOR_MAX_IN_FLIGHT="8", PROCESSOR_GENERATOR_IN_FLIGHT="1",
                            PROCESSOR_BATCH_SIZE="10") as scheduler:
        yield scheduler


async def _released(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT generation_id, attempt, detail->>'label' AS label FROM genretry.events "
                            "WHERE event = 'released' ORDER BY id")


async def _until_released(conn: asyncpg.Connection, n: int) -> list[asyncpg.Record]:
    async def enough() -> bool:
        return len(await _released(conn)) >= n
    await wait_until(enough, within_s=20)
    return await _released(conn)


def test_a_fresh_pause_survives_other_generators_pausing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows may name any routable generator. When the table is full, marks older than a lease go first (a row
    claimed that long ago is never sent): a fresh pause is not forgotten because many others paused before.
    (It used to clear every mark at 1024 names, the one made a moment ago too.)"""
    now = [0.0]
    monkeypatch.setattr("processor.pauses.time.monotonic", lambda: now[0])
    p = Pauses(max_age_s=180.0)
    for i in range(MAX_NAMES - 1):
        p.mark(f"other-{i}")
    now[0] = 200.0  # a lease later
    p.mark(GEN)
    for i in range(10):
        now[0] += 0.001
        p.mark(f"newer-{i}")  # the table is full: the stale marks go, not the fresh one
    assert p.since(GEN, 199.0)
    assert p.since("newer-0", 199.0) and not p.since("other-0", 0.0)


def test_the_mark_s_own_instant_holds_back_and_a_close_forgets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("processor.pauses.time.monotonic", lambda: 100.0)
    p = Pauses()
    p.mark(GEN)
    assert p.since(GEN, 100.0) and p.since(GEN, 50.0)  # claimed at the very instant of the mark: held back
    assert not p.since(GEN, 100.0001)  # a probe claimed after the pause goes
    assert not p.since(OTHER, 50.0)  # another generator is not paused
    p.clear(GEN, claimed_before=99.0)  # a probe claimed before this mark closed the circuit: the mark stays
    assert p.since(GEN, 50.0)
    p.clear(GEN, claimed_before=100.0)
    assert not p.since(GEN, 50.0)


@pytest.mark.parametrize("status", [401, 403])
async def test_one_generator_s_refusal_holds_back_only_its_own_rows(
        conn: asyncpg.Connection, stub: Stub, one_per_generator: Scheduler, status: int) -> None:
    stub.behaviours[GEN] = answer(status)
    stub.behaviours[OTHER] = answer_after(0.3)  # still waiting for its slot when the pause is marked
    mine = [await make_generation(conn, due=True, generator=GEN) for _ in range(3)]
    theirs = [await make_generation(conn, due=True, generator=OTHER) for _ in range(3)]
    assert (await one_per_generator.run_once()).claimed == 6
    released = await _until_released(conn, 2)
    await wait_until(lambda: _true(one_per_generator.outcomes["accepted"] == 3), within_s=20)
    assert await one_per_generator.drain(20)
    assert sorted(s.generator for s in stub.seen) == [OTHER] * 3 + [GEN]
    assert {r["generation_id"] for r in released} <= set(mine) and len(released) == 2
    assert {r["label"] for r in released} == {PAUSED}
    assert not {r["generation_id"] for r in await _released(conn)} & set(theirs)


async def test_a_401_while_a_claim_comes_back_holds_back_what_it_claimed(
        conn: asyncpg.Connection, stub: Stub, one_per_generator: Scheduler) -> None:
    """The claim of the second row commits in the database before the first row's 401 arrives; the 401 is
    marked while the claim's answer is on its way back. That row was claimed before the pause: not sent."""
    answered = asyncio.Event()

    async def refuse_when_told(request: web.Request) -> web.StreamResponse:
        await answered.wait()
        return await answer(401)(request)

    stub.behaviours[GEN] = refuse_when_told
    await make_generation(conn, due=True)
    assert (await one_per_generator.run_once()).claimed == 1
    await stub.wait_for(1)
    second = await make_generation(conn, due=True)
    real = one_per_generator.pool

    class SlowWayBack:
        async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
            rows = await real.fetch(query, *args)  # committed: the row is claimed
            answered.set()  # the first row's 401 arrives now
            await wait_until(lambda: _true(one_per_generator.pauses.since(GEN, 0.0)), within_s=20)
            return rows

    one_per_generator.pool = SlowWayBack()  # type: ignore[assignment]
    try:
        assert (await one_per_generator.run_once()).claimed == 1
    finally:
        one_per_generator.pool = real

    async def second_done() -> bool:
        return bool(await conn.fetchval("SELECT count(*) FROM genretry.events WHERE generation_id = $1 "
                                        "AND event NOT IN ('claimed')", second))
    await wait_until(second_done, within_s=20)
    assert await one_per_generator.drain(20)
    assert len(stub.seen) == 1, [s.body["retryHistoryId"] for s in stub.seen]
    assert [r["label"] for r in await _released(conn) if r["generation_id"] == second] == [PAUSED]


async def test_released_rows_come_back_once_with_their_attempt_and_key(
        conn: asyncpg.Connection, stub: Stub, one_per_generator: Scheduler) -> None:
    stub.behaviours[GEN] = answer(401)
    for _ in range(4):
        await make_generation(conn, due=True)
    assert (await one_per_generator.run_once()).claimed == 4
    released = await _until_released(conn, 3)
    await wait_until(lambda: _true(len(one_per_generator.tasks) == 0), within_s=20)
    stub.behaviours.clear()
    await conn.execute("UPDATE genretry.generator_state SET open_until = now() WHERE generator = $1", GEN)
    assert (await one_per_generator.run_once()).claimed == 1  # the probe

    async def closed() -> bool:
        return bool(await conn.fetchval("SELECT state = 'closed' FROM genretry.generator_state "
                                        "WHERE generator = $1", GEN))
    await wait_until(closed, within_s=20)
    await wait_until(lambda: _true(len(one_per_generator.tasks) == 0), within_s=20)
    assert (await one_per_generator.run_once()).claimed == 3
    await stub.wait_for(5, within_s=20)
    assert await one_per_generator.drain(20)
    keys = stub.keys()
    assert len(stub.seen) == 5
    for r in released:
        assert keys[f"{r['generation_id']}:{r['attempt']}"] == 1, r  # never sent before: the same key, once
    assert len(await _released(conn)) == 3  # nothing released again


async def test_drain_gives_back_rows_still_waiting_for_their_generator_s_slot(
        conn: asyncpg.Connection, stub: Stub, one_per_generator: Scheduler) -> None:
    """Shutdown gives ready rows back unsent; rows whose task waits for PROCESSOR_GENERATOR_IN_FLIGHT are just as
    unsent, but drain() lets them go out one after the other (or cancels them when the grace runs out)."""
    stub.behaviours[GEN] = answer_after(1.0)
    for _ in range(4):
        await make_generation(conn, due=True)
    assert (await one_per_generator.run_once()).claimed == 4
    await stub.wait_for(1)
    assert await one_per_generator.drain(30)
    released = await _released(conn)
    assert len(stub.seen) == 1, f"{len(stub.seen)} sent after the drain began"
    assert len(released) == 3 and {r["label"] for r in released} == {"released at shutdown"}


async def _true(value: bool) -> bool:
    return value

"""The daemon's services on their own, without booting a Daemon: Scheduler.run_once and the Listener."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from processor import db, delivery
from processor.listener import Listener
from processor.scheduler import Scheduler
from tests.support.factories import make_generation
from tests.support.http import Stub, settings_for, status_of, wait_until
from tests.support.pg import as_daemon


async def test_one_sweep_claims_what_is_due_and_delivers_it(db_url: str, conn: asyncpg.Connection,
                                                            stub: Stub) -> None:
    settings = settings_for(db_url, stub.url, PROCESSOR_MAX_IN_FLIGHT="4")
    due = [await make_generation(conn, due=True) for _ in range(6)]
    later = await make_generation(conn)
    pool = await db.create_pool(as_daemon(db_url), min_size=1, max_size=4)
    client = delivery.make_client(max_connections=4, connect_timeout_s=1, response_timeout_s=2)
    scheduler = Scheduler(pool, client, settings, claim_ahead=0)  # claiming ahead: tests/service/test_claim_ahead.py
    try:
        first = await scheduler.run_once()
        assert first.claimed == 4 and first.capacity_limited  # four slots: the other two wait
        assert await scheduler.drain(10)
        second = await scheduler.run_once()
        assert second.claimed == 2 and not second.capacity_limited
        assert await scheduler.drain(10)
        assert sorted(s.body["retryHistoryId"] for s in stub.seen) == sorted(str(r) for r in due)
        assert scheduler.outcomes["accepted"] == 6
        assert (await scheduler.run_once()).claimed == 0
        assert await status_of(conn, later) == "generating"
        seconds = await scheduler.seconds_to_next_deadline()
        assert seconds is not None and seconds > 60  # the untouched row, minutes away
    finally:
        await client.aclose()
        await pool.close()


async def test_the_listener_alone_hints_and_reconnects(db_url: str, conn: asyncpg.Connection) -> None:
    hints: list[float] = []
    reconnected = asyncio.Event()
    pool = await db.create_pool(as_daemon(db_url), min_size=1, max_size=2)
    listener = Listener(as_daemon(db_url), hints.append, reconnected.set, probe_interval_s=0.2)
    stop = asyncio.Event()
    try:
        await listener.start(pool)
        task = asyncio.create_task(listener.run(stop))
        row = await make_generation(conn)
        await wait_until(lambda: _true(bool(hints)))
        deadline = await conn.fetchval("SELECT extract(epoch FROM deadline_at)::float8 FROM generation_history "
                                       "WHERE id = $1", row)
        assert abs(hints[0] - deadline) < 0.001
        # the server ends the listener's session: it notices, reconnects, and asks for a sweep
        assert listener.conn is not None
        pid = listener.conn.get_server_pid()
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
        await asyncio.wait_for(reconnected.wait(), 10)
        assert listener.healthy and listener.reconnects == 1
        hints.clear()
        await conn.execute("SELECT genretry.retry_now($1)", row)
        await wait_until(lambda: _true(bool(hints)))
        assert hints[0] <= time.time() + 0.001  # due now
        stop.set()
        await asyncio.wait_for(task, 5)
    finally:
        await listener.close()
        await pool.close()


async def _true(value: bool) -> bool:
    return value


async def test_routes_are_parsed_once_per_name_refusals_are_not_kept_and_the_memory_is_bounded(
        db_url: str, stub: Stub) -> None:
    settings = settings_for(db_url, stub.url)
    pool = await db.create_pool(as_daemon(db_url), min_size=1, max_size=1)
    client = delivery.make_client(max_connections=1, connect_timeout_s=1, response_timeout_s=1)
    scheduler = Scheduler(pool, client, settings)
    try:
        first = scheduler.urls.get("generate-website")
        assert first is scheduler.urls.get("generate-website")  # parsed once
        assert str(first) == settings.resolve("generate-website").url
        refused = scheduler.urls.get("../admin")
        assert isinstance(refused, str) and "routing key" in refused
        for i in range(3000):
            assert not isinstance(scheduler.urls.get(f"gen-{i}"), str)
            scheduler.urls.get(f"x{i}" + "/" * 100)  # hostile names: refused, never remembered
        assert len(scheduler.urls._parsed) <= 1024
        assert all("/" not in name for name in scheduler.urls._parsed)
    finally:
        await client.aclose()
        await pool.close()


async def test_a_slot_freed_between_a_full_sweep_and_the_sleep_ends_the_sleep(db_url: str, stub: Stub) -> None:
    # A sweep that filled every slot plans a sleep that a freed slot ends. A slot freed after the sweep but
    # before the sleep began was cleared by the sleep and lost (the daemon then waited for another slot or
    # the tick): the flag is now cleared when a sweep starts, and the sleep reads it first.
    from processor.daemon import Daemon
    from processor.wakeup import Do, Sleep

    settings = settings_for(db_url, stub.url, PROCESSOR_TICK="30")
    daemon = Daemon(settings)
    pool = await db.create_pool(as_daemon(db_url), min_size=1, max_size=1)
    client = delivery.make_client(max_connections=1, connect_timeout_s=1, response_timeout_s=1)
    daemon.scheduler = Scheduler(pool, client, settings)
    try:
        await daemon.scheduler.run_once()  # nothing due: clears the flag, as every sweep does
        daemon.scheduler.slot_freed.set()  # a delivery ended after the sweep, before the sleep
        started = time.monotonic()
        do = await asyncio.wait_for(daemon._sleep(Sleep(time.monotonic() + 30, Do.CLAIM, slot_ends_it=True)), 5)
        assert do is Do.CLAIM and time.monotonic() - started < 1
    finally:
        await client.aclose()
        await pool.close()

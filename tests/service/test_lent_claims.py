"""Claims on the LISTEN connection (Listener.lend): used when idle and healthy, never beside the probe, given
up for the pool when busy or in doubt, and never a way to lose or double a row."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg

from processor import db, warmup
from processor.contracts import CLAIM, NEXT
from tests.support.factories import make_generation
from tests.support.http import StartDaemon, Stub, settings_for, wait_until
from tests.support.lending import kill_listener_backend, last_query, lending, reconnected
from tests.support.pg import as_daemon


async def test_a_claim_runs_on_the_listener_connection_and_delivers(db_url: str, conn: asyncpg.Connection,
                                                                    stub: Stub) -> None:
    due = [await make_generation(conn, due=True) for _ in range(3)]
    async with lending(db_url, stub) as (scheduler, listener):
        assert listener.conn is not None
        pid = listener.conn.get_server_pid()
        result = await scheduler.run_once()
        assert result.claimed == 3 and listener.lent == 1
        assert "genretry.claim" in await last_query(conn, pid)  # the listener's own server process claimed
        await stub.wait_for(3)
    assert sorted(s.body["retryHistoryId"] for s in stub.seen) == sorted(map(str, due))
    assert listener.reconnects == 0


async def test_a_busy_listener_connection_is_not_waited_for(db_url: str, conn: asyncpg.Connection,
                                                            stub: Stub) -> None:
    await make_generation(conn, due=True)
    async with lending(db_url, stub) as (scheduler, listener):
        async with listener.lend() as held:  # someone else's statement is on it (the probe, say)
            assert held is not None
            lent = listener.lent
            result = await asyncio.wait_for(scheduler.run_once(), 5)  # the pool claims instead, at once
            assert result.claimed == 1 and listener.lent == lent
        await stub.wait_for(1)


async def test_the_probe_waits_for_a_lent_statement_instead_of_failing_beside_it(db_url: str, stub: Stub) -> None:
    # asyncpg runs one operation at a time on a connection: a probe started beside a lent claim failed with
    # "another operation is in progress", and the listener dropped a healthy connection and reconnected.
    async with lending(db_url, stub, probe_interval_s=0.05) as (_scheduler, listener):
        for _ in range(4):
            async with listener.lend() as held:
                assert held is not None
                await held.fetchval("SELECT pg_sleep(0.2)")  # several probes fall due meanwhile
            await asyncio.sleep(0.06)
        assert listener.reconnects == 0 and listener.healthy


async def test_an_admin_lock_on_the_table_times_out_a_lent_claim_and_keeps_the_connection(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    # The lent connection has the pool's lock_timeout (2 s): an admin's open transaction holding the table
    # makes the claim fail in 2 s, not hang the daemon's loop; a server-reported error keeps the session.
    row = await make_generation(conn, due=True)
    async with lending(db_url, stub) as (scheduler, listener):
        admin = await asyncpg.connect(db_url)
        try:
            transaction = admin.transaction()
            await transaction.start()
            await admin.execute("LOCK TABLE generation_history IN ACCESS EXCLUSIVE MODE")
            try:
                await asyncio.wait_for(scheduler.run_once(), 10)
                raise AssertionError("the claim should have timed out on the lock")
            except asyncpg.LockNotAvailableError:
                pass
            await transaction.rollback()
        finally:
            await admin.close()
        assert listener.healthy and not listener.lost.is_set()
        result = await scheduler.run_once()
        assert result.claimed == 1 and listener.lent == 2
        await stub.wait_for(1)
    assert stub.seen[0].body["retryHistoryId"] == str(row) and listener.reconnects == 0


async def test_a_lent_connection_that_dies_is_replaced_and_every_row_goes_out_once(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    rows = [await make_generation(conn, due=True) for _ in range(20)]
    async with lending(db_url, stub, probe_interval_s=0.2) as (scheduler, listener):
        old_pid = await kill_listener_backend(conn, listener)
        claimed = 0
        for _ in range(200):  # the first claim may meet the dead connection: an error, then the pool or the new one
            with contextlib.suppress(*db.TRANSIENT_ERRORS):
                claimed += (await scheduler.run_once()).claimed
            if claimed == len(rows) and listener.reconnects:
                break
            await asyncio.sleep(0.05)
        await wait_until(reconnected(listener, 1))
        await stub.wait_for(len(rows))
        assert listener.conn is not None and listener.conn.get_server_pid() != old_pid
        lent = listener.lent
        await make_generation(conn, due=True)
        assert (await scheduler.run_once()).claimed == 1 and listener.lent == lent + 1  # lent again, new one
        await stub.wait_for(len(rows) + 1)
    keys = stub.keys()
    assert len(keys) == len(rows) + 1 and set(keys.values()) == {1}  # each attempt delivered exactly once


async def test_warm_up_leaves_the_claim_prepared_for_the_connections_later_calls(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    # Before, warm-up called prepare(), whose statement asyncpg does not keep: the first claim on each
    # connection parsed and planned it again. Now the first lent claim prepares nothing new.
    row = await make_generation(conn, due=True)
    async with lending(db_url, stub) as (scheduler, listener):
        assert listener.conn is not None
        count = "SELECT count(*) FROM pg_prepared_statements"
        await listener.conn.fetchval(count)
        before = await listener.conn.fetchval(count)
        assert (await scheduler.run_once()).claimed == 1
        assert await listener.conn.fetchval(count) == before
        await stub.wait_for(1)
    # the warm-up's own claim was rolled back: one claim, one attempt, nothing else
    events = [r["event"] for r in await conn.fetch(
        "SELECT event FROM genretry.events WHERE generation_id = $1 ORDER BY id", row)]
    assert events.count("claimed") == 1


async def test_warm_up_on_the_pool_changes_no_row(db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    row = await make_generation(conn, due=True)
    settings = settings_for(db_url, stub.url)
    pool = await db.create_pool(as_daemon(db_url), min_size=1, max_size=1)
    try:
        async with pool.acquire() as held:
            await warmup.warm_statements(held, [(CLAIM, (settings.worker_id, 5, 60.0)), NEXT])
            count = "SELECT count(*) FROM pg_prepared_statements"
            await held.fetchval(count)
            before = await held.fetchval(count)
            await held.fetchval(NEXT)
            assert await held.fetchval(count) == before  # kept from the warm-up, not prepared again
    finally:
        await pool.close()
    state: Any = await conn.fetchrow("SELECT attempt, lease_id FROM generation_history WHERE id = $1", row)
    assert state["attempt"] == 0 and state["lease_id"] is None
    assert await conn.fetchval("SELECT count(*) FROM genretry.events WHERE generation_id = $1", row) == 0




async def test_the_daemon_lends_its_claims(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                          start_daemon: StartDaemon) -> None:
    running = await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))
    listener = running.daemon.listener
    assert listener is not None
    row = await make_generation(conn)
    await conn.execute("SELECT genretry.retry_now($1)", row)  # the NOTIFY path
    await stub.wait_for(1)
    assert listener.lent >= 1

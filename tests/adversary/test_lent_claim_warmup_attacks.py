"""Adversary: the warm-up's rolled-back claim on each new LISTEN connection (Listener.warm, processor.warmup):
racing other claimers, failing (rights, a missing function, a statement time-out, a lock), interrupted by a
killed backend or by shutdown. It must change no row, and a warm-up that fails must leave a working listener.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from processor import db, warmup
from processor.contracts import CLAIM, NEXT
from processor.errors import DatabaseError
from processor.listener import Listener
from tests.support.factories import make_generation, one
from tests.support.http import Stub, settings_for, wait_until
from tests.support.lending import (
    admin_lock,
    claim_until,
    claimed_events,
    exactly_once,
    holds,
    kill_listener_backend,
    lending,
    none_left,
    reconnected,
    warming_backend,
)
from tests.support.pg import DAEMON_ROLE, as_daemon

# --- the warm-up's rolled-back claim -----------------------------------------------------------------------

async def test_warm_ups_on_many_reconnects_change_no_row_and_no_circuit(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    ids = [await make_generation(conn, due=True) for _ in range(3)]
    ids.append(await make_generation(conn, due=True, generator="generate-logo"))
    # generate-logo's pause is over: a claim would take its probe row and mark the circuit probing
    await conn.execute(
        """INSERT INTO genretry.generator_state (generator, state, consecutive_failures, pauses, reason,
                                                 opened_at, open_until)
           VALUES ('generate-logo', 'open', 5, 1, 'scripted', now() - interval '40 seconds',
                   now() - interval '10 seconds')""")
    circuit = "SELECT * FROM genretry.generator_state WHERE generator = 'generate-logo'"
    circuit_before = dict(await one(conn, circuit))
    rows_before = {r["id"]: dict(r) for r in await conn.fetch("SELECT * FROM generation_history")}
    async with lending(db_url, stub, probe_interval_s=0.1) as (_scheduler, listener):
        for n in range(1, 6):
            await kill_listener_backend(conn, listener)
            await wait_until(reconnected(listener, n), within_s=15)
    rows_after = {r["id"]: dict(r) for r in await conn.fetch("SELECT * FROM generation_history")}
    assert rows_after == rows_before
    assert await conn.fetchval("SELECT count(*) FROM genretry.events") == 0
    circuit_after = dict(await one(conn, circuit))
    assert circuit_after == circuit_before
    assert not stub.seen


async def test_warm_up_claims_racing_a_claimer_never_double_or_change_a_row(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    ids = [await make_generation(conn, due=True) for _ in range(40)]
    settings = settings_for(db_url, stub.url)
    stop = asyncio.Event()
    warmed = 0

    async def warm_forever() -> None:  # another daemon's listener, reconnecting again and again
        nonlocal warmed
        other = await asyncpg.connect(as_daemon(db_url))
        try:
            while not stop.is_set():
                await warmup.warm_statements(other, [(CLAIM, ("other-daemon", 1, settings.lease_s)), NEXT])
                warmed += 1
        finally:
            await other.close()

    warmer = asyncio.create_task(warm_forever())
    try:
        async with lending(db_url, stub, PROCESSOR_BATCH_SIZE="3") as (scheduler, _listener):
            await wait_until(holds(lambda: warmed > 0))
            assert await claim_until(scheduler, 40, within_s=20) == 40
            await stub.wait_for(40)
    finally:
        stop.set()
        await warmer
    assert warmed > 10
    exactly_once(stub, ids)
    assert [await claimed_events(conn, i) for i in ids] == [[1]] * 40
    assert await conn.fetchval(
        "SELECT count(*) FROM genretry.events WHERE worker = 'other-daemon'") == 0


async def test_a_warm_up_the_role_has_no_right_for_leaves_a_working_listener(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    await conn.execute("REVOKE EXECUTE ON FUNCTION genretry.next_wakeup(timestamptz) FROM genretry_processor")
    ids = [await make_generation(conn, due=True) for _ in range(2)]
    hints: list[float] = []
    async with lending(db_url, stub, on_hint=hints.append) as (scheduler, listener):
        assert listener.healthy and listener.conn is not None
        assert not listener.conn.is_in_transaction()  # the failed warm-up was rolled back
        assert (await scheduler.run_once()).claimed == 2 and listener.lent == 1
        await stub.wait_for(2)
        await conn.execute("SELECT pg_notify('genretry', $1)", json.dumps(
            {"id": str(uuid.uuid4()), "status": "pending", "deadline_at": datetime.now(UTC).isoformat()}))
        await wait_until(holds(lambda: len(hints) >= 1))
        assert listener.reconnects == 0
    exactly_once(stub, ids)


async def test_a_warm_up_of_a_missing_function_leaves_a_working_listener(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    # the schema of another version: the claim function is not there under its name
    await conn.execute("ALTER FUNCTION genretry.claim(text, integer, interval, timestamptz) RENAME TO claim_gone")
    hints: list[float] = []
    async with lending(db_url, stub, probe_interval_s=0.05, on_hint=hints.append) as (_scheduler, listener):
        assert listener.healthy and listener.conn is not None
        async with listener.lend() as lent:
            assert lent is not None and await lent.fetchval("SELECT 1") == 1
        row = await make_generation(conn)
        await conn.execute("SELECT genretry.retry_now($1)", row)
        await wait_until(holds(lambda: len(hints) >= 1))
        await asyncio.sleep(0.3)  # several probes
        assert listener.reconnects == 0 and listener.healthy


async def test_notifications_sent_while_a_reconnects_warm_up_waits_on_a_lock_arrive_and_the_connection_is_lent(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    hints: list[float] = []
    reconnected: list[int] = []
    async with lending(db_url, stub, probe_interval_s=0.1, on_hint=hints.append,
                       on_reconnect=lambda: reconnected.append(1)) as (scheduler, listener):
        assert listener.conn is not None
        old = listener.conn.get_server_pid()
        sent = [datetime.now(UTC) + timedelta(hours=2, seconds=i) for i in range(20)]
        async with admin_lock(db_url, "LOCK TABLE genretry.events IN SHARE MODE"):
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", old)
            warming = await warming_backend(conn, old)
            for when in sent:  # the new connection LISTENs already; its warm-up transaction is open
                await conn.execute("SELECT pg_notify('genretry', $1)", json.dumps(
                    {"id": str(uuid.uuid4()), "status": "generating", "deadline_at": when.isoformat()}))
            # the warm-up's lock time-out (2 s) is a statement's error, not the session's: the connection stays
            await wait_until(holds(lambda: listener.healthy and listener.reconnects == 1), within_s=10)
            assert listener.conn is not None and listener.conn.get_server_pid() == warming
            await wait_until(holds(lambda: len(hints) >= len(sent)), within_s=10)
        assert sorted(round(h) for h in hints) == [round(w.timestamp()) for w in sent]
        assert reconnected == [1]
        row = await make_generation(conn, due=True)
        lent = listener.lent
        assert (await scheduler.run_once()).claimed == 1 and listener.lent == lent + 1
        await stub.wait_for(1)
    exactly_once(stub, [row])


async def test_a_reconnects_warm_up_whose_backend_is_killed_is_retried_and_the_listener_comes_back(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    async with lending(db_url, stub, probe_interval_s=0.1) as (scheduler, listener):
        assert listener.conn is not None
        old = listener.conn.get_server_pid()
        async with admin_lock(db_url, "LOCK TABLE genretry.events IN SHARE MODE"):
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", old)
            warming = await warming_backend(conn, old)
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", warming)  # killed mid-warm-up
        await wait_until(holds(lambda: listener.healthy and listener.reconnects == 1), within_s=15)
        assert listener.conn is not None and listener.conn.get_server_pid() not in (old, warming)
        row = await make_generation(conn, due=True)
        assert (await scheduler.run_once()).claimed == 1
        await stub.wait_for(1)
    exactly_once(stub, [row])
    assert await claimed_events(conn, row) == [1]


async def test_a_warm_up_cut_short_by_the_roles_statement_timeout_does_not_stop_the_listener(
        db_url: str, conn: asyncpg.Connection, pg_admin_url: str, stub: Stub) -> None:
    # A role with a statement_timeout below the daemon's lock_timeout (2 s), as managed platforms set them,
    # and an admin building an index on genretry.events (CREATE INDEX takes a SHARE lock, minutes long).
    # Nothing to claim is lost by waiting; but the LISTEN connection must come up and hear notifications,
    # as it did before it ran a claim to warm up.
    name = await conn.fetchval("SELECT current_database()")
    await conn.execute(f'ALTER ROLE {DAEMON_ROLE} IN DATABASE "{name}" SET statement_timeout = 500')
    hints: list[float] = []
    try:
        async with admin_lock(db_url, "LOCK TABLE genretry.events IN SHARE MODE"):
            pool = await db.create_pool(as_daemon(db_url), min_size=1, max_size=2)
            settings = settings_for(db_url, stub.url)
            listener = Listener(as_daemon(db_url), hints.append, lambda: None)
            listener.warm = lambda c: warmup.warm_statements(
                c, [(CLAIM, (settings.worker_id, 1, settings.lease_s)), NEXT])
            try:
                try:
                    await listener.start(pool)
                except DatabaseError as exc:
                    raise AssertionError(f"the listener did not start: {exc!r} (from {exc.__cause__!r})") from exc
                await conn.execute("SELECT pg_notify('genretry', $1)", json.dumps(
                    {"id": str(uuid.uuid4()), "status": "pending",
                     "deadline_at": datetime.now(UTC).isoformat()}))
                await wait_until(holds(lambda: len(hints) >= 1))
                assert listener.healthy
            finally:
                await listener.close()
                await pool.close()
    finally:
        await conn.execute(f'ALTER ROLE {DAEMON_ROLE} IN DATABASE "{name}" RESET statement_timeout')


async def test_a_lent_claim_cut_short_by_the_roles_statement_timeout_does_not_keep_the_listener_down(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    # The same role setting, met by a running daemon: an admin's CREATE INDEX on genretry.events (a SHARE lock)
    # makes the lent claim time out after 500 ms. The claim fails as a pooled one would; the listener must be
    # listening again while the admin's lock lasts (notifications about other rows go on: the app writes
    # generation_history meanwhile).
    name = await conn.fetchval("SELECT current_database()")
    await conn.execute(f'ALTER ROLE {DAEMON_ROLE} IN DATABASE "{name}" SET statement_timeout = 500')
    hints: list[float] = []
    try:
        async with lending(db_url, stub, probe_interval_s=0.2, on_hint=hints.append) as (scheduler, listener):
            await make_generation(conn, due=True)
            async with admin_lock(db_url, "LOCK TABLE genretry.events IN SHARE MODE"):
                with pytest.raises(asyncpg.QueryCanceledError):
                    await asyncio.wait_for(scheduler.run_once(), 10)
                # the lock lasts (an index build takes minutes); the listener must come back meanwhile
                try:
                    await wait_until(holds(lambda: listener.healthy and not listener.lost.is_set()), within_s=6)
                except AssertionError:
                    raise AssertionError(
                        f"the listener stayed down while the admin's lock lasted: healthy={listener.healthy}, "
                        f"reconnects={listener.reconnects}") from None
                await make_generation(conn)  # the app goes on writing: its notification must be heard
                await wait_until(holds(lambda: len(hints) >= 1), within_s=5)
    finally:
        await conn.execute(f'ALTER ROLE {DAEMON_ROLE} IN DATABASE "{name}" RESET statement_timeout')


async def test_shutdown_during_a_reconnects_warm_up_leaves_no_connection_open(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    # What shut_down does to the listener (cancel its task, then close()) while a reconnect's warm-up waits on
    # an admin's lock: every connection the listener opened must be closed.
    settings = settings_for(db_url, stub.url)
    pool = await db.create_pool(as_daemon(db_url), min_size=1, max_size=2)
    listener = Listener(as_daemon(db_url), lambda _d: None, lambda: None, probe_interval_s=0.1)
    listener.warm = lambda c: warmup.warm_statements(c, [(CLAIM, (settings.worker_id, 1, settings.lease_s)), NEXT])
    stop = asyncio.Event()
    try:
        await listener.start(pool)
        task = asyncio.create_task(listener.run(stop))
        async with admin_lock(db_url, "LOCK TABLE genretry.events IN SHARE MODE"):
            old = await kill_listener_backend(conn, listener)
            await warming_backend(conn, old)  # the reconnect's warm-up claim waits on the lock
            stop.set()
            task.cancel()  # shut_down: cancel the parts, then close the listener
            await asyncio.gather(task, return_exceptions=True)
            await listener.close()
        await pool.close()
        await wait_until(lambda: none_left(conn), within_s=5)
    finally:
        await listener.close()
        await pool.close()

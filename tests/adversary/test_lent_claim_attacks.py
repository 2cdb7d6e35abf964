"""Adversary: claims lent the LISTEN connection (Listener.lend) under hostile conditions, against a real
PostgreSQL: the listener's backend terminated or cancelled mid-claim, admins' locks, notifications piling up
behind a long claim, the daemon cancelled or stopped mid-claim, a probe that runs all the time, a lent claim
while the listener reconnects, and two daemons lending on one database. The warm-up's attacks:
test_lent_claim_warmup_attacks.py.

Exactly-once is checked by counting Idempotency-Key headers at the stub, and the rows' end state in the table.
No timing assertion: every wait is a generous upper bound.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from processor import db
from tests.support.factories import make_generation
from tests.support.http import StartDaemon, Stub, settings_for, wait_until
from tests.support.lending import (
    admin_lock,
    claim_until,
    claimed_events,
    exactly_once,
    holds,
    kill_listener_backend,
    last_query,
    lending,
    none_left,
    states,
    waiting_on_lock,
)

# --- the listener's backend killed or cancelled in the middle of a lent claim ----------------------------

async def test_listener_backend_terminated_while_its_lent_claim_waits_on_an_admin_lock(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    ids = [await make_generation(conn, due=True) for _ in range(5)]
    async with lending(db_url, stub, probe_interval_s=0.2) as (scheduler, listener):
        assert listener.conn is not None
        pid = listener.conn.get_server_pid()
        async with admin_lock(db_url, "LOCK TABLE genretry.events IN SHARE MODE"):
            claim = asyncio.create_task(scheduler.run_once())
            await wait_until(waiting_on_lock(conn, pid))  # the lent claim, on the listener's own backend
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
            with pytest.raises(db.TRANSIENT_ERRORS):
                await asyncio.wait_for(claim, 10)
        # the killed claim's transaction was rolled back: nothing leased, nothing logged
        for state in (await states(conn, ids)).values():
            assert state["attempt"] == 0 and state["lease_id"] is None
        assert [await claimed_events(conn, i) for i in ids] == [[]] * 5
        await wait_until(holds(lambda: listener.healthy and listener.reconnects >= 1), within_s=15)
        assert listener.conn is not None and listener.conn.get_server_pid() != pid
        lent = listener.lent
        assert (await scheduler.run_once()).claimed == 5
        assert listener.lent == lent + 1  # the new connection is lent
        await stub.wait_for(5)
    exactly_once(stub, ids)
    assert [await claimed_events(conn, i) for i in ids] == [[1]] * 5


async def test_pg_cancel_backend_on_a_lent_claim_loses_no_row_and_the_listener_recovers(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    ids = [await make_generation(conn, due=True) for _ in range(4)]
    hints: list[float] = []
    async with lending(db_url, stub, probe_interval_s=0.2, on_hint=hints.append) as (scheduler, listener):
        assert listener.conn is not None
        pid = listener.conn.get_server_pid()
        async with admin_lock(db_url, "LOCK TABLE genretry.events IN SHARE MODE"):
            claim = asyncio.create_task(scheduler.run_once())
            await wait_until(waiting_on_lock(conn, pid))
            assert await conn.fetchval("SELECT pg_cancel_backend($1)", pid)
            with pytest.raises(asyncpg.QueryCanceledError):
                await asyncio.wait_for(claim, 10)
        for state in (await states(conn, ids)).values():
            assert state["attempt"] == 0 and state["lease_id"] is None
        await wait_until(holds(lambda: listener.healthy and not listener.lost.is_set()), within_s=15)
        # the listener (whichever connection it has now) still hears notifications
        await conn.execute("SELECT genretry.retry_now($1)", ids[0])
        await wait_until(holds(lambda: len(hints) >= 1), within_s=10)
        assert await claim_until(scheduler, 4) == 4
        await stub.wait_for(4)
    exactly_once(stub, ids)


# --- notifications while a lent claim runs -----------------------------------------------------------------

async def test_notifications_sent_during_a_long_lent_claim_all_arrive_after_it(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    ids = [await make_generation(conn, due=True) for _ in range(3)]
    hints: list[float] = []
    async with lending(db_url, stub, on_hint=hints.append) as (scheduler, listener):
        assert listener.conn is not None
        pid = listener.conn.get_server_pid()
        base = datetime.now(UTC) + timedelta(hours=1)
        sent = [base + timedelta(seconds=i) for i in range(60)]
        async with admin_lock(db_url, "LOCK TABLE genretry.events IN SHARE MODE") as release:
            claim = asyncio.create_task(scheduler.run_once())
            await wait_until(waiting_on_lock(conn, pid))
            for when in sent:
                await conn.execute("SELECT pg_notify('genretry', $1)", json.dumps(
                    {"id": str(uuid.uuid4()), "status": "generating", "deadline_at": when.isoformat()}))
            await release()  # within the lock time-out: the lent claim goes on and succeeds
            result = await asyncio.wait_for(claim, 10)
        assert result.claimed == 3
        await wait_until(holds(lambda: len(hints) >= len(sent)), within_s=10)
        assert sorted(round(h) for h in hints) == [round(w.timestamp()) for w in sent]  # none lost, none twice
        assert listener.reconnects == 0 and listener.healthy
        await stub.wait_for(3)
    exactly_once(stub, ids)


# --- the claim's answer lost: cancellation mid-claim -------------------------------------------------------

async def test_a_lent_claim_cancelled_after_it_committed_is_redelivered_with_the_same_key_after_its_lease(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    ids = [await make_generation(conn, due=True) for _ in range(3)]
    async with lending(db_url, stub, probe_interval_s=0.2, PROCESSOR_LEASE="4") as (scheduler, listener):
        assert listener.conn is not None
        pid = listener.conn.get_server_pid()
        async with admin_lock(db_url, "LOCK TABLE genretry.events IN SHARE MODE") as release:
            claim = asyncio.create_task(scheduler.run_once())
            await wait_until(waiting_on_lock(conn, pid))
            await release()
            time.sleep(1.0)  # noqa: ASYNC251 - the loop is blocked on purpose: the claim commits, its answer waits
            assert claim.cancel()
            with pytest.raises(asyncio.CancelledError):
                await claim
        # the claim committed: the rows are leased (attempt 1), and nothing was sent
        leased = await states(conn, ids)
        assert all(s["attempt"] == 1 and s["lease_id"] is not None for s in leased.values()), leased
        assert not stub.seen
        # a cancelled lent statement leaves the session in doubt: the listener reconnects
        await wait_until(holds(lambda: listener.healthy and listener.reconnects >= 1), within_s=15)
        assert listener.conn is not None and listener.conn.get_server_pid() != pid
        assert (await scheduler.run_once()).claimed == 0  # their leases live
        assert await claim_until(scheduler, 3, within_s=20) == 3  # after the lease: claimed again
        await stub.wait_for(3)
    exactly_once(stub, ids, attempt=1)  # the same attempt, the same key, once
    assert [await claimed_events(conn, i) for i in ids] == [[1, 1]] * 3


async def test_the_daemon_cancelled_mid_lent_claim_shuts_down_and_a_second_daemon_delivers_each_row_once(
        db_url: str, conn: asyncpg.Connection, stub: Stub, start_daemon: StartDaemon) -> None:
    first = await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60", PROCESSOR_LEASE="4"))
    listener = first.daemon.listener
    assert listener is not None and listener.conn is not None
    pid = listener.conn.get_server_pid()
    async with admin_lock(db_url, "LOCK TABLE genretry.events IN SHARE MODE") as release:
        ids = [await make_generation(conn, due=True) for _ in range(3)]  # NOTIFY: the daemon claims, lent
        await wait_until(waiting_on_lock(conn, pid))
        await release()
        time.sleep(1.0)  # noqa: ASYNC251 - the loop blocked on purpose: the claim commits, its answer waits
        first.task.cancel()
        done, _ = await asyncio.wait([first.task], timeout=15)
    assert first.task in done, "the daemon's shutdown hung after a cancelled lent claim"
    assert not stub.seen
    await wait_until(lambda: none_left(conn), within_s=10)  # the cancelled daemon left no connection behind
    await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60", PROCESSOR_LEASE="4"))
    await stub.wait_for(3, within_s=20)  # after the lease: redelivered
    await asyncio.sleep(0.5)
    exactly_once(stub, ids, attempt=1)


async def test_the_daemon_stopped_while_its_lent_claim_waits_on_a_lock_stops_and_loses_no_row(
        db_url: str, conn: asyncpg.Connection, stub: Stub, start_daemon: StartDaemon) -> None:
    first = await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))
    listener = first.daemon.listener
    assert listener is not None and listener.conn is not None
    pid = listener.conn.get_server_pid()
    async with admin_lock(db_url, "LOCK TABLE genretry.events IN SHARE MODE"):
        ids = [await make_generation(conn, due=True) for _ in range(3)]
        await wait_until(waiting_on_lock(conn, pid))
        await first.stop()  # SIGTERM while the lent claim waits: the lock time-out ends it, then the daemon
        assert first.task.done()
    assert not stub.seen
    for state in (await states(conn, ids)).values():
        assert state["attempt"] == 0 and state["lease_id"] is None
    await wait_until(lambda: none_left(conn), within_s=10)
    await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))
    await stub.wait_for(3)
    await asyncio.sleep(0.5)
    exactly_once(stub, ids)


# --- the probe beside lent claims ------------------------------------------------------------------------------

async def test_a_claim_never_waits_behind_a_probe_queued_for_the_connection(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    # docs/design.md: "a claim never waits for the probe: it takes a pooled connection instead". A sweep's
    # next batch (or the next sweep) asks for the connection as the previous lent claim gives it back; the
    # probe that fell due meanwhile is queued on the lock.
    async with lending(db_url, stub, probe_interval_s=0.02) as (_scheduler, listener):
        assert listener.conn is not None
        pid = listener.conn.get_server_pid()
        marker = "SELECT 'the first lent statement'"
        async with listener.lend() as first:
            assert first is not None
            await asyncio.sleep(0.5)  # several probe intervals: the probe is due and waits for the connection
            await first.fetchval(marker)
        async with listener.lend() as second:  # at once, as run_once's next batch does
            ran_meanwhile = await last_query(conn, pid)
            assert second is None or ran_meanwhile == marker, (
                f"the lent claim waited for the probe: the connection ran {ran_meanwhile!r} before it")


async def test_a_tiny_probe_interval_and_claims_in_a_tight_loop_never_drop_a_healthy_listener(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    ids: list[uuid.UUID] = []
    async with lending(db_url, stub, probe_interval_s=0.005, PROCESSOR_BATCH_SIZE="2") as (scheduler, listener):
        unhealthy_seen = 0
        claimed = 0
        started = time.monotonic()
        while time.monotonic() - started < 3.0:
            if len(ids) < 40:
                ids.append(await make_generation(conn, due=True))
            claimed += (await scheduler.run_once()).claimed
            if not listener.healthy or listener.lost.is_set():
                unhealthy_seen += 1
            await asyncio.sleep(0)
        claimed += await claim_until(scheduler, len(ids) - claimed) if claimed < len(ids) else 0
        assert unhealthy_seen == 0 and listener.reconnects == 0, (unhealthy_seen, listener.reconnects)
        assert listener.lent > 0
        await stub.wait_for(len(ids))
    exactly_once(stub, ids)


# --- admins' locks on rows and on the circuit ------------------------------------------------------------

async def test_an_admin_holding_rows_and_the_circuit_row_makes_a_lent_claim_skip_them_not_fail(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    ids = [await make_generation(conn, due=True) for _ in range(6)]
    probe_row = await make_generation(conn, due=True, generator="generate-logo")
    await conn.execute(
        """INSERT INTO genretry.generator_state (generator, state, consecutive_failures, pauses, reason,
                                                 opened_at, open_until)
           VALUES ('generate-logo', 'open', 5, 1, 'scripted', now() - interval '40 seconds',
                   now() - interval '10 seconds')""")
    async with lending(db_url, stub) as (scheduler, listener):
        admin = await asyncpg.connect(db_url)
        try:
            transaction = admin.transaction()
            await transaction.start()
            await admin.execute("SELECT 1 FROM generation_history WHERE id = ANY($1::uuid[]) FOR UPDATE", ids[:3])
            await admin.execute("SELECT 1 FROM genretry.generator_state WHERE generator = 'generate-logo' FOR UPDATE")
            result = await asyncio.wait_for(scheduler.run_once(), 10)
            assert result.claimed == 3 and listener.lent == 1
            await transaction.rollback()
        finally:
            await admin.close()
        assert listener.healthy and listener.reconnects == 0 and not listener.lost.is_set()
        assert await claim_until(scheduler, 4) == 4  # the rest, and generate-logo's probe row
        assert listener.lent >= 2
        await stub.wait_for(7)
    exactly_once(stub, [*ids, probe_row])


# --- a lent claim while the listener reconnects; two daemons ---------------------------------------------

async def test_while_the_listener_reconnects_claims_use_the_pool_and_lending_resumes_after(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    ids = [await make_generation(conn, due=True) for _ in range(3)]
    async with lending(db_url, stub, probe_interval_s=30) as (scheduler, listener):
        await kill_listener_backend(conn, listener)
        await wait_until(holds(lambda: listener.lost.is_set() or not listener.healthy or listener.reconnects > 0))
        if listener.reconnects == 0:
            async with listener.lend() as lent:
                assert lent is None  # lost or reconnecting: never lent
        lent_before = listener.lent
        claimed = await claim_until(scheduler, 3)
        assert claimed == 3
        await wait_until(holds(lambda: listener.healthy and listener.reconnects == 1), within_s=15)
        more = [await make_generation(conn, due=True) for _ in range(2)]
        assert (await scheduler.run_once()).claimed == 2
        assert listener.lent > lent_before
        await stub.wait_for(5)
    exactly_once(stub, [*ids, *more])


async def test_two_lending_daemons_on_one_database_deliver_each_row_once(
        db_url: str, conn: asyncpg.Connection, stub: Stub, start_daemon: StartDaemon) -> None:
    a = await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60", PROCESSOR_WORKER_ID="daemon-a",
                                        PROCESSOR_BATCH_SIZE="3"))
    b = await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60", PROCESSOR_WORKER_ID="daemon-b",
                                        PROCESSOR_BATCH_SIZE="3"))
    ids: list[uuid.UUID] = []
    for _ in range(60):
        ids.append(await make_generation(conn, due=True))  # each INSERT notifies both
        if len(ids) % 20 == 0:  # and their listeners' backends die now and then
            for running in (a, b):
                listener = running.daemon.listener
                if listener is not None and listener.conn is not None and not listener.conn.is_closed():
                    await conn.fetchval("SELECT pg_terminate_backend($1)", listener.conn.get_server_pid())
    await stub.wait_for(60, within_s=20)
    await asyncio.sleep(1.0)
    exactly_once(stub, ids)
    assert a.daemon.listener is not None and b.daemon.listener is not None
    assert a.daemon.listener.lent + b.daemon.listener.lent > 0
    await wait_until(lambda: _all_recorded(conn, ids), within_s=10)
    for state in (await states(conn, ids)).values():
        assert state["attempt"] == 1 and state["retry_count"] == 1
    assert [await claimed_events(conn, i) for i in ids] == [[1]] * 60


async def _all_recorded(conn: asyncpg.Connection, ids: list[uuid.UUID]) -> bool:
    return not await conn.fetchval(
        "SELECT count(*) FROM generation_history WHERE id = ANY($1::uuid[]) AND lease_id IS NOT NULL", ids)

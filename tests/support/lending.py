"""Claims lent the LISTEN connection (Listener.lend): a Scheduler and a Listener wired as the daemon wires
them, and the checks the lending tests share (tests/service/test_lent_claims.py, tests/adversary/)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg

from processor import db, delivery, warmup
from processor.contracts import CLAIM
from processor.listener import Listener
from processor.scheduler import Scheduler
from tests.support.http import Stub, settings_for, wait_until
from tests.support.pg import DAEMON_ROLE, as_daemon

PROBE_SQL = "SELECT $1 = ANY (ARRAY(SELECT pg_listening_channels()))"

@contextlib.asynccontextmanager
async def lending(db_url: str, stub: Stub, *, probe_interval_s: float = 30.0, warm: bool = True,
                  on_hint: Callable[[float], None] = lambda _d: None,
                  on_reconnect: Callable[[], None] = lambda: None,
                  **env: str) -> AsyncIterator[tuple[Scheduler, Listener]]:
    """A Scheduler whose claims the Listener lends, wired as the daemon wires them; the listener running."""
    settings = settings_for(db_url, stub.url, **{"PROCESSOR_MAX_IN_FLIGHT": "8", **env})
    pool = await db.create_pool(as_daemon(db_url), min_size=1, max_size=4, command_timeout=db.COMMAND_TIMEOUT_S,
                                server_settings={"lock_timeout": db.LOCK_TIMEOUT_MS})
    client = delivery.make_client(max_connections=8, connect_timeout_s=1, response_timeout_s=5)
    scheduler = Scheduler(pool, client, settings, claim_ahead=0)
    listener = Listener(as_daemon(db_url), on_hint, on_reconnect, probe_interval_s=probe_interval_s)
    if warm:  # as the daemon does (Daemon._warm_claim)
        listener.warm = lambda conn: warmup.warm_statements(
            conn, [(CLAIM, (settings.worker_id, 1, settings.lease_s))])
    stop = asyncio.Event()
    await listener.start(pool)
    task = asyncio.create_task(listener.run(stop))
    scheduler.lend = listener.lend
    try:
        yield scheduler, listener
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await scheduler.drain(10)
        await listener.close()
        await client.aclose()
        await pool.close()


@contextlib.asynccontextmanager
async def admin_lock(db_url: str, sql: str, *args: Any) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """An admin's open transaction that ran `sql` (a LOCK, a SELECT ... FOR UPDATE); yields release()."""
    admin = await asyncpg.connect(db_url)
    transaction = admin.transaction()
    await transaction.start()
    await admin.execute(sql, *args)
    released = False

    async def release() -> None:
        nonlocal released
        if not released:
            released = True
            await transaction.rollback()

    try:
        yield release
    finally:
        with contextlib.suppress(Exception):
            await release()
        await admin.close()


async def last_query(conn: asyncpg.Connection, pid: int) -> str:
    return str(await conn.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid))


def waiting_on_lock(conn: asyncpg.Connection, pid: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(await conn.fetchval(
            "SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1", pid))
    return check


def holds(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return predicate()
    return check


async def daemon_backends(conn: asyncpg.Connection) -> list[int]:
    """Server processes of the daemon's role in this test's database (the test's own connections are not)."""
    return [r["pid"] for r in await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND usename = $1", DAEMON_ROLE)]


async def states(conn: asyncpg.Connection, ids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
    return {r["id"]: r for r in await conn.fetch(
        "SELECT id, status, attempt, lease_id, retry_phase, retry_count FROM generation_history "
        "WHERE id = ANY($1::uuid[])", ids)}


async def claimed_events(conn: asyncpg.Connection, row_id: uuid.UUID) -> list[int]:
    """The attempt of each 'claimed' event of a row, in order."""
    return [r["attempt"] for r in await conn.fetch(
        "SELECT attempt FROM genretry.events WHERE generation_id = $1 AND event = 'claimed' ORDER BY id", row_id)]


async def claim_until(scheduler: Scheduler, count: int, within_s: float = 15.0) -> int:
    """Sweep until `count` rows were claimed in all (errors of a connection in doubt are survived)."""
    claimed = 0
    deadline = time.monotonic() + within_s
    while claimed < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{claimed} rows claimed, expected {count}")
        with contextlib.suppress(*db.TRANSIENT_ERRORS):
            claimed += (await scheduler.run_once()).claimed
        await asyncio.sleep(0.05)
    return claimed


def exactly_once(stub: Stub, ids: list[uuid.UUID], attempt: int = 1) -> None:
    keys = stub.keys()
    assert keys == {f"{i}:{attempt}": 1 for i in ids}, f"Idempotency-Keys seen: {dict(keys)}"


def reconnected(listener: Listener, times: int) -> Callable[[], Awaitable[bool]]:
    return holds(lambda: listener.healthy and listener.reconnects >= times)


async def none_left(conn: asyncpg.Connection) -> bool:
    """No server process of the daemon's role is left in this test's database."""
    return not await daemon_backends(conn)


async def kill_listener_backend(conn: asyncpg.Connection, listener: Listener) -> int:
    """End the LISTEN connection's server process, as an outage or an admin would; returns its pid."""
    assert listener.conn is not None
    pid = listener.conn.get_server_pid()
    assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    return pid


async def warming_backend(conn: asyncpg.Connection, old: int) -> int:
    """Wait for a backend of the daemon's role other than `old` whose claim waits on a lock (a reconnect's
    warm-up), and return its pid."""
    found: list[int] = []

    async def waiting() -> bool:
        value = await conn.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND usename = $1 AND pid <> $2 "
            "AND wait_event_type = 'Lock' AND query LIKE '%genretry.claim%'", DAEMON_ROLE, old)
        found.extend([] if value is None else [int(value)])
        return value is not None

    await wait_until(waiting)
    return found[0]

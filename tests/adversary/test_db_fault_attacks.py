"""Adversary: database faults at awkward moments must never kill the daemon (issue 10 class 14).

Faults are real: pg_terminate_backend from another session, per-database settings for the daemon's role
(ALTER ROLE ... IN DATABASE, so other tests sharing the server are untouched), a database connection
limit. Where a fault must land at one exact step, the test runs a real pg_terminate_backend at that step.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from aiohttp import web

from processor.config import Settings
from processor.daemon import Daemon
from processor.listener import Listener
from tests.support.factories import make_generation
from tests.support.http import StartDaemon, Stub, first_outcome, settings_for, status_of, wait_until
from tests.support.pg import DAEMON_ROLE


async def _terminate(admin_url: str, pid: int) -> None:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute("SELECT pg_terminate_backend($1, 5000)", pid)
    finally:
        await admin.close()


async def _run_until_ready(settings: Settings, within_s: float = 30) -> tuple[Daemon, asyncio.Task[None]]:
    """Start a daemon; return once it is ready or its run() ended (then the task holds why)."""
    daemon = Daemon(settings)
    task = asyncio.create_task(daemon.run(signals=False))
    ready = asyncio.ensure_future(daemon.ready.wait())
    await asyncio.wait([ready, task], timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    return daemon, task


async def _stop(daemon: Daemon, task: asyncio.Task[None]) -> None:
    daemon.request_stop()
    await asyncio.wait([task], timeout=20)


async def test_listener_terminated_during_its_self_test_does_not_kill_the_daemon(
        db_url: str, conn: asyncpg.Connection, stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    original = Listener._connect
    hits: list[int] = []

    async def connect_then_lose_it(self: Listener) -> None:
        await original(self)
        if not hits:  # the first connection only: the one the self-test is about to use
            assert self.conn is not None
            hits.append(self.conn.get_server_pid())
            await _terminate(db_url, hits[0])

    monkeypatch.setattr(Listener, "_connect", connect_then_lose_it)
    row_id = await make_generation(conn, due=True)
    daemon, task = await _run_until_ready(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))
    try:
        assert hits, "the fault was not injected"
        assert not task.done(), f"the daemon died at start: {task.exception()!r}"
        await stub.wait_for(1, within_s=15)
        assert stub.seen[0].body["retryHistoryId"] == str(row_id)
    finally:
        await _stop(daemon, task)


async def test_a_daemon_started_while_connections_are_refused_waits_for_the_database(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    name = await conn.fetchval("SELECT current_database()")
    await conn.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT 0')  # the daemon's role is no superuser
    row_id = await make_generation(conn, due=True)
    daemon = Daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))
    task = asyncio.create_task(daemon.run(signals=False))
    try:
        await asyncio.wait([task], timeout=3)
        assert not task.done(), f"the daemon gave up while the database refused connections: {task.exception()!r}"
        await conn.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT -1')
        await stub.wait_for(1, within_s=60)
        assert stub.seen[0].body["retryHistoryId"] == str(row_id)
    finally:
        await conn.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT -1')
        await _stop(daemon, task)


async def test_connections_refused_while_running_then_allowed(
        db_url: str, conn: asyncpg.Connection, stub: Stub, start_daemon: StartDaemon) -> None:
    """Survived: every daemon connection killed while the database refuses new ones, then allowed again."""
    running = await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="2"))
    name = await conn.fetchval("SELECT current_database()")
    await conn.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT 0')
    try:
        await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND usename = $1", DAEMON_ROLE)
        row_id = await make_generation(conn, due=True)
        await asyncio.sleep(3)  # the listener and the loop meet refused connections for a while
        assert not running.task.done()
    finally:
        await conn.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT -1')
    await stub.wait_for(1, within_s=60)
    assert stub.seen[0].body["retryHistoryId"] == str(row_id)
    listener = running.daemon.listener
    assert listener is not None
    await wait_until(lambda: _healthy(listener), within_s=60)
    assert not running.task.done()


async def _healthy(listener: Listener) -> bool:
    return listener.healthy


async def test_a_statement_timeout_at_start_does_not_kill_the_daemon(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    name = await conn.fetchval("SELECT current_database()")
    # the daemon's statements are cancelled after 1 ms, and the schema check waits on an admin's lock, so
    # it is cancelled whatever the machine's speed (a database under load, a migration under way)
    await conn.execute(f'ALTER ROLE {DAEMON_ROLE} IN DATABASE "{name}" SET statement_timeout = 1')
    row_id = await make_generation(conn, due=True)
    daemon = Daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))
    lock = await asyncpg.connect(db_url)
    tx = lock.transaction()
    await tx.start()
    await lock.execute("LOCK TABLE genretry.schema_migrations IN ACCESS EXCLUSIVE MODE")
    task = asyncio.create_task(daemon.run(signals=False))
    try:
        await asyncio.wait([task], timeout=3)
        await tx.rollback()
        await conn.execute(f'ALTER ROLE {DAEMON_ROLE} IN DATABASE "{name}" RESET statement_timeout')
        assert not task.done(), f"the daemon died at start: {task.exception()!r}"
        await stub.wait_for(1, within_s=60)
        assert stub.seen[0].body["retryHistoryId"] == str(row_id)
    finally:
        await lock.close()
        await conn.execute(f'ALTER ROLE {DAEMON_ROLE} IN DATABASE "{name}" RESET statement_timeout')
        await _stop(daemon, task)


async def test_statement_and_lock_timeouts_while_running(
        db_url: str, conn: asyncpg.Connection, stub: Stub, start_daemon: StartDaemon) -> None:
    """Survived: an admin holds an ACCESS EXCLUSIVE lock on the table while the daemon's statements time out
    (lock_timeout and statement_timeout for its role); once released, the due row goes out."""
    running = await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="1"))
    name = await conn.fetchval("SELECT current_database()")
    for setting in ("lock_timeout = 50", "statement_timeout = 200"):
        await conn.execute(f'ALTER ROLE {DAEMON_ROLE} IN DATABASE "{name}" SET {setting}')
    await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND usename = $1", DAEMON_ROLE)  # new settings apply
    row_id = await make_generation(conn)  # due in minutes: the admin makes it due under the lock
    admin = await asyncpg.connect(db_url)
    try:
        tx = admin.transaction()
        await tx.start()
        await admin.execute("LOCK TABLE public.generation_history IN ACCESS EXCLUSIVE MODE")
        await admin.execute("SELECT genretry.retry_now($1)", row_id)
        await asyncio.sleep(3)  # the daemon's looks and claims time out meanwhile (tick 1 s)
        assert not running.task.done() and not stub.seen
        await tx.commit()
    finally:
        await admin.close()
        for setting in ("lock_timeout", "statement_timeout"):
            await conn.execute(f'ALTER ROLE {DAEMON_ROLE} IN DATABASE "{name}" RESET {setting}')
    await stub.wait_for(1, within_s=60)
    assert stub.seen[0].body["retryHistoryId"] == str(row_id)
    assert not running.task.done()


async def test_terminated_during_claim_by_a_trigger_then_recovers(
        db_url: str, conn: asyncpg.Connection, stub: Stub, start_daemon: StartDaemon) -> None:
    """Survived: the claim's own backend is terminated inside the claim (a trigger on its 'claimed' event,
    three times), the daemon backs off and the row is delivered once the fault stops."""
    # a sequence counts the faults: it is not rolled back with the claim that dies
    await _kill_backends_on_event(conn, "= 'claimed'", times=3)
    row_id = await make_generation(conn, due=True)
    running = await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))
    await stub.wait_for(1, within_s=60)
    await wait_until(lambda: _is(conn, row_id, "generating"), within_s=10)
    assert await conn.fetchval("SELECT last_value FROM public.adv_seq") >= 4
    assert not running.task.done()


async def _kill_backends_on_event(conn: asyncpg.Connection, condition: str, *, times: int) -> None:
    """A trigger on genretry.events that terminates the inserting backend, the first `times` times an event
    matching `condition` (on NEW.event) is written: a connection dying inside claim or record."""
    await conn.execute(f"""
        CREATE SEQUENCE public.adv_seq;
        GRANT USAGE ON SEQUENCE public.adv_seq TO PUBLIC;
        CREATE FUNCTION public.adv_die() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
        BEGIN
            IF NEW.event {condition} AND nextval('public.adv_seq') <= {times} THEN
                PERFORM pg_terminate_backend(pg_backend_pid());
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER adv_die AFTER INSERT ON genretry.events FOR EACH ROW EXECUTE FUNCTION public.adv_die();
    """)


async def _is(conn: asyncpg.Connection, row_id: object, status: str) -> bool:
    return await status_of(conn, row_id) == status


async def test_a_lone_surrogate_in_the_generators_answer_is_recorded(
        db_url: str, conn: asyncpg.Connection, stub: Stub, start_daemon: StartDaemon) -> None:
    async def surrogate(_request: web.Request) -> web.StreamResponse:
        return web.Response(status=500, text='{"error": "x", "message": "boom \\ud800 here"}',
                            content_type="application/json")

    row_id, _events = await first_outcome(db_url, conn, stub, start_daemon, surrogate, within_s=8)
    assert await conn.fetchval("SELECT retry_count FROM generation_history WHERE id = $1", row_id) == 1


async def test_terminated_during_record_by_a_trigger_the_outcome_is_still_recorded(
        db_url: str, conn: asyncpg.Connection, stub: Stub, start_daemon: StartDaemon) -> None:
    """Survived: the recording backend dies twice inside record_deliveries; the outcome is written on retry,
    once, and the generator is not asked again."""
    await _kill_backends_on_event(conn, "<> 'claimed'", times=2)
    row_id = await make_generation(conn, due=True)
    running = await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))
    await stub.wait_for(1, within_s=15)

    async def recorded() -> bool:
        return bool(await conn.fetchval("SELECT retry_count FROM generation_history WHERE id = $1", row_id) == 1)
    await wait_until(recorded, within_s=30)
    assert await conn.fetchval("SELECT last_value FROM public.adv_seq") >= 3
    assert len(stub.seen) == 1 and not running.task.done()


async def test_stop_while_the_database_refuses_connections_exits_cleanly(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    """Survived: SIGTERM-equivalent while every connection was killed and new ones are refused: run() returns
    (no exception) within its shutdown bounds."""
    daemon, task = await _run_until_ready(settings_for(db_url, stub.url, PROCESSOR_TICK="60", PROCESSOR_GRACE="1"))
    assert daemon.ready.is_set()
    name = await conn.fetchval("SELECT current_database()")
    await conn.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT 0')
    try:
        await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND usename = $1", DAEMON_ROLE)
        daemon.request_stop()
        done, _ = await asyncio.wait([task], timeout=30)
        assert task in done, "the daemon did not stop"
        assert task.exception() is None
    finally:
        await conn.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT -1')


async def test_a_row_with_an_infinite_heartbeat_does_not_make_the_daemon_unhealthy(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    row_id = await make_generation(conn)
    await conn.execute("UPDATE generation_history SET heartbeat_at = 'infinity' WHERE id = $1", row_id)
    daemon, task = await _run_until_ready(settings_for(db_url, stub.url, PROCESSOR_TICK="60"), within_s=10)
    try:
        assert not task.done()
        assert daemon.ready.is_set() and daemon.healthy
        # and it still delivers what falls due
        other = await make_generation(conn)
        await conn.execute("SELECT genretry.retry_now($1)", other)
        await stub.wait_for(1, within_s=15)
    finally:
        await _stop(daemon, task)


@pytest.mark.parametrize("column,value", [("status_changed_at", "-infinity"), ("heartbeat_at", "-infinity")])
async def test_a_row_with_a_minus_infinite_time_does_not_block_other_rows(
        db_url: str, conn: asyncpg.Connection, stub: Stub, column: str, value: str) -> None:
    """Probe: one live row with an infinite past time (written by the app) beside an ordinary due row."""
    bad = await make_generation(conn)
    await conn.execute(f"UPDATE generation_history SET {column} = '{value}' WHERE id = $1", bad)
    good = await make_generation(conn, due=True)
    daemon, task = await _run_until_ready(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))
    try:
        assert not task.done() and daemon.ready.is_set()
        await stub.wait_for(1, within_s=15)
        assert str(good) in {s.body["retryHistoryId"] for s in stub.seen}
    finally:
        await _stop(daemon, task)


class _Notifications(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.messages: list[str] = []

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.messages.append(data.decode())


async def test_the_watchdog_is_fed_through_a_database_outage(
        db_url: str, conn: asyncpg.Connection, stub: Stub, tmp_path: object,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import socket
    from pathlib import Path

    path = str(Path(str(tmp_path)) / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    transport, sink = await asyncio.get_running_loop().create_datagram_endpoint(_Notifications, sock=sock)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")  # a 2 s watchdog: the daemon pings every second
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    name = await conn.fetchval("SELECT current_database()")
    daemon, task = await _run_until_ready(settings_for(db_url, stub.url, PROCESSOR_TICK="1"))
    try:
        assert daemon.ready.is_set()

        async def pinged() -> bool:
            return any(m.startswith("WATCHDOG=1") for m in sink.messages)
        await wait_until(pinged, within_s=20)  # the plumbing works: a healthy daemon pings
        await conn.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT 0')
        await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND usename = $1", DAEMON_ROLE)

        async def noticed() -> bool:
            return not daemon.healthy
        await wait_until(noticed, within_s=20)
        sink.messages.clear()
        await asyncio.sleep(4)  # two watchdog periods of outage: systemd would have killed it by now
        assert not task.done()
        assert any(m.startswith("WATCHDOG=1") for m in sink.messages), sink.messages
    finally:
        await conn.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT -1')
        await _stop(daemon, task)
        transport.close()


async def test_a_tight_connection_limit_still_records_every_outcome(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    """Probe: the database allows the daemon's role only 3 connections (the listener, and 2 of the pool's
    up to 10): 40 due rows are all delivered once and recorded; the daemon stays up."""
    name = await conn.fetchval("SELECT current_database()")
    ids = [await make_generation(conn, due=True) for _ in range(40)]
    await conn.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT 3')
    daemon, task = await _run_until_ready(settings_for(db_url, stub.url, PROCESSOR_TICK="2"))
    try:
        assert not task.done(), task.exception() if task.done() else None

        async def all_recorded() -> bool:
            return bool(await conn.fetchval(
                "SELECT count(*) FROM generation_history WHERE id = ANY($1) AND retry_count = 1", ids) == 40)
        await wait_until(all_recorded, within_s=90)
        assert max(stub.keys().values()) == 1 and len(stub.seen) == 40
        assert not task.done()
    finally:
        await conn.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT -1')
        await _stop(daemon, task)


async def test_stop_with_deliveries_in_flight_while_the_database_is_gone(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    """Survived: deliveries in flight, every daemon connection killed and new ones refused, then stop: run()
    returns without an exception (the outcomes are lost; the leases run out and the rows are redelivered
    with the same attempt)."""
    release = asyncio.Event()

    async def slow(_request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.json_response({"accepted": True}, status=202)

    stub.behaviours["generate-website"] = slow
    ids = [await make_generation(conn, due=True) for _ in range(5)]
    daemon, task = await _run_until_ready(settings_for(db_url, stub.url, PROCESSOR_TICK="60", PROCESSOR_GRACE="2"))
    name = await conn.fetchval("SELECT current_database()")
    try:
        await stub.wait_for(5, within_s=15)
        await conn.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT 0')
        await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND usename = $1", DAEMON_ROLE)
        release.set()  # the answers come back while the database is gone
        daemon.request_stop()
        done, _ = await asyncio.wait([task], timeout=60)
        assert task in done, "the daemon did not stop"
        assert task.exception() is None
    finally:
        release.set()
        await conn.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT -1')
        await _stop(daemon, task)
    rows = await conn.fetch("SELECT status, attempt FROM generation_history WHERE id = ANY($1)", ids)
    assert all(r["status"] == "generating" and r["attempt"] == 1 for r in rows)

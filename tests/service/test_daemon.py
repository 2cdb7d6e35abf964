"""The daemon against a real database and real HTTP: rescue, exhaustion, NOTIFY, reconnects, modes."""

from __future__ import annotations

import asyncio
import functools
import time

import asyncpg
import structlog

from processor import reference_generator
from processor.config import DEFAULT_GENERATORS
from tests.support.factories import SEED_ID, events, make_generation
from tests.support.http import Running, StartDaemon, Stub, settings_for, status_of, wait_until
from tests.support.keys import GENERATOR_KEYS
from tests.support.pg import DAEMON_ROLE


async def test_stuck_rows_are_rescued_and_completed(db_url: str, conn: asyncpg.Connection,
                                                    start_daemon: StartDaemon) -> None:
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=4)
    served = await reference_generator.start(pool, DEFAULT_GENERATORS, GENERATOR_KEYS,
                                             behaviour=reference_generator.Behaviour(work_s=0.2))
    try:
        stuck = [await make_generation(conn, due=True, generator=g) for g in DEFAULT_GENERATORS]
        healthy = await make_generation(conn)
        await make_generation(conn, id=SEED_ID, due=True, retry_count=2, admin_note="retry:2")
        with structlog.testing.capture_logs() as logs:
            await start_daemon(settings_for(db_url, served.url))
            for row_id in stuck:
                await wait_until(functools.partial(_is, conn, row_id, "completed"))
        assert await status_of(conn, healthy) == "generating"
        seed = await conn.fetchrow("SELECT status, error_message FROM generation_history WHERE id = $1", SEED_ID)
        assert seed["status"] == "failed" and seed["error_message"].startswith("retries exhausted: 2 automatic")
        retries = [e for e in logs if e["event"] == "auto_retry"]
        assert {e["generation_id"] for e in retries} == {str(r) for r in stuck}
        assert all(e["authority"] == "scoped-jwt" and e["attempt"] == 1 and e["outcome"] == "accepted"
                   and e["status"] == 202 and e["duration_ms"] > 0 for e in retries)
        assert {e["generator"] for e in retries} == set(DEFAULT_GENERATORS)
        assert [e["generation_id"] for e in logs if e["event"] == "generation_exhausted"] == [str(SEED_ID)]
        assert await events(conn, stuck[0]) == ["claimed", "delivered", "finished"]
    finally:
        await served.stop()
        await pool.close()


async def _is(conn: asyncpg.Connection, row_id: object, status: str) -> bool:
    return await status_of(conn, row_id) == status


async def test_a_deadline_wakes_the_daemon_without_a_tick(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                                          start_daemon: StartDaemon) -> None:
    await conn.execute("UPDATE genretry.policy SET stale_after = '1 second'")
    await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))
    row_id = await make_generation(conn)  # becomes due in 1 s: the daemon plans its wake-up from the NOTIFY
    started = time.monotonic()
    await stub.wait_for(1, within_s=5)
    assert time.monotonic() - started < 3
    assert stub.seen[0].body["retryHistoryId"] == str(row_id)


async def test_retry_now_and_reset_arrive_through_notify(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                                         start_daemon: StartDaemon) -> None:
    waiting = await make_generation(conn)
    failed = await make_generation(conn, status="failed", retry_count=2)
    await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))
    started = time.monotonic()
    await conn.execute("SELECT genretry.retry_now($1)", waiting)
    await stub.wait_for(1, within_s=5)
    await conn.execute("SELECT genretry.reset($1)", failed)
    await stub.wait_for(2, within_s=5)
    assert time.monotonic() - started < 5  # far below the 60 s tick
    assert [s.body["retryHistoryId"] for s in stub.seen] == [str(waiting), str(failed)]


async def test_the_request_carries_the_contract(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                                start_daemon: StartDaemon) -> None:
    row_id = await make_generation(conn, due=True, request={"prompt": "Сайт «Хліб»", "pages": 3, "q": "'; --"})
    await start_daemon(settings_for(db_url, stub.url))
    await stub.wait_for(1)
    seen = stub.seen[0]
    assert seen.body == {"prompt": "Сайт «Хліб»", "pages": 3, "q": "'; --", "retryHistoryId": str(row_id),
                         "retryAttempt": 1}
    assert seen.headers["idempotency-key"] == f"{row_id}:1"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["user-agent"].startswith("generation-processor/")
    assert seen.headers["authorization"].startswith("Bearer ey")
    assert "apikey" not in seen.headers
    # the daemon logged in as a role that holds only genretry_processor
    assert await conn.fetchval(
        "SELECT actor FROM genretry.events WHERE generation_id = $1 AND event = 'claimed'", row_id) == DAEMON_ROLE


async def test_service_key_mode_sends_the_key_in_apikey(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                                        start_daemon: StartDaemon) -> None:
    await make_generation(conn, due=True)
    key = "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz"
    await start_daemon(settings_for(db_url, stub.url, PROCESSOR_AUTH_MODE="service-key",
                                    SUPABASE_SECRET_KEYS=f'{{"default": "{key}"}}'))
    await stub.wait_for(1)
    assert stub.seen[0].headers["apikey"] == key
    assert "authorization" not in stub.seen[0].headers


async def test_the_listener_reconnects_after_its_connection_is_killed(db_url: str, conn: asyncpg.Connection,
                                                                      stub: Stub, start_daemon: StartDaemon) -> None:
    running = await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))
    listener = running.daemon.listener
    assert listener is not None and listener.conn is not None
    pid = listener.conn.get_server_pid()
    await conn.execute("SELECT pg_terminate_backend($1)", pid)
    await wait_until(lambda: _reconnected(running))
    # a notification after the reconnect still wakes the daemon
    row_id = await make_generation(conn)
    await conn.execute("SELECT genretry.retry_now($1)", row_id)
    await stub.wait_for(1, within_s=5)
    assert not running.task.done()


async def _reconnected(running: Running) -> bool:
    listener = running.daemon.listener
    return listener is not None and listener.reconnects >= 1 and listener.healthy


async def test_the_pool_survives_killed_connections(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                                    start_daemon: StartDaemon) -> None:
    running = await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))
    await conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid()")
    row_id = await make_generation(conn)
    await asyncio.sleep(0.5)  # let the listener notice and come back
    await conn.execute("SELECT genretry.retry_now($1)", row_id)
    await stub.wait_for(1, within_s=10)
    assert not running.task.done()


async def test_no_listen_polls_at_the_tick(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                           start_daemon: StartDaemon) -> None:
    running = await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="0.3"), listen=False)
    assert running.daemon.listener is None
    await make_generation(conn, due=True)
    await stub.wait_for(1, within_s=5)


async def test_a_recorded_backoff_wakes_an_idle_daemon_on_time(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                                               start_daemon: StartDaemon) -> None:
    """Issue 10 class 8: the daemon's own records send no NOTIFY; the backoff it recorded must still wake
    it when due, not at the next safety tick (60 s here)."""
    from tests.support.http import answer

    await conn.execute("UPDATE genretry.policy SET backoff_base = '1 second'")
    stub.behaviours["generate-website"] = answer(503)
    await make_generation(conn, due=True, generator="generate-website")
    await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))
    await stub.wait_for(1, within_s=10)
    await stub.wait_for(3, within_s=15)  # two backoffs of ~1 s and ~2 s, far inside one 60 s tick
    gaps = [b.at - a.at for a, b in zip(stub.seen, stub.seen[1:], strict=False)]
    assert all(gap >= 0.7 for gap in gaps)  # the backoff itself is honoured (1 s base, 20 % jitter)


async def test_a_dead_listener_is_noticed_while_idle(db_url: str, stub: Stub, start_daemon: StartDaemon) -> None:
    """Issue 13: the idle path (safety-tick looks) checks the daemon's parts too, so a listener that stopped
    ends the daemon (systemd restarts it) within about one tick instead of leaving it half alive."""
    import pytest

    running = await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="1"))
    listener = next(t for t in running.daemon._tasks if t.get_name() == "listener")
    listener.cancel()
    with pytest.raises(RuntimeError, match="listener stopped"):
        await asyncio.wait_for(running.task, 10)  # idle all along: nothing is due


async def test_a_future_notification_costs_a_look_not_a_claim(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                                              start_daemon: StartDaemon) -> None:
    """A notification for a row due later asks the database when (one statement), claims nothing early,
    and the row is still delivered at its deadline."""
    await conn.execute("UPDATE genretry.policy SET stale_after = '2 seconds'")
    await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))
    before = await conn.fetchval("SELECT count(*) FROM genretry.events WHERE event = 'claimed'")
    row_id = await make_generation(conn)
    await stub.wait_for(1, within_s=10)
    assert stub.seen[0].body["retryHistoryId"] == str(row_id)
    due = await conn.fetchval(
        "SELECT (detail->>'due_at')::timestamptz FROM genretry.events WHERE event = 'claimed' AND generation_id = $1",
        row_id)
    claimed_at = await conn.fetchval(
        "SELECT at FROM genretry.events WHERE event = 'claimed' AND generation_id = $1", row_id)
    assert before == 0 and claimed_at >= due

"""Adversary: the wake-up under conditions the happy path never meets (a paused generator with nothing left
to probe, rows locked by an admin's transaction, notifications for later rows, a dead listener).

The counts below are upper bounds over a window: a slower machine only makes fewer sweeps, never more, so
these tests cannot fail because the machine is loaded.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from processor.scheduler import Scheduler, SweepResult
from tests.support.factories import make_generation
from tests.support.http import StartDaemon, Stub, settings_for, status_of, wait_until


@pytest.fixture
def sweeps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the daemon's claims (Scheduler.run_once calls): each is one claim statement or more."""
    calls: list[int] = []
    original = Scheduler.run_once

    async def counted(self: Scheduler, **kwargs: Any) -> SweepResult:
        calls.append(1)
        return await original(self, **kwargs)

    monkeypatch.setattr(Scheduler, "run_once", counted)
    return calls


async def _pause_that_ended(conn: asyncpg.Connection) -> None:
    """generate-website's circuit opened 40 s ago after five 503s; its pause ended 10 s ago."""
    await conn.execute(
        """INSERT INTO genretry.generator_state (generator, state, consecutive_failures, pauses, reason,
                                                 opened_at, open_until)
           VALUES ('generate-website', 'open', 5, 1, '503 from generate-website',
                   now() - interval '40 seconds', now() - interval '10 seconds')""")


async def test_an_open_circuit_with_no_due_rows_does_not_make_the_daemon_sweep(
        db_url: str, conn: asyncpg.Connection, stub: Stub, start_daemon: StartDaemon, sweeps: list[int]) -> None:
    # A generator paused a while ago whose rows then finished on their own (or were given up by an admin):
    # its pause is over, nothing of it is due.
    await _pause_that_ended(conn)
    await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))
    before = len(sweeps)
    await asyncio.sleep(4)
    # idle, with a 60 s tick: no sweep is due in these 4 seconds
    assert len(sweeps) - before <= 1, f"{len(sweeps) - before} sweeps in 4 s while nothing was due"


async def test_a_pause_that_ends_before_its_rows_fall_due_does_not_make_the_daemon_sweep(
        db_url: str, conn: asyncpg.Connection, stub: Stub, start_daemon: StartDaemon, sweeps: list[int]) -> None:
    row_id = await make_generation(conn)  # falls due in ~7 minutes (the default stale_after)
    await _pause_that_ended(conn)
    await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))
    before = len(sweeps)
    await asyncio.sleep(4)
    assert await status_of(conn, row_id) == "generating" and not stub.seen
    assert len(sweeps) - before <= 1, f"{len(sweeps) - before} sweeps in 4 s while nothing was due"


async def test_rows_locked_by_an_admin_transaction_cost_at_most_a_sweep_a_second(
        db_url: str, conn: asyncpg.Connection, pg_admin_url: str, stub: Stub, start_daemon: StartDaemon,
        sweeps: list[int]) -> None:
    """Survived: an admin holding SELECT ... FOR UPDATE on due rows in psql; the daemon backs off to 1 s."""
    row_id = await make_generation(conn, due=True)
    admin = await asyncpg.connect(db_url)
    try:
        tx = admin.transaction()
        await tx.start()
        await admin.execute("SELECT * FROM generation_history WHERE id = $1 FOR UPDATE", row_id)
        await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))
        await asyncio.sleep(1.5)  # the backoff reaches its 1 s cap
        before = len(sweeps)
        await asyncio.sleep(4)
        assert len(sweeps) - before <= 6, f"{len(sweeps) - before} sweeps in 4 s on one locked row"
        assert not stub.seen
        await tx.rollback()
    finally:
        await admin.close()
    await stub.wait_for(1, within_s=15)  # released: the row goes out
    assert stub.seen[0].body["retryHistoryId"] == str(row_id)


async def test_notifications_for_later_rows_cost_no_claim(
        db_url: str, conn: asyncpg.Connection, stub: Stub, start_daemon: StartDaemon, sweeps: list[int]) -> None:
    """Survived: 200 rows inserted, each due in ~7 minutes, each sending a NOTIFY: the daemon only looks."""
    await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))
    before = len(sweeps)
    for _ in range(200):
        await make_generation(conn)
    await asyncio.sleep(1.0)
    assert len(sweeps) - before == 0
    assert not stub.seen


async def test_a_dead_listener_is_noticed_and_replaced_while_idle(
        db_url: str, conn: asyncpg.Connection, stub: Stub, start_daemon: StartDaemon) -> None:
    """Survived: the listener's backend killed while the daemon is idle; a later NOTIFY still wakes it."""
    running = await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="2"))
    listener = running.daemon.listener
    assert listener is not None and listener.conn is not None
    for round_ in range(3):
        assert listener.conn is not None
        await conn.execute("SELECT pg_terminate_backend($1)", listener.conn.get_server_pid())

        async def back(n: int = round_ + 1) -> bool:
            return listener.reconnects >= n and listener.healthy
        await wait_until(back, within_s=20)
    row_id = await make_generation(conn)
    await conn.execute("SELECT genretry.retry_now($1)", row_id)
    await stub.wait_for(1, within_s=10)
    assert not running.task.done()


async def test_an_admin_holding_one_circuit_row_does_not_stall_other_generators(
        db_url: str, conn: asyncpg.Connection, stub: Stub, start_daemon: StartDaemon) -> None:
    await conn.execute(
        """INSERT INTO genretry.generator_state (generator, state, consecutive_failures, pauses, reason,
                                                 opened_at, open_until)
           VALUES ('generate-php-website', 'open', 5, 1, '503', now() - interval '40 seconds',
                   now() + interval '2 seconds')""")
    await make_generation(conn, due=True, generator="generate-php-website")
    admin = await asyncpg.connect(db_url)
    try:
        tx = admin.transaction()
        await tx.start()
        # an operator looks at the paused generator in psql, in a transaction left open
        await admin.execute("SELECT * FROM genretry.generator_state WHERE generator = 'generate-php-website' "
                            "FOR UPDATE")
        await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))
        await asyncio.sleep(3)  # the pause is over: the next claim wants to take the probe
        other = await make_generation(conn, due=False, generator="generate-website")
        await conn.execute("SELECT genretry.retry_now($1)", other)
        await stub.wait_for(1, within_s=10)
        assert stub.seen[0].body["retryHistoryId"] == str(other)
        await tx.rollback()
    finally:
        await admin.close()


class _SkewedClock:
    """The daemon's view of the time module: the host's wall clock `skew_s` ahead of the database's."""

    def __init__(self, skew_s: float) -> None:
        import time as real

        self._real, self.skew_s = real, skew_s
        self.monotonic = real.monotonic

    def time(self) -> float:
        return self._real.time() + self.skew_s


async def test_a_host_clock_ahead_of_the_database_does_not_turn_notifications_into_claims(
        db_url: str, conn: asyncpg.Connection, stub: Stub, start_daemon: StartDaemon, sweeps: list[int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import processor.daemon

    monkeypatch.setattr(processor.daemon, "time", _SkewedClock(30.0))
    await conn.execute("UPDATE genretry.policy SET stale_after = '20 seconds'")
    await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))
    before = len(sweeps)
    for _ in range(20):
        await make_generation(conn)  # each due in 20 s by the database's clock, each sends a NOTIFY
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    assert not stub.seen
    assert len(sweeps) - before <= 2, f"{len(sweeps) - before} claims for 20 rows none of which was due"

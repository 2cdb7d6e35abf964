"""The LISTEN self-test at start, against a database whose notifications are dropped (what a transaction-mode
pooler does) or delayed (a slow, busy database), through tests/support/pg_proxy.py in front of the real one.
A pooler is reported (ListenUnavailable: the operator must change DATABASE_URL); a slow database is waited for:
it used to be taken for a pooler after one wait of 3 s, an exit 2 that systemd does not restart."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
import structlog

from processor import listener
from processor.daemon import Daemon
from processor.errors import ListenUnavailable
from tests.support.factories import make_generation
from tests.support.http import Stub, settings_for
from tests.support.pg import as_daemon
from tests.support.pg_proxy import notification_proxy


async def _start(daemon: Daemon, within_s: float) -> asyncio.Task[None]:
    task = asyncio.create_task(daemon.run(signals=False))
    ready = asyncio.ensure_future(daemon.ready.wait())
    await asyncio.wait([ready, task], timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    return task


async def test_a_database_that_never_delivers_is_reported_as_a_pooler(
        db_url: str, stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listener, "SELF_TEST_WAITS_S", (0.3, 0.6))
    async with notification_proxy(as_daemon(db_url), delay_s=None) as proxy:
        daemon = Daemon(settings_for(proxy.url, stub.url))
        task = await _start(daemon, within_s=30)
        assert task.done() and not daemon.ready.is_set()
        with pytest.raises(ListenUnavailable, match=r"no notifications .* within 0\.9 s.*transaction-mode pooler"):
            task.result()


async def test_a_slow_database_is_waited_for(db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    row_id = await make_generation(conn, due=True)
    async with notification_proxy(as_daemon(db_url), delay_s=4.0) as proxy:  # longer than the first wait
        daemon = Daemon(settings_for(proxy.url, stub.url, PROCESSOR_TICK="60"))
        with structlog.testing.capture_logs() as logs:
            task = await _start(daemon, within_s=40)
        try:
            assert daemon.ready.is_set(), f"the daemon did not start: {task.exception() if task.done() else ''!r}"
            await stub.wait_for(1, within_s=15)
            assert stub.seen[0].body["retryHistoryId"] == str(row_id)
            events = [e["event"] for e in logs]
            assert "listen_self_test_waiting" in events and "listen_slow" in events
        finally:
            daemon.request_stop()
            await asyncio.wait([task], timeout=20)

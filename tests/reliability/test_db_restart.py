"""A database restart under load (pg_ctl restart -m fast on a server the test owns): the daemon reconnects
by itself, misses no deadline, and shuts down cleanly afterwards."""

from __future__ import annotations

import asyncio
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from processor import migrate
from tests.e2e import cli
from tests.reliability.finishing_stub import finishing_stub

pytestmark = pytest.mark.reliability


@pytest.fixture
def own_server() -> Iterator[tuple[str, object]]:
    import pgserver

    with tempfile.TemporaryDirectory(prefix="genretry-restart-") as tmp:
        server = pgserver.get_server(tmp, cleanup_mode="stop")
        try:
            yield server.get_uri("postgres"), server
        finally:
            server.cleanup()


def _restart(server: object) -> None:
    from pgserver import _commands

    _commands.pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user)  # type: ignore[attr-defined]


async def test_restart_under_load(own_server: tuple[str, object], tmp_path: Path) -> None:
    url, server = own_server
    conn = await asyncpg.connect(url)
    await migrate.migrate(conn)
    # 600 rows falling due over 12 seconds, 50 a second; the restart lands in the middle
    await conn.execute(
        """INSERT INTO generation_history (user_id, status, status_changed_at)
           SELECT gen_random_uuid(), 'generating',
                  clock_timestamp() - interval '7 minutes' + interval '3 seconds' + i * interval '20 milliseconds'
           FROM generate_series(0, 599) i""")
    last_due = await conn.fetchval("SELECT max(deadline_at) FROM generation_history")
    await conn.close()
    log = tmp_path / "daemon.log"
    async with finishing_stub(url, finish_after_s=0.01) as stub:
        proc = await cli.start("run", env=cli.env_for(url, stub.url, PROCESSOR_TICK="5s"), log=log)
        await asyncio.sleep(6)
        await asyncio.to_thread(_restart, server)
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = await asyncpg.connect(url)
                done = await conn.fetchval("SELECT count(*) FROM generation_history WHERE status = 'completed'")
                await conn.close()
            except (OSError, asyncpg.PostgresError):
                done = 0
            if done == 600:
                break
            assert time.monotonic() < deadline, f"only {done} of 600 completed"
            await asyncio.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    text = log.read_text()
    assert '"listener_reconnected"' in text
    conn = await asyncpg.connect(url)
    lags = [r["lag"] for r in await conn.fetch(
        """SELECT extract(epoch FROM min(at) - min((detail->>'due_at')::timestamptz))::float8 AS lag
           FROM genretry.events WHERE event = 'claimed' GROUP BY generation_id""")]
    await conn.close()
    # no deadline missed: every row was claimed once, at or after its deadline; those that fell due while
    # the server restarted were taken as soon as it was back
    assert len(lags) == 600 and min(lags) >= 0
    assert sorted(lags)[300] < 0.05  # the typical row, away from the restart, within 50 ms
    assert max(lags) < 15
    assert last_due is not None
    assert all(line.startswith("{") for line in text.splitlines()), "a log line that is not JSON"

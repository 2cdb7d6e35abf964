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
from tests.support import cli
from tests.support.finishing_stub import finishing_stub

pytestmark = pytest.mark.reliability


@pytest.fixture
def own_server() -> Iterator[tuple[str, object]]:
    import pgserver

    with tempfile.TemporaryDirectory(prefix="genretry-restart-") as tmp:
        server = pgserver.get_server(tmp, cleanup_mode="stop")  # type: ignore[attr-defined]
        try:
            yield server.get_uri("postgres"), server
        finally:
            server.cleanup()


def _restart(server: object, mode: str = "fast") -> None:
    from pgserver import _commands

    _commands.pg_ctl(["-w", "-m", mode, "restart"], pgdata=server.pgdata, user=server.system_user)  # type: ignore[attr-defined]


async def _count_completed(url: str) -> int:
    try:
        conn = await asyncpg.connect(url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM generation_history WHERE status = 'completed'"))
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return 0


async def _wait_all_completed(url: str, n: int, proc: asyncio.subprocess.Process, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while (done := await _count_completed(url)) < n:
        assert proc.returncode is None, f"the daemon exited ({proc.returncode}) with {done} of {n} completed"
        assert time.monotonic() < deadline, f"only {done} of {n} completed"
        await asyncio.sleep(0.5)


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
        await _wait_all_completed(url, 600, proc)
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
    assert sorted(lags)[300] < 1.0  # the typical row, away from the restart, well before the 5 s tick
    assert max(lags) < 15
    assert last_due is not None
    assert all(line.startswith("{") for line in text.splitlines()), "a log line that is not JSON"


async def test_immediate_restarts_mid_claim_and_record(own_server: tuple[str, object], tmp_path: Path) -> None:
    """Three immediate-mode shutdowns (no goodbye to clients, crash recovery on start) while rows are being
    claimed and outcomes recorded: the daemon stays up, every row completes, SIGTERM still exits 0."""
    url, server = own_server
    conn = await asyncpg.connect(url)
    await migrate.migrate(conn)
    await conn.execute(
        """INSERT INTO generation_history (user_id, status, status_changed_at)
           SELECT gen_random_uuid(), 'generating',
                  clock_timestamp() - interval '7 minutes' + interval '2 seconds' + i * interval '10 milliseconds'
           FROM generate_series(0, 799) i""")
    await conn.close()
    log = tmp_path / "daemon.log"
    async with finishing_stub(url, finish_after_s=0.01) as stub:
        proc = await cli.start("run", env=cli.env_for(url, stub.url, PROCESSOR_TICK="5s"), log=log)
        await asyncio.sleep(3)
        for _ in range(3):
            await asyncio.to_thread(_restart, server, "immediate")
            assert proc.returncode is None, "the daemon died in a restart"
            await asyncio.sleep(1.5)
        await _wait_all_completed(url, 800, proc)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0, log.read_text()[-3000:]
    assert all(line.startswith("{") for line in log.read_text().splitlines()), "a log line that is not JSON"


async def test_every_daemon_connection_terminated_repeatedly(db_url: str, tmp_path: Path) -> None:
    """pg_terminate_backend on each of the daemon's connections, ten times under load: no crash, no row lost."""
    conn = await asyncpg.connect(db_url)
    await conn.execute(
        """INSERT INTO generation_history (user_id, status, status_changed_at)
           SELECT gen_random_uuid(), 'generating',
                  clock_timestamp() - interval '7 minutes' + interval '1 second' + i * interval '10 milliseconds'
           FROM generate_series(0, 599) i""")
    log = tmp_path / "daemon.log"
    killed = 0
    try:
        async with finishing_stub(db_url, finish_after_s=0.01) as stub:
            proc = await cli.start("run", env=cli.daemon_env_for(db_url, stub.url, PROCESSOR_TICK="5s"), log=log)
            await asyncio.sleep(1.5)
            for _ in range(10):
                killed += await conn.fetchval(
                    """SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
                       WHERE datname = current_database() AND usename <> current_user""")
                await asyncio.sleep(0.6)
                assert proc.returncode is None, "the daemon died after its connections were terminated"
            await _wait_all_completed(db_url, 600, proc)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0, log.read_text()[-3000:]
    finally:
        await conn.close()
    assert killed >= 5  # the daemon's own connections were hit, round after round

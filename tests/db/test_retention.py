"""Retention of genretry.events: bounded batches, callable by the daemon's role, run on a schedule."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from processor import retention
from processor.metrics import Metrics
from tests.support.pg import as_daemon

DAYS = 86400.0


async def _events(conn: asyncpg.Connection, count: int, age: str) -> None:
    await conn.execute(
        """INSERT INTO genretry.events (generation_id, event, at)
           SELECT gen_random_uuid(), 'claimed', now() - $2::text::interval FROM generate_series(1, $1)""", count, age)


async def test_prune_deletes_old_events_in_batches_as_the_daemon_role(db_url: str, conn: asyncpg.Connection) -> None:
    await _events(conn, 12, "40 days")
    await _events(conn, 3, "29 days")
    metrics = Metrics()
    pool = await asyncpg.create_pool(as_daemon(db_url), min_size=1, max_size=2)
    try:
        assert await pool.fetchval("SELECT genretry.prune_events(interval '30 days', 5)") == 5  # one batch a call
        assert await retention.prune(pool, 30 * DAYS, batch=5, metrics=metrics) == 7
    finally:
        await pool.close()
    assert await conn.fetchval("SELECT count(*) FROM genretry.events") == 3
    assert await conn.fetchval("SELECT min(at) > now() - interval '30 days' FROM genretry.events")
    assert metrics.registry.get_sample_value("genretry_events_pruned_total") == 7


@pytest.mark.parametrize(("older_than", "batch"), [("30 minutes", 10), ("30 days", 0), ("30 days", 1_000_000)])
async def test_prune_refuses_a_retention_that_would_empty_the_log(conn: asyncpg.Connection, older_than: str,
                                                                   batch: int) -> None:
    await _events(conn, 2, "2 hours")
    with pytest.raises(asyncpg.InvalidParameterValueError):
        await conn.fetchval("SELECT genretry.prune_events($1::text::interval, $2)", older_than, batch)
    assert await conn.fetchval("SELECT count(*) FROM genretry.events") == 2


async def test_the_schedule_prunes_after_its_first_delay(pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
    await _events(conn, 4, "31 days")
    metrics, stop = Metrics(), asyncio.Event()
    task = asyncio.create_task(retention.run(pool, 30 * DAYS, metrics, stop, first_run_s=0.01, every_s=3600))
    async with asyncio.timeout(10):
        while not metrics.registry.get_sample_value("genretry_retention_last_success_timestamp_seconds"):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert await conn.fetchval("SELECT count(*) FROM genretry.events") == 0
    assert metrics.registry.get_sample_value("genretry_events_pruned_total") == 4


async def test_retention_zero_keeps_everything(pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
    await _events(conn, 2, "400 days")
    stop = asyncio.Event()
    task = asyncio.create_task(retention.run(pool, 0, Metrics(), stop, first_run_s=0))
    await asyncio.sleep(0)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert await conn.fetchval("SELECT count(*) FROM genretry.events") == 2


async def test_a_failed_run_is_counted_and_the_schedule_goes_on(db_url: str, conn: asyncpg.Connection) -> None:
    await conn.execute("REVOKE EXECUTE ON FUNCTION genretry.prune_events(interval, integer) FROM genretry_processor")
    metrics, stop = Metrics(), asyncio.Event()
    pool = await asyncpg.create_pool(as_daemon(db_url), min_size=1, max_size=1)
    try:
        task = asyncio.create_task(retention.run(pool, 30 * DAYS, metrics, stop, first_run_s=0.01, every_s=0.01))
        async with asyncio.timeout(10):
            while (metrics.registry.get_sample_value("genretry_retention_errors_total") or 0) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert not task.done()
        stop.set()
        await asyncio.wait_for(task, 5)
    finally:
        await pool.close()

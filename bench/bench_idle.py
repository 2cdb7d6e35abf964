"""Idle load: statements a minute that the daemon sends with 1,000 rows generating and none due
(pg_stat_database transaction counters of its own database), beside the seed's poll at 1 s.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from bench.bench_latency import _seed_poller
from bench.common import Result, Row, daemon_process, fresh_db, stub_process


async def _transactions(admin: asyncpg.Connection, name: str) -> int:
    await admin.execute("SELECT pg_stat_clear_snapshot()")
    value: int = await admin.fetchval(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1", name)
    return value


async def _count_for(admin: asyncpg.Connection, name: str, seconds: float) -> float:
    """Transactions per minute in database `name` over `seconds` (stats are flushed within ~10 s)."""
    await asyncio.sleep(12)  # let the start-up's counters land first
    before = await _transactions(admin, name)
    await asyncio.sleep(seconds)
    await asyncio.sleep(12)  # let the window's counters land
    after = await _transactions(admin, name)
    return (after - before) * 60 / (seconds + 12)


async def run(admin_url: str, quick: bool) -> Result:
    seconds = 60.0 if quick else 300.0
    result = Result("idle")
    async with fresh_db(admin_url) as db_url, stub_process() as stub_url:
        name = db_url.rsplit("/", 1)[1].split("?")[0]
        conn = await asyncpg.connect(db_url)
        await conn.execute("INSERT INTO generation_history (user_id, status, heartbeat_at) "
                           "SELECT gen_random_uuid(), 'generating', now() + interval '10 minutes' "
                           "FROM generate_series(1, 1000)")
        await conn.close()
        admin = await asyncpg.connect(admin_url)
        async with daemon_process(db_url, stub_url):
            daemon_rate = await _count_for(admin, name, seconds)
        stop = asyncio.Event()
        poller = asyncio.create_task(_seed_poller(db_url, stub_url, stop, 1.0))
        seed_rate = await _count_for(admin, name, 20.0)
        stop.set()
        with contextlib.suppress(Exception):
            await poller
        await admin.close()
    result.rows.append(Row(f"idle statements/minute, 1,000 generating, none due ({seconds:.0f} s)",
                           f"{daemon_rate:.1f}", f"seed poll at 1 s: {seed_rate:.0f}", "<= 2", daemon_rate <= 2))
    result.data = {"daemon_per_min": daemon_rate, "seed_poll_per_min": seed_rate, "window_s": seconds}
    return result

"""Memory: the daemon's resident size over a run at 200 deliveries/s: start, peak, end."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from bench.common import Result, Row, daemon_process, fresh_db, rss_mb, stub_arrivals, stub_process


async def _feed(db_url: str, stop: asyncio.Event, per_tick: int) -> int:
    """Every 100 ms, per_tick rows that are already due: 10 x per_tick deliveries a second."""
    conn = await asyncpg.connect(db_url)
    fed = 0
    next_tick = time.monotonic()
    while not stop.is_set():
        await conn.execute(
            """INSERT INTO generation_history (user_id, status, request, status_changed_at, deadline_at)
               SELECT gen_random_uuid(), 'generating', '{"prompt": "a site"}', now() - interval '1 hour', now()
               FROM generate_series(1, $1)""", per_tick)
        fed += per_tick
        next_tick += 0.1
        await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
    await conn.close()
    return fed


async def run(admin_url: str, quick: bool) -> Result:
    seconds = 60.0 if quick else 600.0
    result = Result("memory")
    samples: list[tuple[float, float]] = []
    async with fresh_db(admin_url) as db_url, stub_process() as stub_url, daemon_process(db_url, stub_url) as proc:
        stop = asyncio.Event()
        feeder = asyncio.create_task(_feed(db_url, stop, 20))
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            await asyncio.sleep(5)
            samples.append((time.monotonic() - started, rss_mb(proc.pid)))
        stop.set()
        fed = await feeder
        await asyncio.sleep(2)
        delivered = len({a[0] for a in await stub_arrivals(stub_url)})
    start, end = samples[0][1], samples[-1][1]
    peak = max(mb for _t, mb in samples)
    result.rows.append(Row(f"resident size over {seconds:.0f} s at {fed / seconds:.0f} deliveries/s",
                           f"start {start:.1f} MB, peak {peak:.1f} MB, end {end:.1f} MB",
                           f"{fed:,} rows fed, {delivered:,} deliveries (second attempts included)",
                           "<= 80 MB and flat",
                           peak <= 80 and end - start <= 5))
    result.data = {"rss_mb": samples, "fed": fed, "delivered": delivered}
    return result

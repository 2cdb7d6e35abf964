"""Idle load: statements a minute that the daemon sends with 1,000 rows generating and none due, and its
resident size over the window, beside the seed's poll at 1 s.

When a temporary PostgreSQL 15 cluster can be started (bench/cluster.py), the daemon runs on it alone, with
log_statement = all: its statements are counted from the server's log, and no other database's NOTIFY traffic
reaches the transaction counter. Otherwise the shared server's pg_stat_database counts transactions.
The window starts BENCH_IDLE_SKIP_S (default 15) seconds after the daemon is ready: start-up is not idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from bench import cluster
from bench.bench_latency import _seed_poller
from bench.common import Result, Row, daemon_process, fresh_db, rss_mb, stub_process


async def _transactions(admin: asyncpg.Connection, name: str) -> int:
    await admin.execute("SELECT pg_stat_clear_snapshot()")
    value: int = await admin.fetchval(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1", name)
    return value


def _statements(log: Path, name: str) -> int:
    """Statements logged (log_statement = all) by sessions of database `name`."""
    marker = f" {name} "
    count = 0
    with log.open(errors="replace") as f:
        for line in f:
            if marker in line and (" LOG:  statement: " in line or " LOG:  execute " in line):
                count += 1
    return count


async def _window(admin: asyncpg.Connection, name: str, seconds: float, log: Path | None,
                  sample: Callable[[], Awaitable[None]] | None = None) -> tuple[float, float | None]:
    """(transactions a minute, statements a minute or None) in database `name` over `seconds`.

    pg_stat_database counters are flushed within ~10 s: 12 s are allowed before reading each end of the window,
    and the rate is taken over the window plus those 12 s.
    """
    before = await _transactions(admin, name)
    logged0 = _statements(log, name) if log else 0
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        await asyncio.sleep(min(5.0, max(0.0, ends - time.monotonic())))
        if sample is not None:
            await sample()
    logged1 = _statements(log, name) if log else 0
    await asyncio.sleep(12)
    after = await _transactions(admin, name)
    return (after - before) * 60 / (seconds + 12), ((logged1 - logged0) * 60 / seconds if log else None)


async def _measure(admin_url: str, seconds: float, skip_s: float, log: Path | None) -> dict[str, object]:
    async with fresh_db(admin_url) as db_url, stub_process() as stub_url:
        name = db_url.rsplit("/", 1)[1].split("?")[0]
        conn = await asyncpg.connect(db_url)
        await conn.execute("INSERT INTO generation_history (user_id, status, heartbeat_at) "
                           "SELECT gen_random_uuid(), 'generating', now() + interval '10 minutes' "
                           "FROM generate_series(1, 1000)")
        await conn.close()
        admin = await asyncpg.connect(admin_url)
        rss: list[tuple[float, float]] = []
        async with daemon_process(db_url, stub_url) as proc:
            ready = time.monotonic()
            await asyncio.sleep(skip_s)

            async def sample() -> None:
                rss.append((round(time.monotonic() - ready, 1), rss_mb(proc.pid)))

            await sample()
            xacts, statements = await _window(admin, name, seconds, log, sample)
        # the seed's poll on the same table with nothing stale: one query a second and nothing to post
        await admin.close()
        conn = await asyncpg.connect(db_url)
        async with conn.transaction():  # the row trigger would set updated_at to now()
            await conn.execute("ALTER TABLE generation_history DISABLE TRIGGER USER")
            await conn.execute("UPDATE generation_history SET updated_at = now() + interval '1 hour'")
            await conn.execute("ALTER TABLE generation_history ENABLE TRIGGER USER")
        await conn.close()
        admin = await asyncpg.connect(admin_url)
        stop = asyncio.Event()
        poller = asyncio.create_task(_seed_poller(db_url, stub_url, stop, 1.0))
        seed_xacts, seed_statements = await _window(admin, name, 20.0, log)
        stop.set()
        with contextlib.suppress(Exception):
            await poller
        await admin.close()
    return {"xacts_per_min": xacts, "statements_per_min": statements, "seed_xacts_per_min": seed_xacts,
            "seed_statements_per_min": seed_statements, "rss_mb": rss}


async def run(admin_url: str, quick: bool) -> Result:
    seconds = 60.0 if quick else 300.0
    skip_s = float(os.environ.get("BENCH_IDLE_SKIP_S", "15"))
    result = Result("idle")
    reason = cluster.why_not()
    if reason is None:
        settings = {"log_statement": "all", "log_line_prefix": "'%m [%p] %d '"}
        with cluster.temp_cluster(settings) as (url, tmp):
            data = await _measure(url, seconds, skip_s, tmp / "server.log")
        where = "own temporary cluster, statements from its log"
    else:
        data = await _measure(admin_url, seconds, skip_s, None)
        where = f"shared server, transactions only ({reason})"
    window = f"{skip_s:.0f}-{skip_s + seconds:.0f} s after ready"
    stmts, xacts = data["statements_per_min"], data["xacts_per_min"]
    assert isinstance(xacts, float)
    figure = stmts if isinstance(stmts, float) else xacts
    seed = data["seed_statements_per_min"] if isinstance(stmts, float) else data["seed_xacts_per_min"]
    assert isinstance(seed, float)
    result.rows.append(Row(f"idle statements/minute, 1,000 generating, none due ({window})", f"{figure:.1f}",
                           f"transactions/min {xacts:.1f}; seed poll at 1 s: {seed:.0f}/min ({where})", "<= 2",
                           figure <= 2))
    rss = data["rss_mb"]
    assert isinstance(rss, list)
    values = [mb for _t, mb in rss]
    result.rows.append(Row(f"idle resident size ({window})",
                           f"start {values[0]:.1f} MB, peak {max(values):.1f} MB, end {values[-1]:.1f} MB",
                           f"{len(values)} samples, 5 s apart", "<= 80 MB, flat",
                           max(values) <= 80 and values[-1] - values[0] <= 2))
    result.data = {**data, "window_s": seconds, "skip_s": skip_s, "where": where}
    return result

"""Sweep cost against table size: one claim of 100 due rows with 10k, 1M and 5M finished rows, beside the
seed's query (no index on status and time) on the same tables.
"""

from __future__ import annotations

import statistics
import time

import asyncpg

from bench.common import Result, Row, fresh_db

SEED_QUERY = """SELECT id, generator FROM generation_history
                WHERE status = 'generating' AND updated_at < now() - interval '7 minutes'"""  # all stale rows


async def _grow(conn: asyncpg.Connection, total: int) -> None:
    """Add finished rows until the table holds `total` of them (bulk load: triggers off for the load only)."""
    have = await conn.fetchval("SELECT count(*) FROM generation_history WHERE status IN ('completed', 'failed')")
    if total <= have:
        return
    await conn.execute("SET session_replication_role = replica")  # skip row triggers for the bulk load
    step = 500_000
    for start in range(have, total, step):
        await conn.execute(
            """INSERT INTO generation_history (user_id, status, request, created_at, updated_at)
               SELECT gen_random_uuid(), CASE WHEN i % 20 = 0 THEN 'failed' ELSE 'completed' END,
                      '{"prompt": "a site"}', now() - interval '30 days', now() - interval '30 days'
               FROM generate_series($1::bigint, $2::bigint) i""", start, min(total, start + step) - 1)
    await conn.execute("SET session_replication_role = origin")
    await conn.execute("VACUUM ANALYZE generation_history")


async def _timed(conn: asyncpg.Connection, sql: str, repeat: int, *, without_index: bool = False) -> float:
    """Median seconds of `sql` inside a transaction that is rolled back (the same rows stay due).

    without_index: the seed's table had no index on status and time. Its query (status = 'generating')
    would otherwise use our partial index, which the planner proves applicable, so index scans are off.
    """
    samples = []
    for _ in range(repeat):
        tx = conn.transaction()
        await tx.start()
        if without_index:
            await conn.execute("SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off")
        started = time.perf_counter()
        rows = await conn.fetch(sql)
        samples.append(time.perf_counter() - started)
        await tx.rollback()
        assert rows, "nothing found"
    return statistics.median(samples)


async def run(admin_url: str, quick: bool) -> Result:
    sizes = [10_000, 200_000] if quick else [10_000, 1_000_000, 5_000_000]
    result = Result("sweep")
    claim: dict[int, float] = {}
    seed: dict[int, float] = {}
    async with fresh_db(admin_url) as db_url:
        conn = await asyncpg.connect(db_url)
        await conn.execute(
            """INSERT INTO generation_history (user_id, status, status_changed_at, updated_at, deadline_at)
               SELECT gen_random_uuid(), 'generating', now() - interval '1 hour', now() - interval '1 hour',
                      now() - interval '1 second' FROM generate_series(1, 300)""")
        for size in sizes:
            await _grow(conn, size)
            claim[size] = await _timed(conn, "SELECT * FROM genretry.claim('bench', 100, '1 minute')", 30)
            seed[size] = await _timed(conn, SEED_QUERY, 5, without_index=True)
        await conn.close()
    small, large = claim[sizes[0]], claim[sizes[-1]]
    for size in sizes:
        result.rows.append(Row(f"claim 100 due rows, {size:,} finished rows", f"{claim[size] * 1000:.2f} ms",
                               f"seed query: {seed[size] * 1000:.1f} ms",
                               "<= 2 ms at 5M" if size == 5_000_000 else "", None if size != sizes[-1] else
                               (large <= 0.002 if size == 5_000_000 else None)))
    result.rows.append(Row(f"claim at {sizes[-1]:,} / at {sizes[0]:,}", f"{large / small:.2f}x", "", "<= 1.5x",
                           large / small <= 1.5))
    result.data = {"claim_s": claim, "seed_query_s": seed}
    return result

"""The real genretry.claim and genretry.next_wakeup, not copies of their queries, never scan the whole
history: with 200,000 finished rows beside 300 live ones, the table's sequential-scan counter stays put
across enough calls for plpgsql to switch to its generic plans (issue 13: plan tests on real functions)."""

from __future__ import annotations

import asyncpg


async def _seq_scans(conn: asyncpg.Connection) -> tuple[int, int]:
    await conn.execute("SELECT pg_stat_force_next_flush()")
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    row = await conn.fetchrow("SELECT seq_scan, coalesce(idx_scan, 0) AS idx_scan FROM pg_stat_user_tables "
                              "WHERE relid = 'public.generation_history'::regclass")
    return int(row["seq_scan"]), int(row["idx_scan"])


async def _fill(conn: asyncpg.Connection) -> None:
    await conn.execute(
        """INSERT INTO generation_history (user_id, status, request)
           SELECT gen_random_uuid(), CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'completed' END, '{}'
           FROM generate_series(1, 200000) i""")
    await conn.execute(
        """INSERT INTO generation_history (user_id, status, deadline_at, status_changed_at)
           SELECT gen_random_uuid(), 'generating', now() + interval '1 hour' + interval '1 second' * i,
                  now() - interval '1 minute'
           FROM generate_series(1, 300) i""")
    await conn.execute("ANALYZE generation_history")


async def _call_both(conn: asyncpg.Connection) -> None:
    for _ in range(8):  # plpgsql tries custom plans five times before it settles on a generic one
        assert await conn.fetch("SELECT * FROM genretry.claim('plan-test', 50)") == []  # nothing due yet
        assert await conn.fetchval("SELECT genretry.next_wakeup(clock_timestamp())") is not None


async def test_the_real_functions_use_the_live_row_index(conn: asyncpg.Connection) -> None:
    await _fill(conn)
    seq_before, idx_before = await _seq_scans(conn)
    await _call_both(conn)
    seq_after, idx_after = await _seq_scans(conn)
    assert seq_after == seq_before, "a work query read the whole history"
    assert idx_after > idx_before  # and it did read the table, through an index


async def test_the_counter_sees_a_full_scan_when_the_index_is_gone(conn: asyncpg.Connection) -> None:
    """The control: the same calls without the live-row index read the whole table, and the test sees it."""
    await _fill(conn)
    await conn.execute("DROP INDEX generation_history_live_deadline_idx")
    seq_before, _ = await _seq_scans(conn)
    await _call_both(conn)
    seq_after, _ = await _seq_scans(conn)
    assert seq_after > seq_before

"""Finding work reads the live-row index: its cost does not grow with finished generations (SPEC 3.2)."""

from __future__ import annotations

import json

import asyncpg
import pytest

# The candidate scan of genretry.claim (its `normal` CTE) and of genretry.next_wakeup, as the planner sees
# them with the dispatch filter's arrays bound.
DUE_ROWS = """
SELECT h.id FROM public.generation_history h
WHERE h.status IN ('pending', 'generating') AND h.deadline_at <= now()
  AND NOT (h.generator = ANY ($1::text[])) AND NOT (h.generator = ANY ($1::text[]))
  AND (true OR h.generator = ANY ($1::text[]))
ORDER BY h.deadline_at LIMIT 100 FOR UPDATE SKIP LOCKED
"""
NEXT_DEADLINE = """
SELECT h.deadline_at FROM public.generation_history h
WHERE h.status IN ('pending', 'generating') AND h.deadline_at IS NOT NULL
  AND NOT (h.generator = ANY ($1::text[])) AND (true OR h.generator = ANY ($1::text[]))
ORDER BY h.deadline_at LIMIT 1
"""


@pytest.fixture
async def big_table(conn: asyncpg.Connection) -> asyncpg.Connection:
    await conn.execute(
        """INSERT INTO generation_history (user_id, status, request)
           SELECT gen_random_uuid(), CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'completed' END, '{}'
           FROM generate_series(1, 200000) i""")
    await conn.execute(
        """INSERT INTO generation_history (user_id, status, deadline_at, status_changed_at)
           SELECT gen_random_uuid(), 'generating', now() - interval '1 second' * i, now() - interval '1 hour'
           FROM generate_series(1, 300) i""")
    await conn.execute("ANALYZE generation_history")
    return conn


def _nodes(plan: dict[str, object]) -> list[dict[str, object]]:
    found = [plan]
    children: list[dict[str, object]] = plan.get("Plans", [])  # type: ignore[assignment]
    for child in children:
        found.extend(_nodes(child))
    return found


async def _plan(conn: asyncpg.Connection, sql: str, *args: object) -> list[dict[str, object]]:
    raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    return _nodes(json.loads(raw)[0]["Plan"])


def _scans_of_history(nodes: list[dict[str, object]]) -> list[str]:
    return [str(n["Node Type"]) for n in nodes if n.get("Relation Name") == "generation_history"]


@pytest.mark.parametrize("sql", [DUE_ROWS, NEXT_DEADLINE], ids=["due-rows", "next-deadline"])
async def test_work_queries_use_the_live_row_index(big_table: asyncpg.Connection, sql: str) -> None:
    nodes = await _plan(big_table, sql, ["paused-generator"])
    scans = _scans_of_history(nodes)
    assert scans and "Seq Scan" not in scans, scans
    assert any(n.get("Index Name") == "generation_history_live_deadline_idx" for n in nodes)


async def test_the_generic_plan_of_the_claim_uses_the_live_row_index(big_table: asyncpg.Connection) -> None:
    # genretry.claim runs with plan_cache_mode = force_generic_plan: its plan must not depend on the values
    await big_table.execute("SET plan_cache_mode = force_generic_plan")
    await big_table.execute(f"PREPARE due_rows(text[]) AS {DUE_ROWS.replace('$1', '$1')}")
    raw = await big_table.fetchval("EXPLAIN (FORMAT JSON) EXECUTE due_rows('{}')")
    nodes = _nodes(json.loads(raw)[0]["Plan"])
    assert "Seq Scan" not in _scans_of_history(nodes)
    assert any(n.get("Index Name") == "generation_history_live_deadline_idx" for n in nodes)


async def test_stuck_view_uses_the_live_row_index(big_table: asyncpg.Connection) -> None:
    nodes = await _plan(big_table, "SELECT * FROM genretry.stuck")
    scans = _scans_of_history(nodes)
    assert scans and "Seq Scan" not in scans, scans
    assert len(await big_table.fetch("SELECT * FROM genretry.stuck")) == 300


async def test_finding_due_rows_reads_few_buffers_among_many_finished_rows(big_table: asyncpg.Connection) -> None:
    raw = await big_table.fetchval(
        f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {DUE_ROWS}", ["paused-generator"])
    plan = json.loads(raw)[0]["Plan"]
    touched = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]
    table_pages = await big_table.fetchval("SELECT relpages FROM pg_class WHERE relname = 'generation_history'")
    assert plan["Actual Rows"] == 100
    assert 0 < touched < 200 < table_pages, (touched, table_pages)

"""make demo / processor demo: the whole story, on the embedded PostgreSQL and on a given database."""

from __future__ import annotations

import asyncpg

from tests.support import cli
from tests.support.factories import make_generation


def _check_story(out: str) -> None:
    assert "adopted 507db582: admin_note 'retry:2' -> retry_count 2" in out
    assert "demo: 507db582 failed: retries exhausted: 2 automatic retries made" in out
    assert "reset to pending and due now (was failed after 2 automatic retries)" in out
    table = out[out.index("demo: before and after"):]
    seed = next(line for line in table.splitlines() if line.startswith("507db582"))
    assert "generating r2" in seed and "completed r1 attempt 1" in seed
    hangs = next(line for line in table.splitlines() if "hangs once" in line)
    assert "completed r2 attempt 2" in hangs
    healthy = [line for line in table.splitlines() if "heartbeating" in line]
    assert len(healthy) == 2 and all("completed r0 attempt 0" in line for line in healthy)
    assert "auto_retry" in out and "everything it started is stopped" in out


async def test_demo_on_the_embedded_postgresql() -> None:
    env = cli.env_for("")
    env.pop("DATABASE_URL")
    result = await cli.run("demo", env=env, timeout_s=90)
    assert result.code == 0, result.out[-2000:] + result.err[-2000:]
    _check_story(result.out)


async def test_demo_on_a_given_empty_database(empty_db_url: str) -> None:
    result = await cli.run("demo", env=cli.env_for(empty_db_url), timeout_s=90)
    assert result.code == 0, result.out[-2000:] + result.err[-2000:]
    _check_story(result.out)
    conn = await asyncpg.connect(empty_db_url)
    try:  # the demo's 3-second policy does not stay behind in a database the operator gave it
        policy = await conn.fetchrow("SELECT stale_after, pending_stale_after, backoff_base FROM genretry.policy "
                                     "WHERE generator = '*'")
    finally:
        await conn.close()
    assert [v.total_seconds() for v in policy.values()] == [420, 120, 5]


async def test_demo_refuses_a_database_with_generations(db_url: str, conn: asyncpg.Connection) -> None:
    await make_generation(conn)
    result = await cli.run("demo", env=cli.env_for(db_url))
    assert result.code == 1
    assert "already has 1 generations" in result.err and "--force" in result.err

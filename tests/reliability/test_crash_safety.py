"""SIGKILL at random moments while 2,000 rows are due, ten times: nothing lost, nothing counted twice."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from tests.support import cli
from tests.support.finishing_stub import finishing_stub

pytestmark = pytest.mark.reliability
ROWS = 2000


async def test_kill_nine_ten_times(db_url: str, conn: asyncpg.Connection, tmp_path: Path) -> None:
    await conn.execute(
        """INSERT INTO generation_history (user_id, status, status_changed_at, deadline_at)
           SELECT gen_random_uuid(), 'generating', now() - interval '1 hour', now() - interval '1 second'
           FROM generate_series(1, $1)""", ROWS)
    rng = random.Random(7)
    # slow enough that the kills land mid-work: ~160 deliveries/s, each generation finishing a second later
    async with finishing_stub(db_url, finish_after_s=1.0, answer_after_s=0.1) as stub:
        # a short lease, so that rows leased by a killed daemon come back quickly
        env = cli.daemon_env_for(db_url, stub.url, PROCESSOR_LEASE="3s", PROCESSOR_RESPONSE_TIMEOUT="1s",
                          PROCESSOR_CONNECT_TIMEOUT="0.5s", PROCESSOR_MAX_IN_FLIGHT="16", PROCESSOR_BATCH_SIZE="20",
                          PROCESSOR_TICK="1s")
        for _ in range(10):
            proc = await cli.start("run", env=env, log=tmp_path / "daemon.log")
            await asyncio.sleep(rng.uniform(0.3, 1.2))
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        proc = await cli.start("run", env=env, log=tmp_path / "final.log")
        await cli.wait_for_line(tmp_path / "final.log", '"daemon_ready"')
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            live = await conn.fetchval(
                "SELECT count(*) FROM generation_history WHERE status IN ('pending', 'generating')")
            if live == 0:
                break
            await asyncio.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        await asyncio.sleep(0.3)

    # every row ended: completed, or failed with a reason
    statuses = {r[0]: r[1] for r in await conn.fetch("SELECT status, count(*) FROM generation_history GROUP BY 1")}
    assert sum(statuses.values()) == ROWS and set(statuses) <= {"completed", "failed"}
    assert await conn.fetchval("SELECT count(*) FROM generation_history WHERE status = 'failed' "
                               "AND coalesce(error_message, '') = ''") == 0
    # no (id, attempt) was delivered more often than it was claimed: one delivery per claim at most
    claims = Counter(f"{r['generation_id']}:{r['attempt']}" for r in await conn.fetch(
        "SELECT generation_id, attempt FROM genretry.events WHERE event = 'claimed'"))
    delivered = stub.keys()
    assert all(count <= claims[key] for key, count in delivered.items())
    # a kill never burned an attempt: redeliveries reused the attempt, so its Idempotency-Key
    redelivered = [key for key, count in delivered.items() if count > 1]
    assert await conn.fetchval("SELECT max(attempt) FROM generation_history") == 1
    assert all(key.endswith(":1") for key in delivered)
    # no attempt was counted twice
    counted = Counter((r["generation_id"], r["attempt"]) for r in await conn.fetch(
        "SELECT generation_id, attempt FROM genretry.events WHERE event IN ('delivered', 'delivery_timeout')"))
    assert max(counted.values()) == 1
    assert await conn.fetchval("SELECT max(retry_count) FROM generation_history") <= 1
    kills_mattered = len(redelivered) + (ROWS - len(delivered))
    assert redelivered, "no kill interrupted a delivery: the test did not test anything"
    print(f"\ncrash safety: {len(delivered)} keys delivered, {len(redelivered)} redelivered with the same key, "
          f"{stub.abandoned} abandoned by a killed caller, {stub.finished[False]} late finishes fenced, "
          f"{kills_mattered} rows the kills left behind")

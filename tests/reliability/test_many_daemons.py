"""Four daemons on 10,000 due rows: every attempt delivered exactly once, counted at the stub."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import asyncpg
import pytest

from tests.support import cli
from tests.support.finishing_stub import finishing_stub

pytestmark = pytest.mark.reliability
ROWS = 10_000


async def test_four_daemons_deliver_each_attempt_once(db_url: str, conn: asyncpg.Connection, tmp_path: Path) -> None:
    await conn.execute(
        """INSERT INTO generation_history (user_id, status, status_changed_at, deadline_at)
           SELECT gen_random_uuid(), 'generating', now() - interval '1 hour', now() + interval '1 hour'
           FROM generate_series(1, $1)""", ROWS)
    async with finishing_stub(db_url, finish_after_s=0.01) as stub:
        env = cli.daemon_env_for(db_url, stub.url, PROCESSOR_TICK="5s")
        procs = [await cli.start("run", env=env, log=tmp_path / f"daemon{i}.log") for i in range(4)]
        for i in range(4):
            await cli.wait_for_line(tmp_path / f"daemon{i}.log", '"daemon_ready"')
        await conn.execute("UPDATE generation_history SET deadline_at = now()")  # all due at once
        deadline = time.monotonic() + 180
        while await conn.fetchval("SELECT count(*) FROM generation_history WHERE status = 'completed'") < ROWS:
            assert time.monotonic() < deadline, "not all rows completed in time"
            await asyncio.sleep(0.5)
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        assert [await asyncio.wait_for(p.wait(), 30) for p in procs] == [0, 0, 0, 0]
    keys = stub.keys()
    assert len(stub.requests) == ROWS and len(keys) == ROWS and max(keys.values()) == 1
    workers = await conn.fetch("SELECT worker, count(*) AS n FROM genretry.events WHERE event = 'claimed' GROUP BY 1")
    assert len(workers) == 4 and sum(w["n"] for w in workers) == ROWS
    assert await conn.fetchval("SELECT count(*) FROM generation_history WHERE retry_count = 1 AND attempt = 1") == ROWS
    print("\nfour daemons: claims per worker", sorted(w["n"] for w in workers))

"""Write-path cost of the triggers: heartbeat UPDATE throughput, 8 clients, with and without the genretry
triggers, at default durability and with synchronous_commit = off.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from bench.common import Result, Row, fresh_db

CLIENTS = 8
ROWS_PER_CLIENT = 50


async def _tps(db_url: str, seconds: float, sync_commit: str) -> float:
    conns = [await asyncpg.connect(db_url, server_settings={"synchronous_commit": sync_commit})
             for _ in range(CLIENTS)]
    ids = [r["id"] for r in await conns[0].fetch("SELECT id FROM generation_history ORDER BY id")]
    stop = time.monotonic() + seconds
    counts = [0] * CLIENTS

    async def client(i: int) -> None:
        mine = ids[i * ROWS_PER_CLIENT:(i + 1) * ROWS_PER_CLIENT]
        k = 0
        while time.monotonic() < stop:
            await conns[i].execute("UPDATE generation_history SET heartbeat_at = now() WHERE id = $1",
                                   mine[k % len(mine)])
            k += 1
        counts[i] = k

    started = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    elapsed = time.monotonic() - started
    for c in conns:
        await c.close()
    return sum(counts) / elapsed


async def run(admin_url: str, quick: bool) -> Result:
    seconds = 5.0 if quick else 15.0
    result = Result("triggers")
    figures: dict[str, float] = {}
    async with fresh_db(admin_url) as db_url:
        conn = await asyncpg.connect(db_url)
        await conn.execute(
            "INSERT INTO generation_history (user_id, status) SELECT gen_random_uuid(), 'generating' "
            "FROM generate_series(1, $1)", CLIENTS * ROWS_PER_CLIENT)
        await conn.execute("VACUUM ANALYZE generation_history")
        for sync in ("on", "off"):
            # alternate so that drift on a shared machine hits both sides alike
            for label in ("bare", "triggers", "bare", "triggers"):
                enable = "DISABLE" if label == "bare" else "ENABLE"
                for trigger in ("genretry_track_update",):
                    await conn.execute(f"ALTER TABLE generation_history {enable} TRIGGER {trigger}")
                figures.setdefault(f"{label}/{sync}", 0.0)
                figures[f"{label}/{sync}"] += await _tps(db_url, seconds, sync) / 2
        await conn.close()
    for sync in ("on", "off"):
        bare, with_triggers = figures[f"bare/{sync}"], figures[f"triggers/{sync}"]
        overhead = 1 - with_triggers / bare
        result.rows.append(Row(f"heartbeat UPDATE/s, synchronous_commit={sync}", f"{with_triggers:,.0f}/s",
                               f"no triggers: {bare:,.0f}/s", ""))
        result.rows.append(Row(f"  trigger overhead, synchronous_commit={sync}", f"{overhead:.1%}", "", "<= 10 %",
                               overhead <= 0.10))
    result.data = {"tps": figures, "clients": CLIENTS, "seconds_each": seconds}
    return result

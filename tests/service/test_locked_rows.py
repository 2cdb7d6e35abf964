"""Issue 10, class 5: locks never stall the daemon. An admin's open transaction holds two rows whose
deliveries are in flight: every other outcome is recorded at once, claiming goes on, the stall shows in
/healthz, a gauge and a log line, and once the lock goes the two outcomes are recorded; nothing twice."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from tests.support.factories import make_generation
from tests.support.http import StartDaemon, free_port, settings_for, wait_until

pytestmark = pytest.mark.hostile


async def test_an_admin_lock_on_in_flight_rows_stalls_nothing_else(db_url: str, conn: asyncpg.Connection,
                                                                   start_daemon: StartDaemon) -> None:
    held = {await make_generation(conn, due=True) for _ in range(2)}
    others = [await make_generation(conn, due=True) for _ in range(120)]
    seen: Counter[str] = Counter()
    release = asyncio.Event()
    arrived = asyncio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        row_id = json.loads(await request.read())["retryHistoryId"]
        seen[row_id] += 1
        if uuid.UUID(row_id) in held:
            if sum(seen[str(h)] for h in held) == len(held):
                arrived.set()
            await release.wait()
        return web.json_response({"accepted": True}, status=202)

    from tests.support.http import serve_on_loopback

    runner, url = await serve_on_loopback(handle)
    port = free_port()
    admin = await asyncpg.connect(db_url)
    try:
        await start_daemon(settings_for(db_url, url, PROCESSOR_LEASE="20", PROCESSOR_RESPONSE_TIMEOUT="15",
                                        PROCESSOR_METRICS_ADDR=f"127.0.0.1:{port}"))
        await asyncio.wait_for(arrived.wait(), 20)
        lock = admin.transaction()
        await lock.start()
        await admin.fetch("SELECT id FROM generation_history WHERE id = ANY($1::uuid[]) FOR UPDATE", list(held))
        release.set()  # the two answers come back while their rows are locked

        async def others_recorded() -> bool:
            return bool(await conn.fetchval("SELECT count(*) FROM generation_history WHERE id = ANY($1::uuid[]) "
                                            "AND retry_count = 1", others) == len(others))

        await wait_until(others_recorded, 30)  # not blocked behind the locked two

        async def stalled() -> bool:
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as r:
                body = await r.json()
                return r.status == 503 and body["recorder_stalled"] is True

        await wait_until(stalled, 20)
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
            text = await r.text()
        assert "genretry_outcomes_waiting 2.0" in text
        await lock.commit()

        async def held_recorded() -> bool:
            return bool(await conn.fetchval("SELECT count(*) FROM generation_history WHERE id = ANY($1::uuid[]) "
                                            "AND retry_count = 1", list(held)) == len(held))

        await wait_until(held_recorded, 20)

        async def healthy_again() -> bool:
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as r:
                return r.status == 200

        await wait_until(healthy_again, 20)
        assert set(seen.values()) == {1}, "a row was delivered twice"
        assert len(seen) == len(held) + len(others)
    finally:
        await admin.close()
        await runner.cleanup()

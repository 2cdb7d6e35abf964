"""Mass recovery: N rows due at once, delivered to a 202 stub; deliveries/s beside three bare clients
(httpx default transport, httpx with the httpx-aiohttp transport, raw aiohttp) against the same stub,
and with 1, 2 and 4 daemons on the same database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable

import aiohttp
import asyncpg
import httpx
from httpx_aiohttp import AiohttpTransport

from bench.common import Result, Row, daemon_process, fresh_db, stub_arrivals, stub_process, stub_reset

IN_FLIGHT = 64
BODY = json.dumps({"prompt": "a bakery site with a menu and a map", "retryHistoryId": "x", "retryAttempt": 1})


async def _bare(name: str, url: str, n: int) -> float:
    """Requests/s of a bare client posting n bodies with IN_FLIGHT in flight."""
    post: Callable[[], Awaitable[None]]
    async with contextlib.AsyncExitStack() as stack:
        if name == "raw aiohttp":
            session = await stack.enter_async_context(aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=IN_FLIGHT)))

            async def post() -> None:
                async with session.post(f"{url}/bare", data=BODY, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
        else:
            limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
            transport = AiohttpTransport(limits=limits) if name == "httpx + httpx-aiohttp" else None
            client = await stack.enter_async_context(httpx.AsyncClient(limits=limits, transport=transport,
                                                                       timeout=30))

            async def post() -> None:
                r = await client.post(f"{url}/bare", content=BODY, headers={"Content-Type": "application/json"})
                await r.aread()

        queue = iter(range(n))

        async def worker() -> None:
            for _ in queue:
                await post()

        await asyncio.gather(*(worker() for _ in range(8)))  # warm-up connections
        queue = iter(range(n))
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        return n / (time.perf_counter() - started)


async def _recover(db_url: str, stub_url: str, n: int, daemons: int) -> float:
    """Deliveries/s from the moment n rows become due to the last request at the stub."""
    conn = await asyncpg.connect(db_url)
    await conn.execute("TRUNCATE generation_history")
    # n generating rows, stale but not yet due (their deadline is in an hour)
    await conn.execute(
        """INSERT INTO generation_history (user_id, status, request, status_changed_at, deadline_at)
           SELECT gen_random_uuid(), 'generating', $2::jsonb, now() - interval '1 hour', now() + interval '1 hour'
           FROM generate_series(1, $1)""", n, BODY)
    await conn.execute("VACUUM ANALYZE generation_history")
    await stub_reset(stub_url)
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(daemons):
            await stack.enter_async_context(daemon_process(
                db_url, stub_url, PROCESSOR_MAX_IN_FLIGHT=str(IN_FLIGHT), PROCESSOR_GENERATOR_IN_FLIGHT=str(IN_FLIGHT),
                PROCESSOR_BATCH_SIZE="100", PROCESSOR_TICK="60"))
        await asyncio.sleep(0.5)
        due_at = await conn.fetchval(
            "UPDATE generation_history SET deadline_at = clock_timestamp() RETURNING extract(epoch FROM now())::float8")
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            count = await conn.fetchval("SELECT count(*) FROM generation_history WHERE retry_count >= 1")
            if count >= n:
                break
        arrivals = await stub_arrivals(stub_url)
    await conn.close()
    last = max(t for _k, _r, t in arrivals)
    return len({k for k, _r, _t in arrivals}) / (last - due_at)


async def run(admin_url: str, quick: bool) -> Result:
    sizes = [10_000] if quick else [10_000, 100_000]
    result = Result("recovery")
    async with fresh_db(admin_url) as db_url, stub_process() as stub_url:
        bare = {name: await _bare(name, stub_url, 10_000)
                for name in ("httpx default transport", "httpx + httpx-aiohttp", "raw aiohttp")}
        floor = ", ".join(f"{k}: {v:,.0f}/s" for k, v in bare.items())
        one = {n: await _recover(db_url, stub_url, n, 1) for n in sizes}
        scaling = {d: await _recover(db_url, stub_url, 10_000, d) for d in (2, 4)}
    raw = bare["raw aiohttp"]
    for n, rate in one.items():
        result.rows.append(Row(f"recovery of {n:,} due rows, 1 daemon", f"{rate:,.0f}/s", floor,
                               ">= 2,000/s", rate >= 2000))
        result.rows.append(Row(f"  share of raw aiohttp ({n:,})", f"{rate / raw:.0%}", f"raw aiohttp {raw:,.0f}/s",
                               ">= 30 %", rate / raw >= 0.30))
    for d, rate in scaling.items():
        result.rows.append(Row(f"recovery of 10,000 due rows, {d} daemons", f"{rate:,.0f}/s",
                               f"1 daemon: {one[10_000]:,.0f}/s", "scales until the stub saturates"))
    result.data = {"bare_clients_per_s": bare, "one_daemon_per_s": one, "daemons_per_s": scaling,
                   "in_flight": IN_FLIGHT}
    return result

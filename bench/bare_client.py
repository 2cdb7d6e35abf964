"""A bare HTTP client posting n bodies to the stub with IN_FLIGHT in flight: the recovery benchmark's baselines.

python -m bench.bare_client NAME URL N  ->  prints {"per_s": ..., "cpu_s": ..., "n": ...} (CPU of the timed part)
Run in a process of its own, like the daemon, so that both pay for their own interpreter and their CPU
seconds compare.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

IN_FLIGHT = 64
BODY = json.dumps({"prompt": "a bakery site with a menu and a map", "retryHistoryId": "x", "retryAttempt": 1})
NAMES = ("httpx default transport", "httpx + httpx-aiohttp", "raw aiohttp")


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def bare(name: str, url: str, n: int) -> dict[str, float]:
    """Requests/s and CPU seconds of a bare client posting n bodies with IN_FLIGHT in flight."""
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

        queue = iter(range(min(n, 500)))

        async def worker() -> None:
            for _ in queue:
                await post()

        await asyncio.gather(*(worker() for _ in range(8)))  # warm-up connections
        queue = iter(range(n))
        cpu0, started = cpu_s(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        elapsed, cpu = time.perf_counter() - started, cpu_s() - cpu0
        return {"per_s": n / elapsed, "cpu_s": cpu, "n": n}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(bare(sys.argv[1], sys.argv[2], int(sys.argv[3])))), flush=True)

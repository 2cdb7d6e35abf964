"""A generator stub that accepts (202), remembers every request, and finishes each generation shortly
after through genretry.finish (fenced on the attempt), like a real generator would."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from processor import db
from tests.support.http import serve_on_loopback


@dataclass
class FinishingStub:
    url: str = ""
    requests: list[tuple[str, str, int, float]] = field(default_factory=list)  # key, id, attempt, time
    finished: Counter[bool] = field(default_factory=Counter)
    accepted: set[str] = field(default_factory=set)
    abandoned: int = 0  # requests whose caller went away before the answer: no work was started

    def keys(self) -> Counter[str]:
        return Counter(key for key, _id, _attempt, _t in self.requests)


@contextlib.asynccontextmanager
async def finishing_stub(db_url: str, finish_after_s: float = 0.05,
                         answer_after_s: float = 0.0) -> AsyncIterator[FinishingStub]:
    stub = FinishingStub()
    pool = await db.create_pool(db_url, min_size=1, max_size=4)  # discards connections a restart broke
    tasks: set[asyncio.Task[None]] = set()

    async def finish(gen_id: str, attempt: int) -> None:
        await asyncio.sleep(finish_after_s)
        for _ in range(100):  # a real generator retries its report while the database is away
            try:
                stub.finished[bool(await pool.fetchval("SELECT genretry.finish($1::uuid, $2, 'completed')",
                                                       gen_id, attempt))] += 1
                return
            except Exception:  # any failure while the database restarts: report again, as a generator would
                await asyncio.sleep(0.2)

    async def handle(request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        gen_id, attempt = body["retryHistoryId"], body["retryAttempt"]
        key = request.headers.get("Idempotency-Key", "")
        stub.requests.append((key, gen_id, attempt, time.time()))
        await asyncio.sleep(answer_after_s)
        if request.transport is None or request.transport.is_closing():
            # the caller died while we held the request: like an edge function torn down with it
            stub.abandoned += 1
            return web.json_response({}, status=499)
        if key in stub.accepted:  # like a real generator: this delivery was already accepted, start nothing
            return web.json_response({"error": "duplicate"}, status=409)
        stub.accepted.add(key)
        task = asyncio.create_task(finish(gen_id, attempt))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return web.json_response({"accepted": True}, status=202)

    runner, stub.url = await serve_on_loopback(handle)
    try:
        yield stub
    finally:
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()
        await pool.close()

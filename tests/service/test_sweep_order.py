"""The order of a woken daemon's steps on the NOTIFY path (issue 13): the look for the next deadline after a
sweep that sent is not sent at the same moment as the request. On two cores its query competed with the
request (0.1 ms of the path's p50 and 0.3 ms of its p90, docs/BENCHMARKS.md); it now waits for the first
answer, at most LOOK_AFTER_S."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
from aiohttp import web

from processor.daemon import LOOK_AFTER_S
from processor.scheduler import SweepResult
from tests.support.factories import make_generation
from tests.support.http import Behaviour, StartDaemon, Stub, settings_for, wait_until


async def test_the_look_after_a_sweep_waits_for_its_first_answer(db_url: str, conn: asyncpg.Connection,
                                                                 stub: Stub, start_daemon: StartDaemon) -> None:
    running = await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))
    scheduler = running.daemon.scheduler
    assert scheduler is not None
    seen: list[tuple[str, float, int]] = []
    run_once, look = scheduler.run_once, scheduler.seconds_to_next_deadline

    async def traced_run_once(**kwargs: Any) -> SweepResult:
        result = await run_once(**kwargs)
        seen.append(("swept", time.monotonic(), result.claimed))
        return result

    async def traced_look() -> float | None:
        seen.append(("look", time.monotonic(), 0))
        return await look()

    scheduler.run_once = traced_run_once  # type: ignore[method-assign]
    scheduler.seconds_to_next_deadline = traced_look  # type: ignore[method-assign]
    answered: list[float] = []
    stub.behaviours["generate-website"] = _noting(answered)
    await make_generation(conn, due=True)  # its NOTIFY wakes the daemon
    await stub.wait_for(1)

    async def looked() -> bool:
        return any(kind == "look" for kind, _, _ in seen)

    await wait_until(looked)
    swept_at = next(at for kind, at, claimed in seen if kind == "swept" and claimed)
    look_at = next(at for kind, at, _ in seen if kind == "look" and at >= swept_at)
    assert look_at >= answered[0] or look_at - swept_at >= LOOK_AFTER_S, (look_at - swept_at, seen)


def _noting(answered: list[float]) -> Behaviour:
    async def behaviour(_request: web.Request) -> web.StreamResponse:
        answered.append(time.monotonic())
        return web.json_response({}, status=202)
    return behaviour

"""The daemon's shutdown, in order: drain the deliveries (within the grace period), stop the parts, close
the listener, the HTTP client and the pool. A step that fails (a database gone mid-restart, a broken pipe)
never stops the rest."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import asyncpg

from processor import systemd

if TYPE_CHECKING:
    from processor.daemon import Daemon


async def shut_down(daemon: Daemon, tasks: list[asyncio.Task[Any]], client: Any, pool: asyncpg.Pool) -> None:
    systemd.notify("STOPPING=1\nSTATUS=stopping: finishing in-flight deliveries")
    daemon.stop.set()
    log = daemon.log

    async def quietly(step: str, awaitable: Awaitable[Any]) -> bool:
        """Await one step; True when it succeeded."""
        try:
            await awaitable
        except Exception as exc:  # logged: at shutdown there is nothing left to retry
            log.warning("shutdown_step_failed", step=step, error=f"{type(exc).__name__}: {str(exc)[:200]}")
            return False
        return True

    scheduler = daemon.scheduler
    if scheduler is not None:
        finished: list[bool] = []

        async def drain() -> None:
            finished.append(await scheduler.drain(daemon.settings.grace_s))

        await quietly("drain", drain())
        if finished != [True]:
            log.warning("grace_period_over", hint="unfinished deliveries were released")
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if daemon.listener is not None:
        await quietly("listener_close", daemon.listener.close())
    await quietly("http_close", client.aclose())
    if not await quietly("pool_close", asyncio.wait_for(pool.close(), 5.0)):
        pool.terminate()
    counts = scheduler.outcomes if scheduler else {}
    log.info("daemon_stopped", outcomes={str(k): v for k, v in counts.items()})

"""Retention of genretry.events: the daemon prunes events older than PROCESSOR_EVENTS_RETENTION every hour.

Each call of genretry.prune_events deletes one bounded batch in its own short transaction, so pruning a
large backlog never holds a long lock; the first run comes ~10 minutes after start (with jitter), so a
daemon restarted in a loop, or one that is idle, sends nothing for it. Several daemons may prune at once:
SKIP LOCKED in the function keeps them off each other's rows.
"""

from __future__ import annotations

import asyncio
import datetime
import random
import time

import asyncpg

from processor.logs import get_logger
from processor.metrics import Metrics

PRUNE = "SELECT genretry.prune_events($1, $2)"
BATCH = 5000
FIRST_RUN_S = 600.0
EVERY_S = 3600.0


async def prune(pool: asyncpg.Pool, older_than_s: float, *, batch: int = BATCH,
                metrics: Metrics | None = None, stop: asyncio.Event | None = None) -> int:
    """Delete events older than older_than_s, one batch per transaction, until none is left; return the count."""
    older_than = datetime.timedelta(seconds=older_than_s)
    total = 0
    while stop is None or not stop.is_set():
        deleted: int = await pool.fetchval(PRUNE, older_than, batch)
        total += deleted
        if metrics is not None:
            metrics.events_pruned.inc(deleted)
        if deleted < batch:
            break
        await asyncio.sleep(0)  # let deliveries and the loop run between batches
    return total


async def run(pool: asyncpg.Pool, older_than_s: float, metrics: Metrics, stop: asyncio.Event, *,
              first_run_s: float = FIRST_RUN_S, every_s: float = EVERY_S) -> None:
    """Prune on a schedule until stop is set; never raises (a failed run is logged and counted)."""
    log = get_logger("retention")
    if older_than_s <= 0:
        await stop.wait()
        return
    delay = first_run_s * random.uniform(0.9, 1.1)
    while not await _stopped_within(stop, delay):
        started = time.monotonic()
        try:
            deleted = await prune(pool, older_than_s, metrics=metrics, stop=stop)
        except Exception as exc:  # maintenance must never stop the daemon: any failure waits for the next run
            metrics.retention_errors.inc()
            log.warning("retention_failed", error=str(exc)[:200])
        else:
            metrics.retention_last_success.set(time.time())
            if deleted:
                log.info("events_pruned", deleted=deleted, duration_ms=round((time.monotonic() - started) * 1000))
        delay = every_s * random.uniform(0.9, 1.1)


def start(pool: asyncpg.Pool, older_than_s: float, metrics: Metrics, stop: asyncio.Event) -> asyncio.Task[None]:
    """The daemon's retention task (runs until stop)."""
    return asyncio.create_task(run(pool, older_than_s, metrics, stop), name="retention")


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True

"""--metrics-addr: Prometheus text exposition at /metrics and /healthz (200 healthy, 503 not).

The gauges that need the database (due rows, oldest overdue age, paused generators) are read by one
query when /metrics is scraped, so an idle daemon that nobody scrapes sends nothing for them.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from processor import db
from processor.logs import get_logger
from processor.metrics import Metrics

GAUGES = "SELECT * FROM genretry.metrics_snapshot()"


async def serve(daemon: Any, metrics: Metrics, pool: asyncpg.Pool, host: str, port: int) -> web.AppRunner:
    """Start the metrics and health endpoints in this event loop."""
    log = get_logger("health")
    metrics.count_from("genretry_listener_reconnects", "times the LISTEN connection was re-established",
                       lambda: daemon.listener.reconnects if daemon.listener is not None else 0)
    metrics.count_from("genretry_bad_notifications", "notification payloads that were not valid hints",
                       lambda: daemon.listener.bad_payloads if daemon.listener is not None else 0)

    def recorder() -> Any:
        return None if daemon.scheduler is None else daemon.scheduler.recorder

    metrics.outcomes_waiting.set_function(lambda: recorder().waiting() if recorder() is not None else 0)
    metrics.oldest_waiting_outcome.set_function(lambda: recorder().oldest_wait_s() if recorder() is not None else 0)

    async def metrics_page(_request: web.Request) -> web.Response:
        try:
            row = await pool.fetchrow(GAUGES)
            if row is not None:
                metrics.due_rows.set(row["due"])
                metrics.oldest_overdue.set(row["oldest_overdue_s"])
                metrics.paused_generators.set(row["paused"])
        except db.TRANSIENT_ERRORS as exc:
            log.warning("metrics_query_failed", error=str(exc)[:200])
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        stalled = recorder() is not None and bool(recorder().stalled)
        healthy = bool(daemon.healthy) and not daemon.stop.is_set() and not stalled
        return web.json_response({"healthy": healthy, "ready": daemon.ready.is_set(),
                                  "listener": None if daemon.listener is None else daemon.listener.healthy,
                                  "recorder_stalled": stalled},
                                 status=200 if healthy else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("metrics_listening", url=f"http://{host}:{port}/metrics")
    return runner

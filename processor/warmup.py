"""Before READY: pay the one-time costs of a first delivery, so the first rescue after a start is as fast
as the hundredth (issue 13). Never fails the start: a step that fails is logged and skipped.

- one credential is built and thrown away (key loading, signing code paths, lazy imports);
- the daemon's hot statements run once (warm_statements), in a transaction that is rolled back: the
  next-deadline look on a pooled connection here, the claim on the LISTEN connection that claims are lent
  (processor.listener). asyncpg keeps each prepared statement for the connection's later calls, and the
  server compiles and plans the functions they call. (Before 5 Dec 2026 they were only prepared: asyncpg
  does not cache what prepare() returns, so the first claim on a connection parsed and planned it again.);
- each configured generator's route is resolved and parsed (kept for the deliveries), and its delivery
  metrics are created;
- one keep-alive connection is opened to each generator origin (TCP, and TLS for https), and no request
  is sent on it: nothing but deliveries ever goes to a generator, and nothing outside its route (issue 10
  class 6). The first delivery then pays no handshake (about 0.9 ms on loopback; a TLS handshake across
  the internet is tens of milliseconds). An origin that cannot be reached costs the start nothing but
  this step's time-out; the connection closes after the keep-alive expiry if no delivery comes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from processor.contracts import OutcomeKind
from processor.credentials import Authority, Delivery
from processor.http_client import Client
from processor.logs import get_logger
from processor.metrics import Metrics

log = get_logger("warmup")

WARM_LOCK_TIMEOUT = "200ms"
# A statement and its arguments; a bare string takes none.
Statement = str | tuple[str, Sequence[Any]]


async def warm_statements(conn: Any, statements: Sequence[Statement]) -> None:
    """Run each statement once on conn, in a transaction that is rolled back, so that it changes nothing.

    A claim run this way takes its rows' locks for the moment it lasts; another daemon's claim skips them.
    It waits at most WARM_LOCK_TIMEOUT for a lock (an admin's, a migration's): a warm-up is not worth more.
    """
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute(f"SET LOCAL lock_timeout = '{WARM_LOCK_TIMEOUT}'")
        for statement in statements:
            sql, args = (statement, ()) if isinstance(statement, str) else statement
            await conn.fetch(sql, *args)
    finally:
        await transaction.rollback()


async def warm_up(*, authority: Authority, pool: Any, generators: list[str], statements: Sequence[Statement],
                  timeout_s: float = 2.0, route: Callable[[str], httpx.URL | str] | None = None,
                  client: Client | None = None, metrics: Metrics | None = None) -> dict[str, float]:
    """Run the warm-up steps concurrently within timeout_s; returns each step's milliseconds (or -1)."""
    timings: dict[str, float] = {}

    async def step(name: str, work: Any) -> None:
        started = time.perf_counter()
        try:
            await work
        except Exception as exc:  # a warm-up that fails costs nothing but the first delivery's speed
            timings[name] = -1.0
            log.info("warmup_step_skipped", step=name, error=f"{type(exc).__name__}: {str(exc)[:200]}")
            return
        timings[name] = round((time.perf_counter() - started) * 1000, 2)

    async def credential() -> None:
        zero = str(uuid.UUID(int=0))
        authority.headers(Delivery(generators[0] if generators else "warm-up", zero, zero, 1))

    async def prepare() -> None:
        async with pool.acquire() as conn:
            await warm_statements(conn, statements)

    origins: dict[tuple[str, str, int | None], httpx.URL] = {}

    async def requests() -> None:
        for name in generators:
            url = route(name) if route is not None else name
            if isinstance(url, str):
                continue  # refused (not a routing key, no route): it is never sent
            origins.setdefault((url.scheme, url.host, url.port), url)
            if metrics is not None:
                metrics.deliveries.labels(name, OutcomeKind.ACCEPTED)
                metrics.delivery_latency.labels(name)
        if client is not None:  # one connection per origin, opened side by side; one that fails costs nothing
            opened = await asyncio.gather(*(client.preconnect(u, timeout_s) for u in origins.values()),
                                          return_exceptions=True)
            for origin, result in zip(origins, opened, strict=True):
                if isinstance(result, BaseException):
                    log.info("warmup_connect_failed", scheme=origin[0], host=origin[1], port=origin[2],
                             error=type(result).__name__)

    steps = [step("credential", credential()), step("statements", prepare()), step("requests", requests())]
    try:
        await asyncio.wait_for(asyncio.gather(*steps), timeout_s)
    except TimeoutError:
        log.info("warmup_incomplete", timeout_s=timeout_s)
    return timings

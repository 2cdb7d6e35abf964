"""The warm-up before READY: never fails the start, sends nothing to a generator."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
from prometheus_client import generate_latest

from processor import db, warmup
from processor.credentials import Authority
from tests.support.http import Stub, settings_for
from tests.support.pg import as_daemon


async def test_warm_up_prepares_and_signs_without_contacting_generators(db_url: str, stub: Stub) -> None:
    settings = settings_for(db_url, stub.url)
    pool = await db.create_pool(as_daemon(db_url), min_size=1, max_size=1)
    try:
        timings = await warmup.warm_up(authority=Authority(settings), pool=pool, generators=["generate-website"],
                                       statements=["SELECT 1", "SELECT genretry.next_wakeup(clock_timestamp())"])
        assert timings["credential"] >= 0 and timings["statements"] >= 0
        assert stub.seen == []
    finally:
        await pool.close()


async def test_a_failing_step_is_skipped_not_fatal(db_url: str, stub: Stub) -> None:
    settings = settings_for(db_url, stub.url)
    pool = await db.create_pool(as_daemon(db_url), min_size=1, max_size=1)
    try:
        timings = await warmup.warm_up(authority=Authority(settings), pool=pool, generators=[],
                                       statements=["SELECT * FROM no_such_table"])
        assert timings["statements"] == -1 and timings["credential"] >= 0
        assert await pool.fetchval("SELECT 2") == 2  # the pool is fine afterwards
    finally:
        await pool.close()


async def test_closed_pool_does_not_stop_warm_up(db_url: str, stub: Stub) -> None:
    settings = settings_for(db_url, stub.url)
    pool = await db.create_pool(as_daemon(db_url), min_size=1, max_size=1)
    await pool.close()
    timings = await warmup.warm_up(authority=Authority(settings), pool=pool, generators=["generate-website"],
                                   statements=["SELECT 1"])
    assert timings["statements"] == -1
    assert isinstance(pool, asyncpg.Pool)


async def test_warm_up_parses_routes_and_builds_a_request_without_sending_it(db_url: str, stub: Stub) -> None:
    from processor import delivery
    from processor.metrics import Metrics
    from processor.scheduler import Scheduler

    settings = settings_for(db_url, stub.url, PROCESSOR_GENERATORS="generate-website,generate-php-website")
    pool = await db.create_pool(as_daemon(db_url), min_size=1, max_size=1)
    client = delivery.make_client(max_connections=1, connect_timeout_s=1, response_timeout_s=1)
    metrics = Metrics(known=settings.generators)
    scheduler = Scheduler(pool, client, settings, metrics)
    try:
        timings = await warmup.warm_up(authority=scheduler.authority, pool=pool,
                                       generators=["generate-website", "generate-php-website", "../x"],
                                       statements=[], route=scheduler.urls.get, client=client, metrics=metrics)
        assert timings["requests"] >= 0
        assert set(scheduler.urls._parsed) == {"generate-website", "generate-php-website"}  # the refused one is not
        assert 'genretry_deliveries_total{generator="generate-php-website",outcome="accepted"} 0.0' in \
            generate_latest(metrics.registry).decode()
        assert stub.seen == []
    finally:
        await client.aclose()
        await pool.close()


async def test_warm_up_opens_one_connection_per_origin_and_the_first_delivery_uses_it(db_url: str) -> None:
    """Issue 13: connections to each configured generator before READY. One per origin (two generators under one
    FUNCTIONS_URL share it), nothing sent on it; the first delivery reuses it instead of connecting. A peer that
    counts its TCP connections and the bytes it got, answering 202 to each request."""
    from processor import delivery
    from processor.scheduler import Scheduler

    connections, received = 0, bytearray()

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        with contextlib.suppress(ConnectionError):
            while head := await reader.readuntil(b"\r\n\r\n"):
                received.extend(head)
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    settings = settings_for(db_url, url, PROCESSOR_GENERATORS="generate-website,generate-php-website")
    pool = await db.create_pool(as_daemon(db_url), min_size=1, max_size=1)
    client = delivery.make_client(max_connections=4, connect_timeout_s=1, response_timeout_s=2)
    scheduler = Scheduler(pool, client, settings)
    try:
        await warmup.warm_up(authority=scheduler.authority, pool=pool,
                             generators=["generate-website", "generate-php-website"], statements=[],
                             route=scheduler.urls.get, client=client)
        await asyncio.sleep(0.1)
        assert connections == 1 and received == b""  # opened, nothing sent
        outcome = await delivery.deliver(client, f"{url}/generate-website", {"Idempotency-Key": "k"}, b"{}",
                                         connect_timeout_s=1, response_timeout_s=2)
        assert outcome.kind == delivery.ACCEPTED
        assert connections == 1 and received.startswith(b"POST /generate-website ")  # the warm connection
    finally:
        await client.aclose()
        await pool.close()
        server.close()


async def test_an_unreachable_origin_costs_the_warm_up_nothing(db_url: str) -> None:
    from processor import delivery
    from processor.scheduler import Scheduler

    settings = settings_for(db_url, "http://127.0.0.1:9")  # nothing listens on the discard port
    pool = await db.create_pool(as_daemon(db_url), min_size=1, max_size=1)
    client = delivery.make_client(max_connections=1, connect_timeout_s=1, response_timeout_s=1)
    scheduler = Scheduler(pool, client, settings)
    try:
        timings = await warmup.warm_up(authority=scheduler.authority, pool=pool, generators=["generate-website"],
                                       statements=[], route=scheduler.urls.get, client=client)
        assert timings["requests"] >= 0 and timings["credential"] >= 0  # refused: logged, not a failed step
    finally:
        await client.aclose()
        await pool.close()

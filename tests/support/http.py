"""Service fixtures: a scriptable generator stub on loopback and daemons running in this event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from processor import db, delivery
from processor.config import Settings
from processor.daemon import Daemon
from processor.scheduler import Scheduler
from tests.support.keys import processor_env
from tests.support.pg import as_daemon

Behaviour = Callable[[web.Request], Awaitable[web.StreamResponse]]


def free_port() -> int:
    """A loopback port nothing listens on (right now): a refused connection, or a port to serve on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Seen:
    generator: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


@dataclass
class Stub:
    """A generator whose answers a test scripts: one behaviour per generator, default 202."""

    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def keys(self) -> Counter[str]:
        return Counter(s.headers.get("idempotency-key", "") for s in self.seen)

    async def wait_for(self, count: int, within_s: float = 10.0) -> None:
        deadline = time.monotonic() + within_s
        while len(self.seen) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.seen)} requests arrived, expected {count}")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), 0.05)


async def accept(_request: web.Request) -> web.StreamResponse:
    return web.json_response({"accepted": True}, status=202)


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Behaviour:
    async def behaviour(_request: web.Request) -> web.StreamResponse:
        return web.json_response(body if body is not None else {"error": "e", "message": f"scripted {status}"},
                                 status=status, headers=headers)
    return behaviour


def answer_after(seconds: float, status: int = 202) -> Behaviour:
    """A generator that takes `seconds` to answer, then answers `status` (202: accepted)."""
    async def behaviour(_request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.json_response({}, status=status)
    return behaviour


async def serve_on_loopback(handle: Behaviour) -> tuple[web.AppRunner, str]:
    """Serve POST /{generator} with `handle` on a free loopback port; returns the runner and the base URL."""
    app = web.Application()
    app.router.add_post("/{generator}", handle)
    return await serve_app_on_loopback(app)


async def serve_app_on_loopback(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve an aiohttp app on a free loopback port; returns the runner and the base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(db_url, min_size=1, max_size=8)
    assert p is not None
    yield p
    await p.close()


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    s = Stub()

    async def handle(request: web.Request) -> web.StreamResponse:
        generator = request.match_info["generator"]
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = {}
        s.seen.append(Seen(generator, {k.lower(): v for k, v in request.headers.items()}, body, time.time()))
        s.arrived.set()
        return await s.behaviours.get(generator, accept)(request)

    runner, s.url = await serve_on_loopback(handle)
    yield s
    await runner.cleanup()


def settings_for(db_url: str, functions_url: str, **extra: str) -> Settings:
    """A daemon's settings; it connects as a role holding only genretry_processor."""
    env = {
        "DATABASE_URL": as_daemon(db_url),
        "FUNCTIONS_URL": functions_url,
        **processor_env(),
        "PROCESSOR_TICK": "30",
        "PROCESSOR_RESPONSE_TIMEOUT": "2",
        "PROCESSOR_CONNECT_TIMEOUT": "1",
        "PROCESSOR_GRACE": "3",
        **extra,
    }
    return Settings.from_env(env, need=("database", "dispatch"))


@contextlib.asynccontextmanager
async def scheduler_on(db_url: str, stub_url: str, *, claim_ahead: int, max_connections: int,
                       drain_s: float = 10, **env: str) -> AsyncIterator[Scheduler]:
    """A Scheduler of its own (the daemon's role, its own pool and client) for service tests; drained after."""
    pool = await db.create_pool(as_daemon(db_url), min_size=1, max_size=4)
    client = delivery.make_client(max_connections=max_connections, connect_timeout_s=1, response_timeout_s=5)
    scheduler = Scheduler(pool, client, settings_for(db_url, stub_url, **env), claim_ahead=claim_ahead)
    try:
        yield scheduler
    finally:
        await scheduler.drain(drain_s)
        await client.aclose()
        await pool.close()


@dataclass
class Running:
    daemon: Daemon
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.daemon.request_stop()
        await asyncio.wait_for(self.task, 15)


StartDaemon = Callable[..., Awaitable["Running"]]


@pytest.fixture
async def start_daemon() -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    running: list[Running] = []

    async def start(settings: Settings, *, listen: bool = True) -> Running:
        daemon = Daemon(settings, listen=listen)
        task = asyncio.create_task(daemon.run(signals=False))
        ready = asyncio.ensure_future(daemon.ready.wait())
        done, _ = await asyncio.wait([ready, task], timeout=15, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            ready.cancel()
            await task  # raises what stopped it
        assert daemon.ready.is_set(), "daemon did not become ready"
        r = Running(daemon, task)
        running.append(r)
        return r

    yield start
    for r in running:
        if not r.task.done():
            await r.stop()


async def first_outcome(db_url: str, conn: asyncpg.Connection, stub: Stub, start_daemon: StartDaemon,
                        behaviour: Behaviour, within_s: float = 15) -> tuple[Any, list[str]]:
    """A due row delivered to a generator answering with `behaviour`: its id, and the events recorded after
    the claim once there is one (the outcome)."""
    stub.behaviours["generate-website"] = behaviour
    from tests.support.factories import make_generation

    row_id = await make_generation(conn, due=True)
    await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))
    await stub.wait_for(1, within_s=15)
    query = "SELECT event FROM genretry.events WHERE generation_id = $1 AND event <> 'claimed' ORDER BY id"

    async def recorded() -> bool:
        return bool(await conn.fetch(query, row_id))

    await wait_until(recorded, within_s=within_s)
    return row_id, [r["event"] for r in await conn.fetch(query, row_id)]


async def wait_until(check: Callable[[], Awaitable[bool]], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def status_of(conn: asyncpg.Connection, row_id: Any) -> str:
    value: str = await conn.fetchval("SELECT status FROM generation_history WHERE id = $1", row_id)
    return value

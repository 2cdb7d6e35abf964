"""NOTIFY on channel genretry: status changes, earlier deadlines and admin requests; never heartbeats."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from tests.support.factories import make_generation


class Inbox:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def __call__(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.queue.put_nowait(json.loads(payload))

    async def next(self, within_s: float = 2.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.queue.get(), within_s)

    async def drain(self, quiet: float = 0.2) -> None:
        while not await self.none_within(quiet):
            pass

    async def none_within(self, seconds: float = 0.3) -> bool:
        try:
            await asyncio.wait_for(self.queue.get(), seconds)
        except TimeoutError:
            return True
        return False


@pytest.fixture
async def inbox(db_url: str) -> AsyncIterator[Inbox]:
    listener = await asyncpg.connect(db_url)
    box = Inbox()
    await listener.add_listener("genretry", box)  # type: ignore[arg-type]  # a callable object, as asyncpg allows
    yield box
    await listener.close()


async def test_insert_and_status_change_notify(conn: asyncpg.Connection, inbox: Inbox) -> None:
    row_id = await make_generation(conn, status="pending")
    msg = await inbox.next()
    assert msg["id"] == str(row_id) and msg["event"] == "status_changed" and msg["status"] == "pending"
    assert msg["deadline_at"] is not None
    await conn.execute("UPDATE generation_history SET status = 'generating' WHERE id = $1", row_id)
    msg = await inbox.next()
    assert (msg["event"], msg["status"], msg["old_status"]) == ("status_changed", "generating", "pending")


async def test_heartbeats_never_notify(conn: asyncpg.Connection, inbox: Inbox) -> None:
    row_id = await make_generation(conn, age=timedelta(minutes=5))
    await inbox.next()
    await conn.execute("UPDATE generation_history SET heartbeat_at = now() WHERE id = $1", row_id)
    await conn.fetchval("SELECT genretry.heartbeat($1, 0)", row_id)
    assert await inbox.none_within()


async def test_an_earlier_deadline_notifies(conn: asyncpg.Connection, inbox: Inbox) -> None:
    row_id = await make_generation(conn)
    await inbox.next()
    await conn.execute(
        "UPDATE generation_history SET deadline_at = now() + interval '10 seconds' WHERE id = $1", row_id)
    assert (await inbox.next())["event"] == "deadline_moved"


async def test_admin_requests_notify_retry_requested(conn: asyncpg.Connection, inbox: Inbox) -> None:
    row_id = await make_generation(conn, due=True)
    await inbox.drain()
    await conn.execute("SELECT genretry.retry_now($1)", row_id)
    assert (await inbox.next())["event"] == "retry_requested"
    await conn.execute("UPDATE generation_history SET status = 'failed' WHERE id = $1", row_id)
    await inbox.next()
    await conn.execute("SELECT genretry.reset($1)", row_id)
    msg = await inbox.next()
    assert (msg["event"], msg["status"]) == ("retry_requested", "pending")


async def test_the_processors_own_deadline_moves_are_quiet(conn: asyncpg.Connection, inbox: Inbox) -> None:
    row_id = await make_generation(conn, due=True)
    await inbox.drain()
    claimed = await conn.fetchrow("SELECT * FROM genretry.claim('w', 10, '1 min')")
    await conn.execute("SELECT genretry.record_delivery($1, $2, 'server_error', 500)", row_id, claimed["lease_id"])
    assert await inbox.none_within()


async def test_payload_stays_small_with_a_huge_generator_name(conn: asyncpg.Connection, inbox: Inbox) -> None:
    await make_generation(conn, generator="g" * 20_000)
    msg = await inbox.next()
    assert len(json.dumps(msg)) < 1000

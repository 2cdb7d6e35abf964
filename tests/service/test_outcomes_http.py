"""Each row of the SPEC section 4 table, produced by a scripted generator over real HTTP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from tests.support.factories import make_generation, row
from tests.support.http import StartDaemon, Stub, answer, answer_after, settings_for, wait_until


async def outcome_of(db_url: str, conn: asyncpg.Connection, stub: Stub, start_daemon: StartDaemon,
                     behaviour: Any = None, **env: str) -> asyncpg.Record:
    if behaviour is not None:
        stub.behaviours["generate-website"] = behaviour
    row_id = await make_generation(conn, due=True)
    await start_daemon(settings_for(db_url, env.pop("url", stub.url), **env))

    async def recorded() -> bool:
        r = await row(conn, row_id)
        return (r["lease_id"] is None and r["last_outcome"] is not None) or r["status"] == "failed"

    await wait_until(recorded)
    return await row(conn, row_id)


async def test_202_hands_the_row_back(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                      start_daemon: StartDaemon) -> None:
    r = await outcome_of(db_url, conn, stub, start_daemon)
    assert (r["retry_count"], r["retry_phase"], r["last_outcome"], r["status"]) == (1, "delivered", "202", "generating")


async def test_409_counts_as_already_running(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                             start_daemon: StartDaemon) -> None:
    r = await outcome_of(db_url, conn, stub, start_daemon, answer(409))
    assert (r["retry_count"], r["retry_phase"], r["last_outcome"]) == (1, "delivered", "409")


async def test_500_counts_and_backs_off(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                       start_daemon: StartDaemon) -> None:
    r = await outcome_of(db_url, conn, stub, start_daemon, answer(500))
    assert (r["retry_count"], r["retry_phase"], r["last_outcome"]) == (1, "backoff", "500")


async def test_503_with_retry_after_does_not_count(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                                   start_daemon: StartDaemon) -> None:
    r = await outcome_of(db_url, conn, stub, start_daemon, answer(503, headers={"Retry-After": "120"}))
    assert (r["retry_count"], r["dispatch_failures"], r["retry_phase"]) == (0, 1, "unsent")
    wait = await conn.fetchval("SELECT extract(epoch FROM deadline_at - now()) FROM generation_history "
                               "WHERE id = $1", r["id"])
    assert 110 < wait <= 120


async def test_refused_connection_does_not_count(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                                 start_daemon: StartDaemon) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    r = await outcome_of(db_url, conn, stub, start_daemon, url=f"http://127.0.0.1:{closed_port}")
    assert (r["retry_count"], r["dispatch_failures"], r["last_outcome"]) == (0, 1, "connection refused")


async def test_401_pauses_the_generator_and_fails_nothing(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                                          start_daemon: StartDaemon) -> None:
    r = await outcome_of(db_url, conn, stub, start_daemon, answer(401, {"msg": "Invalid JWT"}))
    assert (r["status"], r["retry_count"], r["dispatch_failures"]) == ("generating", 0, 0)
    state = await conn.fetchrow("SELECT state, reason FROM genretry.generator_state WHERE generator = $1",
                                "generate-website")
    assert (state["state"], state["reason"]) == ("open", "401 from generate-website")


async def test_404_fails_the_row_with_the_generators_message(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                                              start_daemon: StartDaemon) -> None:
    r = await outcome_of(db_url, conn, stub, start_daemon, answer(404, {"error": "Retry record not found"}))
    assert r["status"] == "failed" and r["retry_count"] == 0
    assert r["error_message"] == "generator generate-website rejected the retry (404): Retry record not found"


async def test_a_response_slower_than_the_timeout_counts_as_sent(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                                                  start_daemon: StartDaemon) -> None:
    r = await outcome_of(db_url, conn, stub, start_daemon, answer_after(5), PROCESSOR_RESPONSE_TIMEOUT="0.5")
    assert (r["retry_count"], r["retry_phase"], r["last_outcome"]) == (1, "delivered", "no answer within 0.5 s")


async def test_the_pause_opens_and_closes(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                          start_daemon: StartDaemon) -> None:
    await conn.execute("UPDATE genretry.policy SET pause_for = '1 second', backoff_base = '100 milliseconds', "
                       "backoff_max = '1 second'")
    failing = {"on": True}

    async def flaky(_request: web.Request) -> web.StreamResponse:
        return web.json_response({}, status=503 if failing["on"] else 202)

    stub.behaviours["generate-website"] = flaky
    ids = [await make_generation(conn, due=True) for _ in range(8)]
    await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="5"))

    async def state() -> str:
        value: str | None = await conn.fetchval(
            "SELECT state FROM genretry.generator_state WHERE generator = 'generate-website'")
        return value or "closed"

    await wait_until(lambda: _equals(state(), "open"))
    sent_while_open = len(stub.seen)
    failing["on"] = False
    await wait_until(lambda: _equals(state(), "closed"), within_s=10)
    await wait_until(lambda: _all_delivered(conn, ids), within_s=10)
    assert sent_while_open >= 5
    assert await conn.fetchval("SELECT max(retry_count) FROM generation_history") == 1  # the outage burnt nothing
    events = [r["event"] for r in await conn.fetch("SELECT event FROM genretry.events ORDER BY id")]
    assert "generator_paused" in events and "generator_resumed" in events


async def _equals(value: Awaitable[str], expected: str) -> bool:
    return await value == expected


async def _all_delivered(conn: asyncpg.Connection, ids: list[Any]) -> bool:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM generation_history WHERE id = ANY($1) AND retry_phase = 'delivered'", ids)
    return count == len(ids)


async def test_two_daemons_deliver_each_attempt_exactly_once(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                                             start_daemon: StartDaemon) -> None:
    await conn.execute(
        """INSERT INTO generation_history (user_id, status, deadline_at, status_changed_at)
           SELECT gen_random_uuid(), 'generating', now() - interval '1 second', now() - interval '1 hour'
           FROM generate_series(1, 1000)""")
    settings = settings_for(db_url, stub.url, PROCESSOR_BATCH_SIZE="50")
    await asyncio.gather(start_daemon(settings), start_daemon(settings_for(db_url, stub.url,
                                                                           PROCESSOR_BATCH_SIZE="50")))
    await stub.wait_for(1000, within_s=30)
    await asyncio.sleep(0.3)
    keys = stub.keys()
    assert len(stub.seen) == 1000 and len(keys) == 1000 and max(keys.values()) == 1
    workers = await conn.fetch("SELECT worker, count(*) FROM genretry.events WHERE event = 'claimed' GROUP BY 1")
    assert len(workers) == 2 and sum(w["count"] for w in workers) == 1000
    await wait_until(lambda: _count_delivered(conn, 1000), within_s=10)


async def _count_delivered(conn: asyncpg.Connection, n: int) -> bool:
    count: int = await conn.fetchval("SELECT count(*) FROM generation_history WHERE retry_count = 1")
    return count == n


async def test_a_short_lease_still_delivers(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                            start_daemon: StartDaemon) -> None:
    # regression: a fixed 5 s safety margin once made every row with a short lease be released unsent
    r = await outcome_of(db_url, conn, stub, start_daemon, PROCESSOR_LEASE="3s", PROCESSOR_RESPONSE_TIMEOUT="1s",
                         PROCESSOR_CONNECT_TIMEOUT="0.5s")
    assert (r["retry_count"], r["last_outcome"]) == (1, "202")


async def test_reset_mid_response_does_not_count(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                                 start_daemon: StartDaemon) -> None:
    async def reset(request: web.Request) -> web.StreamResponse:
        await request.read()
        assert request.transport is not None
        request.transport.abort()  # the connection dies before any response byte
        return web.Response()

    r = await outcome_of(db_url, conn, stub, start_daemon, reset)
    assert (r["retry_count"], r["dispatch_failures"], r["retry_phase"], r["last_outcome"]) == (
        0, 1, "unsent", "connection reset")


@pytest.mark.parametrize(("status", "headers"), [(502, None), (429, {"Retry-After": "30"}), (403, None)])
async def test_more_statuses_that_burn_no_retry(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                                start_daemon: StartDaemon, status: int,
                                                headers: dict[str, str] | None) -> None:
    r = await outcome_of(db_url, conn, stub, start_daemon, answer(status, headers=headers))
    assert r["retry_count"] == 0 and r["status"] == "generating" and r["last_outcome"] == str(status)
    if status == 403:
        assert await conn.fetchval("SELECT state FROM genretry.generator_state") == "open"
    else:
        assert r["dispatch_failures"] == 1


async def test_a_2xx_with_a_garbage_body_is_accepted(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                                     start_daemon: StartDaemon) -> None:
    async def garbage(_request: web.Request) -> web.StreamResponse:
        return web.Response(status=200, body=b"\x00\xff<html>not json", content_type="application/json")

    r = await outcome_of(db_url, conn, stub, start_daemon, garbage)
    assert (r["retry_count"], r["retry_phase"], r["last_outcome"]) == (1, "delivered", "200")


async def test_a_redirect_is_not_followed(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                          start_daemon: StartDaemon) -> None:
    r = await outcome_of(db_url, conn, stub, start_daemon,
                         answer(301, headers={"Location": "https://elsewhere.example/fn"}))
    assert len(stub.seen) == 1  # not followed
    assert (r["retry_count"], r["dispatch_failures"]) == (0, 1)
    assert r["last_outcome"] == "redirect 301 to https://elsewhere.example/fn"

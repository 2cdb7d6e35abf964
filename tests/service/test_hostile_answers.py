"""Whatever a generator answers, a delivery ends in an outcome of the SPEC 4 table, never in a loop.

Issue 10, class 1. Each hostile answer is written byte for byte by a raw TCP peer; first the table of what
deliver() makes of it, then the daemon against the ones that once looped (recorded as `released`: due again
now, never counted, the circuit never opening).
"""

from __future__ import annotations

import asyncpg
import pytest

from processor import delivery
from tests.support.factories import make_generation, row
from tests.support.hostile_peers import fixed, raw_peer
from tests.support.http import StartDaemon, settings_for, wait_until

pytestmark = pytest.mark.hostile

def answer(head: str | bytes, body: bytes = b"") -> bytes:
    head = head.encode() if isinstance(head, str) else head
    return head + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body


HOSTILE = {  # name: (the bytes the peer writes, outcome kind, status)
    # its status is judged (since 6 Dec 2026: the reason phrase once raised, "invalid answer")
    "status line with non-UTF-8 bytes": (answer(b"HTTP/1.1 503 Serv\xff\xfeice"), "unreachable", 503),
    "header with non-UTF-8 bytes": (answer(b"HTTP/1.1 503 X\r\nX-Bad: \xff\xfe\x80"), "unreachable", 503),
    "Retry-After in superscript digits": (answer("HTTP/1.1 503 X\r\nRetry-After: ²³"), "unreachable", 503),
    "Retry-After in Arabic-Indic digits": (answer("HTTP/1.1 429 X\r\nRetry-After: ١٢"), "unreachable", 429),
    "Retry-After of 5,000 digits": (answer("HTTP/1.1 503 X\r\nRetry-After: " + "9" * 5000), "unreachable", 503),
    "Retry-After as a date in year 9999": (
        answer("HTTP/1.1 503 X\r\nRetry-After: Fri, 31 Dec 9999 23:59:59 GMT"), "unreachable", 503),
    "2xx body nesting 60,000 deep": (answer("HTTP/1.1 200 OK", b"[" * 60_000), "accepted", 200),
    "2xx JSON object nesting 30,000 deep": (answer("HTTP/1.1 202 OK", b'{"a":' * 30_000), "accepted", 202),
    "4xx message nesting deep": (answer("HTTP/1.1 400 X", b'{"message":' + b"[" * 50_000), "rejected", 400),
    "status 999": (answer("HTTP/1.1 999 X"), "unreachable", 999),
    "status 600": (answer("HTTP/1.1 600 X"), "unreachable", 600),
    "status 408": (answer("HTTP/1.1 408 Request Timeout"), "unreachable", 408),
    "an informational status, then silence": (b"HTTP/1.1 150 X\r\n\r\n", "unreachable", None),
    "not HTTP at all": (b"\x00\x01garbage\r\n\r\n", "unreachable", None),
    "an HTTP/0.9 answer": (b"hello", "unreachable", None),
    "negative Content-Length": (b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n", "unreachable", None),
    "two Content-Lengths": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
                            "unreachable", None),
    "gzip that is not gzip": (answer("HTTP/1.1 200 OK\r\nContent-Encoding: gzip", b"hello"), "accepted", 200),
    "brotli we never asked for": (answer("HTTP/1.1 404 X\r\nContent-Encoding: br", b"\x8b\x02\x80"),
                                  "rejected", 404),
    "a body cut short": (b"HTTP/1.1 503 X\r\nContent-Length: 1000\r\n\r\nabc", "unreachable", 503),
    "a 100 KB header line": (answer("HTTP/1.1 202 OK\r\nX-Big: " + "a" * 100_000), "unreachable", None),
    "a thousand headers": (answer("HTTP/1.1 202 OK" + "".join(f"\r\nX-{i}: v" for i in range(1000))),
                           "unreachable", None),
    "control characters and NUL in the message": (
        answer("HTTP/1.1 422 X", b'{"message": "a\\u0000b\\u001b[31mc\\nd"}'), "rejected", 422),
}


@pytest.mark.parametrize("name", list(HOSTILE))
async def test_a_hostile_answer_is_an_outcome(name: str) -> None:
    raw, kind, status = HOSTILE[name]
    async with raw_peer(fixed(raw)) as peer:
        client = delivery.make_client(max_connections=4, connect_timeout_s=1, response_timeout_s=2)
        try:
            outcome = await delivery.deliver(client, f"{peer.url}/generate-website", {}, b"{}",
                                             connect_timeout_s=1, response_timeout_s=2)
        finally:
            await client.aclose()
    assert (outcome.kind, outcome.http_status) == (kind, status)
    assert outcome.kind != delivery.TIMEOUT  # an answer came: it was judged, not waited out
    stored = outcome.message + outcome.label
    assert len(outcome.message) <= delivery.MAX_MESSAGE_CHARS
    assert not any(ord(c) < 32 or ord(c) == 127 for c in stored)
    assert outcome.retry_after_s is None or 0 <= outcome.retry_after_s <= delivery.MAX_RETRY_AFTER_S


LOOPED = ["Retry-After in superscript digits", "status line with non-UTF-8 bytes"]


@pytest.mark.parametrize("name", LOOPED)
async def test_an_unreadable_answer_is_counted_and_the_row_fails(db_url: str, conn: asyncpg.Connection,
                                                                  start_daemon: StartDaemon, name: str) -> None:
    # fast backoff and short pauses: the row should reach max_dispatch_failures (8) in seconds
    await conn.execute("UPDATE genretry.policy SET backoff_base = '50 milliseconds', "
                       "backoff_max = '300 milliseconds', pause_for = '100 milliseconds'")
    row_id = await make_generation(conn, due=True)
    async with raw_peer(fixed(HOSTILE[name][0])) as peer:
        await start_daemon(settings_for(db_url, peer.url, PROCESSOR_TICK="0.2"))

        async def failed() -> bool:
            return bool((await row(conn, row_id))["status"] == "failed")

        await wait_until(failed, within_s=30)
        r = await row(conn, row_id)
        assert peer.requests == 8  # max_dispatch_failures deliveries, then no more
    assert (r["retry_count"], r["dispatch_failures"]) == (0, 8)
    assert r["error_message"].startswith("generator unreachable: ")
    paused = await conn.fetchval("SELECT count(*) FROM genretry.events WHERE event = 'generator_paused'")
    assert paused >= 1  # five consecutive failures paused the generator on the way
    assert await conn.fetchval("SELECT count(*) FROM genretry.events WHERE event = 'released'") == 0


async def test_a_2xx_nesting_deep_is_delivered_once(db_url: str, conn: asyncpg.Connection,
                                                   start_daemon: StartDaemon) -> None:
    row_id = await make_generation(conn, due=True)
    async with raw_peer(fixed(HOSTILE["2xx body nesting 60,000 deep"][0])) as peer:
        await start_daemon(settings_for(db_url, peer.url, PROCESSOR_TICK="0.2"))

        async def recorded() -> bool:
            return bool((await row(conn, row_id))["last_outcome"] == "200")

        await wait_until(recorded)
        assert peer.requests == 1
    r = await row(conn, row_id)
    assert (r["retry_count"], r["retry_phase"], r["status"]) == (1, "delivered", "generating")

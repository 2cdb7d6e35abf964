"""Hostile input: notifications, credentials and row contents meant to break things are survived."""

from __future__ import annotations

import asyncio
import json
import random
import string
import uuid
from collections import Counter

import asyncpg
import httpx
import pytest

from processor import reference_generator
from processor.config import DEFAULT_GENERATORS
from processor.listener import parse_hint
from tests.support.factories import make_generation
from tests.support.http import StartDaemon, Stub, settings_for, wait_until
from tests.support.keys import (
    DEMO_ANON_JWT,
    DEMO_PUBLISHABLE_KEY,
    DEMO_SECRET_KEY,
    DEMO_SERVICE_ROLE_JWT,
)
from tests.support.keys import (
    GENERATOR_KEYS as KEYS,
)
from tests.support.tokens import user_token

pytestmark = pytest.mark.reliability

def hostile_payload(rng: random.Random) -> str:
    kind = rng.randrange(9)
    if kind == 0:
        return "".join(rng.choices(string.printable, k=rng.randrange(0, 200)))  # not JSON
    if kind == 1:
        return "x" * rng.randrange(4000, 7990)  # huge
    if kind == 2:
        return json.dumps(rng.choice([None, 1, "s", [1, 2], True, {"a": {"b": [None]}}]))  # wrong shape
    if kind == 3:
        return json.dumps({"id": rng.randrange(10**9), "status": ["pending"], "deadline_at": {"x": 1}})
    if kind == 4:
        return json.dumps({"id": str(uuid.uuid4()), "status": "generating",  # unknown id, valid shape
                           "deadline_at": "2026-01-01T00:00:00+00:00", "event": "status_changed"})
    if kind == 5:
        return json.dumps({"id": "'; DROP TABLE generation_history; --", "status": "pending",
                           "deadline_at": "1; SELECT pg_sleep(10)"})
    if kind == 6:
        return json.dumps({"id": "x", "status": "pending", "deadline_at": rng.choice(
            ["9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+00:00", "2026-13-45T99:99:99+00:00", ""])})
    if kind == 7:
        return "[" * rng.randrange(1, 5000)  # deep nesting
    return json.dumps({"id": "x", "status": "\u202e\U0001F600", "deadline_at": None, "event": "\x00"})


async def test_ten_thousand_hostile_notifications(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                                  start_daemon: StartDaemon) -> None:
    running = await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))
    rng = random.Random(11)
    payloads = [hostile_payload(rng) for _ in range(10_000)]
    for start in range(0, len(payloads), 1000):
        await conn.execute("SELECT pg_notify('genretry', p) FROM unnest($1::text[]) p", payloads[start:start + 1000])
    # still running, and still rescuing
    row_id = await make_generation(conn)
    await conn.execute("SELECT genretry.retry_now($1)", row_id)
    await stub.wait_for(1, within_s=10)
    assert stub.seen[0].body["retryHistoryId"] == str(row_id)
    assert not running.task.done()
    # PostgreSQL folds identical payloads sent in one transaction: count the distinct ones per batch
    expected_bad = sum(len({p for p in payloads[i:i + 1000] if not parse_hint(p)[0]})
                       for i in range(0, len(payloads), 1000))
    assert running.daemon.listener is not None and running.daemon.listener.bad_payloads == expected_bad


def hostile_headers(rng: random.Random) -> dict[str, str]:
    latin = "".join(chr(c) for c in range(32, 256) if c != 127)
    noise = "".join(rng.choices(latin, k=rng.randrange(0, 300)))
    valid = rng.choice([DEMO_SECRET_KEY, DEMO_SERVICE_ROLE_JWT, user_token(), DEMO_ANON_JWT, DEMO_PUBLISHABLE_KEY])
    i = rng.randrange(len(valid) - 1)
    other = rng.choice([c for c in latin if c != valid[i]])  # a mutation that changes something
    mutated = valid[:i] + other + valid[i + 1:] if rng.random() < 0.7 else valid[:i]
    value = rng.choice([noise, mutated, "Bearer " + noise, "Bearer " + mutated, "Basic " + noise,
                        "Bearer " + "a." * rng.randrange(1, 500), "Bearer eyJ" + noise, "sb_secret_" + noise])
    # HTTP forbids leading and trailing whitespace in a field value; anything else goes
    return {rng.choice(["Authorization", "apikey", "authorization", "APIKEY"]): value.strip() or "x"}


def hostile_body(rng: random.Random, others: str) -> object:
    return rng.choice([
        {"retryHistoryId": others}, {"retryHistoryId": "'; --"}, {"retryHistoryId": 7},
        {"retryHistoryId": others, "retryAttempt": -1}, {"retryHistoryId": [others]}, {},
        {"prompt": "x" * rng.randrange(0, 5000)}, {"retryHistoryId": str(uuid.uuid4())},
    ])


async def test_ten_thousand_hostile_requests_at_the_reference_generator(pool: asyncpg.Pool,
                                                                        conn: asyncpg.Connection) -> None:
    others = str(await make_generation(conn))
    served = await reference_generator.start(pool, DEFAULT_GENERATORS, KEYS,
                                             behaviour=reference_generator.Behaviour(work_s=0.1))
    rng = random.Random(13)
    statuses: Counter[int] = Counter()
    cases = [(hostile_headers(rng), hostile_body(rng, others)) for _ in range(10_000)]
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            queue = iter(cases)

            async def worker() -> None:
                for headers, body in queue:
                    # HTTP allows Latin-1 bytes
                    raw = {k.encode("latin-1"): v.encode("latin-1") for k, v in headers.items()}
                    response = await client.post(f"{served.url}/generate-website", headers=raw,
                                                  content=json.dumps(body))
                    statuses[response.status_code] += 1

            await asyncio.gather(*(worker() for _ in range(16)))
    finally:
        await served.stop()
    assert sum(statuses.values()) == 10_000
    assert set(statuses) <= {400, 401, 403, 404}, statuses
    assert served.app.accepted == 0


async def test_hostile_rows_are_delivered_or_failed_cleanly(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                                            start_daemon: StartDaemon) -> None:
    delivered = [
        await make_generation(conn, due=True, request={"prompt": "it's \"quoted\"; DROP TABLE x; --"}),
        await make_generation(conn, due=True, request={"prompt": "x" * 1_000_000}),
        await make_generation(conn, due=True, request={"prompt": "\u202eRTL \U0001F600 \u0301 日本語 \ufeff"}),
    ]
    unroutable = await make_generation(conn, due=True, generator="gen'; --")  # not a routing key (SPEC 3.1)
    failed = [await make_generation(conn, due=True, request=value) for value in ([1, 2], "text", 42, None)]
    await conn.execute("UPDATE generation_history SET request = 'null'::jsonb WHERE id = $1", failed[3])
    running = await start_daemon(settings_for(db_url, stub.url))

    async def settled() -> bool:
        n: int = await conn.fetchval("SELECT count(*) FROM generation_history WHERE lease_id IS NULL "
                                     "AND (retry_count = 1 OR status = 'failed')")
        return n == 8

    await wait_until(settled, within_s=15)
    assert {s.body["retryHistoryId"] for s in stub.seen} == {str(i) for i in delivered}
    big = next(s for s in stub.seen if s.body["retryHistoryId"] == str(delivered[1]))
    assert len(big.body["prompt"]) == 1_000_000
    for row_id in failed:
        r = await conn.fetchrow("SELECT status, error_message FROM generation_history WHERE id = $1", row_id)
        assert r["status"] == "failed" and "not a JSON object" in r["error_message"]
    r = await conn.fetchrow("SELECT status, error_message FROM generation_history WHERE id = $1", unroutable)
    assert r["status"] == "failed" and "never sent" in r["error_message"]
    assert not running.task.done()

"""The reference generator against hostile bodies and a failing owner look-up: 4xx or 503, never a 500."""

from __future__ import annotations

import json
import uuid

import asyncpg
import httpx
import pytest

from processor import reference_generator
from tests.support.factories import make_generation
from tests.support.keys import DEMO_SECRET_KEY

GEN = "generate-website"


@pytest.mark.parametrize("raw", [
    b"[" * 100_000,
    b'{"retryHistoryId": "x", "a": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"}",
    b'{"prompt": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
], ids=["array-100000-deep", "object-50000-deep", "inner-5000-deep"])
async def test_a_body_nesting_thousands_deep_is_400(generator: reference_generator.Served, http: httpx.AsyncClient,
                                                    raw: bytes) -> None:
    response = await http.post(f"{generator.url}/{GEN}", content=raw,
                               headers={"apikey": DEMO_SECRET_KEY, "content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad_json"
    healthy = await http.get(f"{generator.url}/healthz")  # and the server is still serving
    assert healthy.status_code == 200


async def test_an_owner_lookup_that_fails_is_503_and_leaves_the_row_alone(
        pool: asyncpg.Pool, db_url: str, generator: reference_generator.Served, http: httpx.AsyncClient) -> None:
    async with pool.acquire() as conn:
        row_id = await make_generation(conn, due=True)
        before = await conn.fetchrow("SELECT status, retry_count, attempt FROM generation_history WHERE id = $1",
                                     row_id)
    broken = await asyncpg.create_pool(db_url, min_size=1, max_size=1)
    await broken.close()  # every query on it raises: the database is "down" for the look-up
    healthy, generator.app.pool = generator.app.pool, broken
    try:
        response = await http.post(f"{generator.url}/{GEN}", headers={"apikey": DEMO_SECRET_KEY},
                                   json={"retryHistoryId": str(row_id), "retryAttempt": 1})
    finally:
        generator.app.pool = healthy
    assert (response.status_code, response.json()["error"]) == (503, "owner_lookup_failed")
    assert generator.app.accepted == 0
    after = await pool.fetchrow("SELECT status, retry_count, attempt FROM generation_history WHERE id = $1", row_id)
    assert after is not None and before is not None and dict(after) == dict(before)
    unknown = await http.post(f"{generator.url}/{GEN}", headers={"apikey": DEMO_SECRET_KEY},
                              json={"retryHistoryId": str(uuid.uuid4())})
    assert (unknown.status_code, unknown.json()["error"]) == (404, "retry_record_not_found")
    assert json.loads(unknown.text)["message"] == "Retry record not found"

"""SPEC section 6 over HTTP: the reference generator verifies with the library against the real database."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import httpx
import pytest

from processor import reference_generator
from processor.credentials import Delivery, Minter
from tests.support.factories import SEED_ID, make_generation
from tests.support.keys import (
    DEMO_ANON_JWT,
    DEMO_PUBLISHABLE_KEY,
    DEMO_SECRET_KEY,
    DEMO_SERVICE_ROLE_JWT,
    PROCESSOR_KID,
    processor_pair,
)
from tests.support.tokens import user_token

GEN = "generate-website"


async def wait_for_status(pool: asyncpg.Pool, row_id: uuid.UUID, status: str, within_s: float = 10) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await pool.fetchval("SELECT status FROM generation_history WHERE id = $1", row_id) == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{row_id} did not become {status} within {within_s} s")


async def post(http: httpx.AsyncClient, served: reference_generator.Served, headers: dict[str, str],
               body: dict[str, object], generator: str = GEN) -> httpx.Response:
    return await http.post(f"{served.url}/{generator}", headers=headers, json=body)


async def test_the_seeds_scenario_end_to_end(pool: asyncpg.Pool, generator: reference_generator.Served,
                                             http: httpx.AsyncClient) -> None:
    async with pool.acquire() as conn:
        owner = uuid.uuid4()
        await make_generation(conn, id=SEED_ID, user_id=owner, due=True, admin_note="retry:0")
        claimed = (await conn.fetch("SELECT * FROM genretry.claim('w', 10, '1 minute')"))[0]
    body = {"prompt": "a bakery", "retryHistoryId": str(SEED_ID), "retryAttempt": claimed["attempt"]}
    # the seed's exact request: the secret key as a Bearer token. Accepted as service authority.
    response = await post(http, generator, {"Authorization": f"Bearer {DEMO_SECRET_KEY}"}, body)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": True, "user_id": str(owner), "authority": "service-key"}
    await wait_for_status(pool, SEED_ID, "completed")
    events = [r["event"] for r in await pool.fetch(
        "SELECT event FROM genretry.events WHERE generation_id = $1 ORDER BY id", SEED_ID)]
    assert events == ["claimed", "finished"]


async def test_a_scoped_token_opens_exactly_its_generation(pool: asyncpg.Pool, generator: reference_generator.Served,
                                                           http: httpx.AsyncClient) -> None:
    async with pool.acquire() as conn:
        owner = uuid.uuid4()
        row_id = await make_generation(conn, user_id=owner, due=True)
        other = await make_generation(conn, due=True)
        await conn.fetch("SELECT * FROM genretry.claim('w', 10, '1 minute')")
    minter = Minter(private_key_pem=processor_pair()[0], kid=PROCESSOR_KID)
    token = minter.mint(Delivery(GEN, str(owner), str(row_id), 1))
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": f"{row_id}:1"}
    ok = await post(http, generator, headers, {"retryHistoryId": str(row_id), "retryAttempt": 1})
    assert ok.status_code == 202 and ok.json()["authority"] == "scoped-jwt"
    for key in (f"{row_id}:1", "another-key", "a-third-key"):  # the same token, whatever the Idempotency-Key
        again = await post(http, generator, {**headers, "Idempotency-Key": key},
                           {"retryHistoryId": str(row_id), "retryAttempt": 1})
        assert (again.status_code, again.json()["error"]) == (409, "token_replayed")
    fresh = {**headers, "Authorization": f"Bearer {minter.mint(Delivery(GEN, str(owner), str(row_id), 1))}"}
    duplicate = await post(http, generator, fresh, {"retryHistoryId": str(row_id), "retryAttempt": 1})
    assert (duplicate.status_code, duplicate.json()["error"]) == (409, "duplicate")
    wrong_row = await post(http, generator, {"Authorization": f"Bearer {token}"}, {"retryHistoryId": str(other)})
    assert (wrong_row.status_code, wrong_row.json()["error"]) == (403, "retry_id_mismatch")
    wrong_gen = await post(http, generator, {"Authorization": f"Bearer {token}"}, {"retryHistoryId": str(row_id)},
                           generator="generate-php-website")
    assert (wrong_gen.status_code, wrong_gen.json()["error"]) == (403, "wrong_audience")
    await wait_for_status(pool, row_id, "completed")


async def test_users_and_their_own_generations(pool: asyncpg.Pool, generator: reference_generator.Served,
                                               http: httpx.AsyncClient) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    async with pool.acquire() as conn:
        alices = await make_generation(conn, user_id=alice, status="pending")
        bobs = await make_generation(conn, user_id=bob)
    as_alice = {"Authorization": f"Bearer {user_token(str(alice))}"}
    fresh = await post(http, generator, as_alice, {"prompt": "new site"})
    assert fresh.status_code == 202 and fresh.json() == {"accepted": True, "user_id": str(alice), "authority": "user"}
    own = await post(http, generator, as_alice, {"retryHistoryId": str(alices)})
    assert own.status_code == 202
    theirs = await post(http, generator, as_alice, {"retryHistoryId": str(bobs)})
    assert (theirs.status_code, theirs.json()["error"]) == (403, "not_owner")
    await wait_for_status(pool, alices, "completed")
    assert await pool.fetchval("SELECT status FROM generation_history WHERE id = $1", bobs) == "generating"
    # the user's new generation was created as a row of its own and completed
    created = await pool.fetchval(
        "SELECT id FROM generation_history WHERE user_id = $1 AND request->>'prompt' = 'new site'", alice)
    await wait_for_status(pool, created, "completed")


@pytest.mark.parametrize(("headers", "body", "status", "code"), [
    ({"apikey": DEMO_SECRET_KEY}, {"prompt": "x"}, 403, "retry_id_required"),
    ({"apikey": DEMO_SECRET_KEY}, {"retryHistoryId": str(uuid.uuid4())}, 404, "retry_record_not_found"),
    ({"apikey": DEMO_PUBLISHABLE_KEY}, {}, 401, "publishable_key"),
    ({"Authorization": f"Bearer {DEMO_ANON_JWT}"}, {}, 401, "anon_key"),
    ({}, {}, 401, "missing_credentials"),
    ({"Authorization": "Bearer eyJ.eyJ.sig"}, {}, 401, "malformed_token"),
    ({"Authorization": "Bearer " + user_token(exp=1)}, {}, 401, "token_expired"),
])
async def test_refusals_over_http(generator: reference_generator.Served, http: httpx.AsyncClient,
                                  headers: dict[str, str], body: dict[str, object], status: int, code: str) -> None:
    response = await post(http, generator, headers, body)
    assert (response.status_code, response.json()["error"]) == (status, code)
    assert response.json()["message"]


async def test_legacy_service_role_jwt_over_http(pool: asyncpg.Pool, generator: reference_generator.Served,
                                                 http: httpx.AsyncClient) -> None:
    async with pool.acquire() as conn:
        row_id = await make_generation(conn)
    response = await post(http, generator, {"Authorization": f"Bearer {DEMO_SERVICE_ROLE_JWT}"},
                          {"retryHistoryId": str(row_id)})
    assert response.status_code == 202 and response.json()["authority"] == "service-key"


async def test_bad_bodies_and_routes(generator: reference_generator.Served, http: httpx.AsyncClient) -> None:
    bad_json = await http.post(f"{generator.url}/{GEN}", content=b"{not json", headers={"apikey": DEMO_SECRET_KEY})
    assert (bad_json.status_code, bad_json.json()["error"]) == (400, "bad_json")
    not_object = await http.post(f"{generator.url}/{GEN}", json=[1, 2], headers={"apikey": DEMO_SECRET_KEY})
    assert not_object.status_code == 400
    huge = await http.post(f"{generator.url}/{GEN}", content=b"x" * (2 << 20))
    assert huge.status_code == 413
    unknown = await http.post(f"{generator.url}/nope", json={})
    assert unknown.status_code == 404
    assert (await http.get(f"{generator.url}/healthz")).status_code == 200

"""The replay guard in the database (genretry.use_token, genretry.token_seen; SPEC 6: a jti opens one delivery,
once), from the generators' role and against hostile callers; and the Python verifiers that share it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from processor.authority import AuthorityError, Keys, Verifier
from processor.credentials import Delivery, Minter
from processor.replay import SqlReplayGuard
from tests.support.factories import make_generation
from tests.support.pg import as_role

pytestmark = pytest.mark.hostile
USE = "SELECT genretry.use_token($1::text, $2::text::timestamptz)"
SECRET = "s" * 40  # the processor's HS256 secret in these tests
GEN = "generate-website"


async def _use(conn: asyncpg.Connection, jti: str, ahead: timedelta = timedelta(minutes=5)) -> bool:
    rows = await as_role(conn, "genretry_generator", "SELECT genretry.use_token($1, now() + $2::interval)", jti, ahead)
    return bool(rows[0][0])


async def test_a_jti_is_used_once_and_seen_afterwards(conn: asyncpg.Connection) -> None:
    assert (await as_role(conn, "genretry_generator", "SELECT genretry.token_seen('j1')"))[0][0] is False
    assert await _use(conn, "j1") is True
    assert await _use(conn, "j1") is False
    assert (await as_role(conn, "genretry_generator", "SELECT genretry.token_seen('j1')"))[0][0] is True


@pytest.mark.parametrize("role", ["genretry_processor", "genretry_admin"])
async def test_only_generators_call_it(conn: asyncpg.Connection, role: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_role(conn, role, "SELECT genretry.use_token('j', now())")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await as_role(conn, "genretry_generator", "SELECT * FROM genretry.used_tokens")  # only through the functions


@pytest.mark.parametrize("jti", [None, "", "j" * 201])
async def test_a_hostile_jti_is_refused_with_a_clear_error(conn: asyncpg.Connection, jti: str | None) -> None:
    with pytest.raises(asyncpg.InvalidParameterValueError, match="1 to 200 characters"):
        await as_role(conn, "genretry_generator", USE, jti, None if jti is None else "2100-01-01")


async def test_an_entry_lives_10_minutes_to_2_hours_whatever_the_expiry(conn: asyncpg.Connection) -> None:
    """At most 2 hours (a hostile expiry cannot keep a row for ever); at least 10 minutes by the database's
    clock, so a verifier whose clock is behind cannot find its token expired in the table but valid itself."""
    for jti, at in (("far", "infinity"), ("year", "2999-01-01"), ("past", "-infinity"), ("now", "now")):
        await as_role(conn, "genretry_generator", USE, jti, at)
    kept = {r["jti"]: r["left"] for r in await conn.fetch(
        "SELECT jti, expires_at - now() AS left FROM genretry.used_tokens")}
    assert kept["far"] <= timedelta(hours=2, minutes=1) and kept["year"] <= timedelta(hours=2, minutes=1)
    for jti in ("past", "now"):
        assert timedelta(minutes=9) < kept[jti] <= timedelta(minutes=10, seconds=5), jti
    assert (await as_role(conn, "genretry_generator", "SELECT genretry.token_seen('now')"))[0][0] is True


async def test_each_use_prunes_expired_entries_and_an_expired_jti_is_taken_over(conn: asyncpg.Connection) -> None:
    await conn.execute("INSERT INTO genretry.used_tokens SELECT 'old' || i, now() - interval '1 hour' "
                       "FROM generate_series(1, 5) i")
    for i in range(3):
        assert await _use(conn, f"new{i}")
    assert await conn.fetchval("SELECT count(*) FROM genretry.used_tokens WHERE jti LIKE 'old%'") == 0
    await conn.execute("INSERT INTO genretry.used_tokens VALUES ('again', now() - interval '1 second')")
    assert await _use(conn, "again") is True  # the old entry had expired (the verifier refuses such a token first)


async def test_of_concurrent_uses_exactly_one_wins(db_url: str) -> None:
    conns = [await asyncpg.connect(db_url) for _ in range(8)]
    try:
        results = await asyncio.gather(*(_use(c, "race") for c in conns))
    finally:
        for c in conns:
            await c.close()
    assert sorted(results) == [False] * 7 + [True]


async def test_a_locked_expired_entry_does_not_stall_other_uses(conn: asyncpg.Connection, db_url: str) -> None:
    await conn.execute("INSERT INTO genretry.used_tokens VALUES ('held', now() - interval '1 hour')")
    admin = await asyncpg.connect(db_url)
    try:
        async with admin.transaction():
            await admin.execute("SELECT * FROM genretry.used_tokens WHERE jti = 'held' FOR UPDATE")
            await conn.execute("SET statement_timeout = '3s'")
            assert await _use(conn, "other")  # the prune skips the locked row instead of waiting for it
    finally:
        await admin.close()


async def test_a_jti_held_by_a_stuck_transaction_is_waited_for_5_s_at_most(conn: asyncpg.Connection,
                                                                            db_url: str) -> None:
    holder = await asyncpg.connect(db_url)
    try:
        async with holder.transaction():
            await holder.execute("INSERT INTO genretry.used_tokens VALUES ('stuck', now() + interval '1 hour')")
            with pytest.raises(asyncpg.LockNotAvailableError):
                await asyncio.wait_for(_use(conn, "stuck"), 30)
    finally:
        await holder.close()


async def test_a_temp_table_of_the_same_name_changes_nothing(conn: asyncpg.Connection) -> None:
    async with conn.transaction():
        await conn.execute("SET LOCAL ROLE genretry_generator")
        await conn.execute("CREATE TEMP TABLE used_tokens (jti text, expires_at timestamptz)")
        await conn.execute("INSERT INTO pg_temp.used_tokens VALUES ('shadow', 'infinity')")
        await conn.execute("SET LOCAL search_path = pg_temp, public")
        assert (await conn.fetchval("SELECT genretry.token_seen('shadow')")) is False
        assert await conn.fetchval("SELECT genretry.use_token('shadow', now() + interval '1 minute')") is True
    assert await conn.fetchval("SELECT count(*) FROM genretry.used_tokens WHERE jti = 'shadow'") == 1


# --- the Python verifier with the guard in the database ------------------------------------------------


@pytest.fixture
async def two_instances(db_url: str) -> AsyncIterator[tuple[Verifier, Verifier, asyncpg.Pool]]:
    pools = [await asyncpg.create_pool(db_url, min_size=1, max_size=2) for _ in range(2)]

    async def owner_of(retry_id: str) -> str | None:
        owner: str | None = await pools[0].fetchval(
            "SELECT user_id::text FROM generation_history WHERE id = $1::uuid", retry_id)
        return owner

    a, b = (Verifier(GEN, Keys(processor_secret=SECRET), owner_of, replay=SqlReplayGuard(p)) for p in pools)
    yield a, b, pools[1]
    for p in pools:
        await p.close()


async def test_two_python_instances_share_the_guard(conn: asyncpg.Connection,
                                                    two_instances: tuple[Verifier, Verifier, asyncpg.Pool]) -> None:
    first, second, second_pool = two_instances
    owner = uuid.uuid4()
    row_id = await make_generation(conn, user_id=owner)
    token = Minter(shared_secret=SECRET).mint(Delivery(GEN, str(owner), str(row_id), 1))
    headers, body = {"Authorization": f"Bearer {token}"}, {"retryHistoryId": str(row_id), "retryAttempt": 1}
    assert (await first.verify(headers, body)).authority == "scoped-jwt"
    with pytest.raises(AuthorityError) as replayed:
        await second.verify(headers, body)
    assert (replayed.value.status, replayed.value.code) == (409, "token_replayed")
    fresh = Minter(shared_secret=SECRET).mint(Delivery(GEN, str(owner), str(row_id), 1), now=time.time())
    await second_pool.close()  # its database is gone: a 503 to retry, never a pass nor a replay
    with pytest.raises(AuthorityError) as down:
        await second.verify({"Authorization": f"Bearer {fresh}"}, body)
    assert (down.value.status, down.value.code) == (503, "replay_check_failed")

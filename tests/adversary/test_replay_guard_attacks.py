"""Adversary: the replay guard of scoped tokens in the database (genretry.use_token, genretry.token_seen,
processor.replay.SqlReplayGuard) and the verifier's use of it (Verifier._replay_check). A jti is accepted at most
once while its token is unexpired; no caller makes the functions raise unexpectedly, keeps entries, grows the
table faster than it is pruned, or gets a pass (or a 500) out of a guard that failed."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import jwt
import pytest

from processor.authority import AuthorityError, Keys, Principal, Verifier
from processor.minting import ISSUER, SCOPED_ROLE
from processor.replay import SqlReplayGuard
from tests.support.pg import as_daemon

pytestmark = pytest.mark.hostile
SECRET = "s" * 40  # the processor's HS256 secret in these tests
GEN = "generate-website"
OWNER, ROW = str(uuid.uuid4()), str(uuid.uuid4())
BODY = {"retryHistoryId": ROW, "retryAttempt": 1}


async def _owner_of(_retry_id: str) -> str | None:
    return OWNER


def _token(jti: str, exp: float, **extra: Any) -> dict[str, str]:
    claims = {"iss": ISSUER, "role": SCOPED_ROLE, "aud": GEN, "sub": OWNER, "retry_history_id": ROW,
              "attempt": 1, "iat": int(time.time()), "exp": exp, "jti": jti, **extra}
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


def _verifier(guard: Any, clock: Any = time.time, check_timeout_s: float = 10.0) -> Verifier:
    return Verifier(GEN, Keys(processor_secret=SECRET), _owner_of, replay=guard, clock=clock,
                    check_timeout_s=check_timeout_s)


async def _as_generator(conn: asyncpg.Connection, sql: str, *args: object) -> Any:
    async with conn.transaction():
        await conn.execute("SET LOCAL ROLE genretry_generator")
        return await conn.fetchval(sql, *args)


async def _use(conn: asyncpg.Connection, jti: str, at: str = "now() + interval '5 minutes'") -> bool:
    return bool(await _as_generator(conn, f"SELECT genretry.use_token($1::text, {at})", jti))


@pytest.fixture
async def generator_pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=4,
                                     server_settings={"role": "genretry_generator"})
    yield pool
    await pool.close()


async def test_jti_length_is_in_characters_and_the_match_is_exact(conn: asyncpg.Connection) -> None:
    for jti in ("€" * 200, "😀" * 200, "Ab", "ab", "ab ", " ab", "ab\t", "AB"):
        assert await _use(conn, jti) is True, repr(jti)  # distinct jtis, none taken for another
    assert await _use(conn, "😀" * 200) is False
    with pytest.raises(asyncpg.InvalidParameterValueError):
        await _use(conn, "€" * 201)
    assert await _as_generator(conn, "SELECT genretry.token_seen('aB')") is False


@pytest.mark.parametrize("jti", ["a\x00b", "\ud800", "\x00", "a\nb"])
async def test_a_jti_the_database_cannot_hold_is_refused_as_malformed_never_a_pass_nor_a_retry(
        conn: asyncpg.Connection, generator_pool: asyncpg.Pool, jti: str) -> None:
    # Before: the guard failed on it, a 503 ("retry later") for a token that could never pass.
    verifier = _verifier(SqlReplayGuard(generator_pool))
    for _ in range(2):
        with pytest.raises(AuthorityError) as refused:
            await verifier.verify(_token(jti, time.time() + 300), BODY)
        assert (refused.value.status, refused.value.code) == (401, "invalid_scoped_token")
    assert await conn.fetchval("SELECT count(*) FROM genretry.used_tokens") == 0


async def test_an_expiry_past_the_timestamp_range_is_capped_not_an_error(
        conn: asyncpg.Connection, generator_pool: asyncpg.Pool) -> None:
    """A scoped token's exp is any finite number: 1e13 s (about year 318857) passes the verifier's time checks."""
    guard = SqlReplayGuard(generator_pool)
    assert await guard.use("far", 1e13) is True  # like 'infinity': kept for at most a day
    left = await conn.fetchval("SELECT expires_at - now() FROM genretry.used_tokens WHERE jti = 'far'")
    assert left <= timedelta(days=1, minutes=1)


async def test_a_generator_clock_behind_the_database_does_not_open_a_replay(
        generator_pool: asyncpg.Pool) -> None:
    """Two instances whose clock is two minutes behind the database's: the token is valid by their clock,
    use_token keeps its entry only until the database's 'now' (greatest(expiry, clock)), so it expires at once
    and the second instance takes it over."""
    behind = lambda: time.time() - 120  # noqa: E731
    first = _verifier(SqlReplayGuard(generator_pool), behind)
    second = _verifier(SqlReplayGuard(generator_pool), behind)
    headers = _token(str(uuid.uuid4()), time.time() - 100)  # valid until 'now' - 70 s (30 s leeway)
    principal = await first.verify(headers, BODY)
    assert isinstance(principal, Principal) and principal.authority == "scoped-jwt"
    with pytest.raises(AuthorityError) as replayed:
        await second.verify(headers, BODY)
    assert (replayed.value.status, replayed.value.code) == (409, "token_replayed")


async def test_a_use_of_a_jti_held_by_another_transaction_waits_then_loses(
        db_url: str, conn: asyncpg.Connection) -> None:
    holder = await asyncpg.connect(db_url)
    try:
        for commit, expected in ((True, False), (False, True)):
            jti = f"held-{commit}"
            tx = holder.transaction()
            await tx.start()
            await holder.execute("SET LOCAL ROLE genretry_generator")
            assert await holder.fetchval("SELECT genretry.use_token($1, now() + interval '5 minutes')", jti)
            other = asyncio.ensure_future(_use(conn, jti))
            await asyncio.sleep(0.3)
            assert not other.done()  # it cannot know yet: the holder may still roll back
            await (tx.commit() if commit else tx.rollback())
            assert await asyncio.wait_for(other, 30) is expected
    finally:
        await holder.close()


async def test_of_concurrent_takeovers_of_an_expired_jti_exactly_one_wins(
        db_url: str, conn: asyncpg.Connection) -> None:
    await conn.execute("INSERT INTO genretry.used_tokens VALUES ('stale', now() - interval '1 hour')")
    conns = [await asyncpg.connect(db_url) for _ in range(8)]
    try:
        results = await asyncio.gather(*(_use(c, "stale") for c in conns))
    finally:
        for c in conns:
            await c.close()
    assert sorted(results) == [False] * 7 + [True]
    assert await _as_generator(conn, "SELECT genretry.token_seen('stale')") is True


async def test_a_flood_is_pruned_faster_than_it_grows(conn: asyncpg.Connection) -> None:
    await conn.execute("INSERT INTO genretry.used_tokens SELECT 'flood' || i, now() - interval '1 minute' "
                       "FROM generate_series(1, 1000) i")
    async with conn.transaction():
        await conn.execute("SET LOCAL ROLE genretry_generator")
        for i in range(500):
            assert await conn.fetchval("SELECT genretry.use_token($1, now() + interval '5 minutes')", f"n{i}")
    assert await conn.fetchval("SELECT count(*) FROM genretry.used_tokens WHERE jti LIKE 'flood%'") == 0
    assert await conn.fetchval("SELECT count(*) FROM genretry.used_tokens") == 500


async def test_no_other_role_calls_the_guard(db_url: str, conn: asyncpg.Connection) -> None:
    stranger = f"genretry_adv_{uuid.uuid4().hex[:8]}"
    await conn.execute(f"CREATE ROLE {stranger} NOLOGIN")
    try:
        for role in (stranger, "genretry_processor", "genretry_admin"):
            for sql in ("SELECT genretry.use_token('x', now())", "SELECT genretry.token_seen('x')"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    async with conn.transaction():
                        await conn.execute(f"SET LOCAL ROLE {role}")
                        await conn.fetchval(sql)
        daemon = await asyncpg.connect(as_daemon(db_url))  # the daemon's login role
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await daemon.fetchval("SELECT genretry.use_token('x', now())")
        finally:
            await daemon.close()
    finally:
        await conn.execute(f"DROP ROLE {stranger}")
    assert await conn.fetchval("SELECT count(*) FROM genretry.used_tokens") == 0


class _Answers:
    """A guard that has seen nothing and answers `use` with a fixed value (a guard with a bug)."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def seen(self, _jti: str) -> bool:
        return False

    async def use(self, _jti: str, _expires_at: float) -> Any:
        return self.answer


@pytest.mark.parametrize("answer", ["false", {"fresh": False}, None, 0])
async def test_a_guard_answering_no_boolean_is_never_a_pass(answer: Any) -> None:
    """'false' (a text column), a row (fetchrow instead of fetchval): truthy, but not an accepted use."""
    with pytest.raises(AuthorityError) as refused:
        await _verifier(_Answers(answer)).verify(_token(str(uuid.uuid4()), time.time() + 300), BODY)
    assert refused.value.status in (409, 503)


class _Hangs:
    def seen(self, _jti: str) -> bool:
        return False

    async def use(self, _jti: str, _expires_at: float) -> bool:
        await asyncio.Event().wait()  # its database stopped answering (no TCP reset: a black hole)
        return True


async def test_a_guard_that_hangs_does_not_hang_the_verifier() -> None:
    verify = _verifier(_Hangs(), check_timeout_s=0.5).verify(_token(str(uuid.uuid4()), time.time() + 300), BODY)
    try:
        await asyncio.wait_for(verify, 15)
    except AuthorityError as exc:
        assert exc.status == 503
    except TimeoutError:
        pytest.fail("verify() still waits for the replay guard after 15 s: no time-out anywhere")
    else:
        pytest.fail("a guard that never answered let the token through")

"""Adversary: who brings a clock or a long lease (issue 10, class 10) after caller_is_owner/caller_clock became
plpgsql and claim/next_wakeup look the owner up only when asked for more than the server's clock and
max_lease(). Non-owners: hostile clocks, hostile leases, SET ROLE games, temp objects, long transactions."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import asyncpg
import pytest

from tests.support.factories import make_generation, row
from tests.support.pg import as_daemon, as_role

pytestmark = pytest.mark.hostile
CLOCKS = [None, "infinity", "-infinity", "4713-01-01 BC", "294276-12-31", "2100-01-01", "1970-01-01"]
LEASE_OK = "SELECT lease_until <= clock_timestamp() + interval '1 hour 1 minute' FROM generation_history WHERE id = $1"
CLAIM = "SELECT * FROM genretry.claim('d1', 10, $1::text::interval, $2::text::timestamptz)"
# compares as 1 hour (a month is 30 days, a day 24 hours), adds as 524 days: 100 years are 36524 days
WIDE_LEASE = "100 years -863999 hours"


async def _last_event_age(conn: asyncpg.Connection, row_id: object) -> timedelta:
    age: timedelta = await conn.fetchval(
        "SELECT clock_timestamp() - at FROM genretry.events WHERE generation_id = $1 ORDER BY id DESC LIMIT 1", row_id)
    return age


async def test_no_hostile_clock_nor_lease_helps_the_daemon(conn: asyncpg.Connection,
                                                           daemon: asyncpg.Connection) -> None:
    for clock in [*CLOCKS, "now", "epoch"]:
        soon = await make_generation(conn, status="pending", age=timedelta(minutes=1))
        due = await make_generation(conn, due=True)
        claimed = await daemon.fetch(CLAIM, "100 years", clock)
        assert [r["id"] for r in claimed] == [due], clock
        assert await conn.fetchval(LEASE_OK, due), clock
        assert abs(await _last_event_age(conn, due)) < timedelta(minutes=1), clock
        assert (await row(conn, soon))["lease_id"] is None, clock
        await conn.execute("UPDATE generation_history SET status = 'completed' WHERE id = ANY($1::uuid[])",
                           [soon, due])


async def test_a_lease_that_compares_short_but_adds_up_long_is_cut(conn: asyncpg.Connection,
                                                                   daemon: asyncpg.Connection) -> None:
    """Interval comparison counts a month as 30 days; adding counts the calendar: 1 hour by '>' and least()."""
    row_id = await make_generation(conn, due=True)
    claimed = await daemon.fetch("SELECT * FROM genretry.claim('d1', 10, $1::text::interval)", WIDE_LEASE)
    assert [r["id"] for r in claimed] == [row_id]
    assert await conn.fetchval(LEASE_OK, row_id), (await row(conn, row_id))["lease_until"]


async def test_extend_leases_has_the_same_cap(conn: asyncpg.Connection, daemon: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, due=True)
    claimed = await daemon.fetch("SELECT * FROM genretry.claim('d1', 10, '1 minute')")
    items = f'[{{"id": "{row_id}", "lease_id": "{claimed[0]["lease_id"]}"}}]'
    await daemon.fetch("SELECT genretry.extend_leases($1::jsonb, $2::text::interval)", items, WIDE_LEASE)
    assert await conn.fetchval(LEASE_OK, row_id), (await row(conn, row_id))["lease_until"]


async def test_a_positive_lease_never_ends_before_the_claim(conn: asyncpg.Connection,
                                                            daemon: asyncpg.Connection) -> None:
    """'-1 year 8641 hours' is > 0 by comparison, -119 hours when added: it used to lease the row into the past,
    free for a second daemon at once. The lease is taken in plain seconds now: negative, refused."""
    row_id = await make_generation(conn, due=True)
    with pytest.raises(asyncpg.InvalidParameterValueError):  # a negative lease, however it is spelled
        await daemon.fetch("SELECT * FROM genretry.claim('d1', 10, '-1 year 8641 hours')")
    assert (await row(conn, row_id))["lease_id"] is None
    claimed = await daemon.fetch("SELECT * FROM genretry.claim('d2', 10, '1 minute')")
    assert [r["id"] for r in claimed] == [row_id]  # taken once, by a claim with a real lease


async def test_a_retry_after_is_capped_and_never_negative_however_it_is_spelled(
        conn: asyncpg.Connection, daemon: asyncpg.Connection) -> None:
    """record_delivery's Retry-After: at most an hour, and never a deadline in the past (an immediate retry)."""
    for after in ("1 month -719 hours", WIDE_LEASE, "-1 year 8641 hours"):
        row_id = await make_generation(conn, due=True)
        claimed = await daemon.fetch("SELECT * FROM genretry.claim('d1', 10, '1 minute')")
        await daemon.fetch("SELECT * FROM genretry.record_delivery($1, $2, 'unreachable', 503, '{}'::jsonb, "
                           "$3::text::interval)", row_id, claimed[0]["lease_id"], after)
        ahead = await conn.fetchval("SELECT deadline_at - clock_timestamp() FROM generation_history WHERE id = $1",
                                    row_id)
        assert timedelta(seconds=1) < ahead <= timedelta(hours=1), (after, ahead)
        await conn.execute("UPDATE generation_history SET status = 'completed' WHERE id = $1", row_id)


async def test_next_wakeup_ignores_a_non_owner_s_clock(conn: asyncpg.Connection, daemon: asyncpg.Connection) -> None:
    await make_generation(conn, status="pending", age=timedelta(minutes=1))
    await conn.execute("UPDATE generation_history SET deadline_at = now() + interval '2 hours'")
    owner = await conn.fetchval("SELECT genretry.next_wakeup()")
    assert owner == await conn.fetchval("SELECT deadline_at FROM generation_history")
    assert await conn.fetchval("SELECT genretry.next_wakeup('2100-01-01')") != owner  # the owner's clock counts
    for clock in CLOCKS:
        assert await daemon.fetchval("SELECT genretry.next_wakeup($1::text::timestamptz)", clock) == owner, clock
        admin = await as_role(conn, "genretry_admin", "SELECT genretry.next_wakeup($1::text::timestamptz)", clock)
        assert admin[0][0] == owner, clock


async def test_a_long_transaction_keeps_only_its_own_span(conn: asyncpg.Connection,
                                                          daemon: asyncpg.Connection) -> None:
    """Inside a transaction, a clock between now() and clock_timestamp() is kept (documented); a microsecond
    before now(), or after the clock, is replaced by the server's clock; the lease never passes max_lease()."""
    ids = [await make_generation(conn, due=True) for _ in range(3)]
    async with daemon.transaction():
        await daemon.execute("SELECT pg_sleep(1.2)")
        span = await daemon.fetchrow("SELECT now(), clock_timestamp()")
        assert span is not None
        start, clock = span
        for at in (start + timedelta(seconds=0.5), start - timedelta(microseconds=1), clock + timedelta(hours=1)):
            claimed = await daemon.fetch("SELECT * FROM genretry.claim('d1', 1, '1 hour', $1)", at)
            assert len(claimed) == 1
    ats = [await conn.fetchval("SELECT at FROM genretry.events WHERE generation_id = $1", i) for i in ids]
    assert ats[0] == start + timedelta(seconds=0.5)
    assert clock <= ats[1] < clock + timedelta(seconds=30) and clock <= ats[2] < clock + timedelta(seconds=30)
    for i in ids:
        assert await conn.fetchval(LEASE_OK, i)


async def test_set_role_games_on_the_owner_s_session(conn: asyncpg.Connection, db_url: str) -> None:
    owned = "SELECT genretry.caller_is_owner()"
    assert await conn.fetchval(owned)  # plan cached as the owner first
    await conn.execute("SET ROLE genretry_admin")
    assert await conn.fetchval(owned) is False
    await conn.execute("SET ROLE NONE")
    assert await conn.fetchval(owned)
    due = await make_generation(conn, due=True)
    await conn.execute("SET ROLE genretry_processor")
    await conn.fetch(CLAIM, "100 years", "2100-01-01")
    await conn.execute("RESET ROLE")
    assert await conn.fetchval(LEASE_OK, due)
    async with conn.transaction():
        await conn.execute("SET LOCAL ROLE genretry_admin")
        assert await conn.fetchval(owned) is False
    assert await conn.fetchval(owned)
    # a superuser becoming the daemon's login role: session_user is the daemon, no SET ROLE in effect
    other = await asyncpg.connect(db_url)
    try:
        await other.execute("SET SESSION AUTHORIZATION genretry_test_daemon")
        due = await make_generation(conn, due=True)
        await other.fetch(CLAIM, "100 years", "2100-01-01")
        assert await conn.fetchval(LEASE_OK, due)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await other.execute("SET ROLE postgres")
    finally:
        await other.close()


async def test_a_member_of_a_non_superuser_owner_is_the_owner_and_nobody_else(conn: asyncpg.Connection) -> None:
    tag = uuid.uuid4().hex[:8]
    own, member, out = f"adv_own_{tag}", f"adv_mem_{tag}", f"adv_out_{tag}"
    before = await conn.fetchval("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'genretry'")
    await conn.execute(f"CREATE ROLE {own} NOLOGIN; CREATE ROLE {member} NOLOGIN IN ROLE {own}, genretry_processor;"
                       f"CREATE ROLE {out} NOLOGIN IN ROLE genretry_processor; ALTER SCHEMA genretry OWNER TO {own}")
    try:
        mine, theirs = await make_generation(conn, due=True), await make_generation(conn, due=True)
        await as_role(conn, member, "SELECT * FROM genretry.claim('m', 1, '3 hours')")
        await as_role(conn, out, "SELECT * FROM genretry.claim('o', 1, '3 hours', '2100-01-01')")
        leases = {r["id"]: r["lease_until"] - r["now"] for r in await conn.fetch(
            "SELECT id, lease_until, now() FROM generation_history WHERE id = ANY($1::uuid[])", [mine, theirs])}
        assert leases[mine] > timedelta(hours=2, minutes=50)  # the member keeps its lease
        assert leases[theirs] <= timedelta(hours=1, minutes=1)  # the other role's is cut
    finally:
        await conn.execute(f"RESET ROLE; ALTER SCHEMA genretry OWNER TO {before}; "
                           f"DROP ROLE {member}; DROP ROLE {out}; DROP ROLE {own}")


async def test_temp_objects_and_a_hostile_search_path_change_nothing(conn: asyncpg.Connection,
                                                                     daemon: asyncpg.Connection) -> None:
    await daemon.execute("""
        CREATE FUNCTION pg_temp.pg_has_role(name, oid, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
        CREATE FUNCTION pg_temp.current_setting(text) RETURNS text LANGUAGE sql AS 'SELECT ''postgres''::text';
        CREATE FUNCTION pg_temp.now() RETURNS timestamptz LANGUAGE sql AS 'SELECT ''2100-01-01''::timestamptz';
        CREATE FUNCTION pg_temp.clock_timestamp() RETURNS timestamptz LANGUAGE sql
            AS 'SELECT ''2100-01-01''::timestamptz';
        CREATE TEMP TABLE pg_namespace (nspname name, nspowner oid);
        INSERT INTO pg_temp.pg_namespace SELECT 'genretry', oid FROM pg_catalog.pg_roles WHERE rolname = current_user;
        SET search_path = pg_temp, public, pg_catalog;
        SET genretry.role = 'postgres';
        SET genretry.quiet = 'off'""")
    due = await make_generation(conn, due=True)
    await make_generation(conn, status="pending", age=timedelta(minutes=1))
    claimed = await daemon.fetch("SELECT * FROM genretry.claim('d1', 10, '100 years', pg_temp.now())")
    assert [r["id"] for r in claimed] == [due]
    assert await conn.fetchval(LEASE_OK, due)
    assert abs(await _last_event_age(conn, due)) < timedelta(minutes=1)
    wake = await daemon.fetchval("SELECT genretry.next_wakeup(pg_temp.now()) - pg_catalog.clock_timestamp()")
    assert wake < timedelta(hours=1)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await daemon.execute("SELECT pg_catalog.set_config('role', 'postgres', false)")


async def test_direct_calls_as_each_role(conn: asyncpg.Connection, daemon: asyncpg.Connection) -> None:
    for role in ("genretry_admin",):
        assert (await as_role(conn, role, "SELECT genretry.caller_is_owner()"))[0][0] is False
        for clock in CLOCKS:
            got = await as_role(conn, role, "SELECT clock_timestamp() - genretry.caller_clock($1::text::timestamptz)",
                            clock)
            assert abs(got[0][0]) < timedelta(seconds=5), (role, clock)
    for sql in ("SELECT genretry.caller_is_owner()", "SELECT genretry.caller_clock('2100-01-01')"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await daemon.fetchval(sql)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await as_role(conn, "genretry_generator", sql)


async def test_generators_and_admins_still_behave_under_hostile_clocks(conn: asyncpg.Connection) -> None:
    for clock in CLOCKS:
        gen = await make_generation(conn, age=timedelta(minutes=5))
        assert (await as_role(conn, "genretry_generator", "SELECT genretry.heartbeat($1, 0, $2::text::timestamptz)",
                          gen, clock))[0][0], clock
        assert await conn.fetchval("SELECT abs(extract(epoch FROM heartbeat_at - now())) < 60 "
                                   "FROM generation_history WHERE id = $1", gen), clock
        await as_role(conn, "genretry_generator",
                  "SELECT genretry.finish($1, 0, 'failed', 'x', $2::text::timestamptz)", gen, clock)
        assert abs(await _last_event_age(conn, gen)) < timedelta(minutes=1), clock
        for call in ("genretry.reset($1, false, $2::text::timestamptz)",
                     "genretry.retry_now($1, false, $2::text::timestamptz)",
                     "genretry.give_up($1, 'no', false, $2::text::timestamptz)"):
            await as_role(conn, "genretry_admin", f"SELECT {call}", gen, clock)
            assert abs(await _last_event_age(conn, gen)) < timedelta(minutes=1), (call, clock)
            assert await conn.fetchval("SELECT coalesce(deadline_at <= now() + interval '8 minutes', true) "
                                       "FROM generation_history WHERE id = $1", gen), (call, clock)


async def test_concurrent_hostile_claims_take_each_row_once(conn: asyncpg.Connection, db_url: str) -> None:
    ids = {await make_generation(conn, due=True) for _ in range(40)}
    clocks = ["infinity", None, "2100-01-01", "now"]
    daemons = [await asyncpg.connect(as_daemon(db_url)) for _ in range(4)]
    try:
        results = await asyncio.gather(
            *(d.fetch(CLAIM, "100 years", c) for d, c in zip(daemons, clocks, strict=True)),
            conn.fetch("SELECT * FROM genretry.claim('o', 10, '1 minute', now() - interval '1 year')"))
    finally:
        for d in daemons:
            await d.close()
    taken = [r["id"] for result in results[:4] for r in result]
    assert len(taken) == len(set(taken)) == 40 and set(taken) == ids  # the owner's clock, a year back, finds nothing
    assert results[4] == []
    assert await conn.fetchval("SELECT bool_and(lease_until <= now() + interval '1 hour 1 minute') "
                               "FROM generation_history")

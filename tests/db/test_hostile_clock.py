"""Issue 10, class 10: least privilege in the SQL API. Only the owner (and superusers) bring a clock or a
long lease: the daemon's role, the generators' role and the admins' role get the server's clock and leases
of at most genretry.max_lease(). Tests that need a clock keep it by running as the owner."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from processor.contracts import CLAIM, NEXT
from tests.support.factories import make_generation, row
from tests.support.pg import as_role

pytestmark = pytest.mark.hostile
OWNER_CALLS = "SELECT pg_stat_get_xact_function_calls('genretry.caller_is_owner'::regproc)"


async def _event_age(conn: asyncpg.Connection, row_id: object, event: str) -> timedelta:
    age: timedelta = await conn.fetchval(
        "SELECT now() - max(at) FROM genretry.events WHERE generation_id = $1 AND event = $2", row_id, event)
    return age


async def test_the_daemon_cannot_claim_early_nor_lease_for_a_century(conn: asyncpg.Connection,
                                                                      daemon: asyncpg.Connection) -> None:
    soon = await make_generation(conn, status="pending", age=timedelta(minutes=1))  # due in a minute
    due = await make_generation(conn, due=True)
    claimed = await daemon.fetch(
        "SELECT * FROM genretry.claim('d1', 10, '100 years', now() + interval '7 minutes')")
    assert [r["id"] for r in claimed] == [due]
    r = await row(conn, due)
    assert r["lease_until"] - r["deadline_at"] == timedelta(0)
    assert await conn.fetchval("SELECT lease_until <= now() + interval '1 hour 1 minute' FROM generation_history "
                               "WHERE id = $1", due)
    assert (await row(conn, soon))["lease_id"] is None
    assert await _event_age(conn, due, "claimed") < timedelta(minutes=1)  # not dated 7 minutes ahead


async def test_the_daemon_cannot_back_date_the_audit_log(conn: asyncpg.Connection,
                                                         daemon: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, due=True)
    claimed = await daemon.fetch("SELECT * FROM genretry.claim('d1', 10, '1 minute', '2021-01-01')")
    assert [r["id"] for r in claimed] == [row_id]
    await daemon.fetch(
        "SELECT * FROM genretry.record_deliveries($1::jsonb, 'd1', '2021-01-01')",
        f'[{{"id": "{row_id}", "lease_id": "{claimed[0]["lease_id"]}", "outcome": "accepted", "http_status": 202}}]')
    ages = await conn.fetch("SELECT now() - at AS age FROM genretry.events WHERE generation_id = $1", row_id)
    assert len(ages) == 2 and all(abs(a["age"]) < timedelta(minutes=1) for a in ages)


async def test_the_daemon_s_wake_up_is_on_the_server_clock(conn: asyncpg.Connection,
                                                           daemon: asyncpg.Connection) -> None:
    # a paused generator with a due row: on the server's clock, the wake-up is the end of the pause
    await conn.execute("INSERT INTO genretry.generator_state (generator, state, open_until) "
                       "VALUES ('generate-php-website', 'open', now() + interval '10 minutes')")
    await make_generation(conn, due=True, generator="generate-php-website")
    owner = await conn.fetchval("SELECT genretry.next_wakeup()")
    assert owner == await conn.fetchval("SELECT open_until FROM genretry.generator_state")
    assert await daemon.fetchval("SELECT genretry.next_wakeup('2100-01-01')") == owner


async def test_a_generator_cannot_push_a_deadline_to_infinity(conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, age=timedelta(minutes=5))
    assert (await as_role(conn, "genretry_generator", "SELECT genretry.heartbeat($1, 0, 'infinity')", row_id))[0][0]
    assert await conn.fetchval(
        """SELECT heartbeat_at <= now() + interval '1 minute' AND deadline_at <= now() + interval '8 minutes'
           FROM generation_history WHERE id = $1""", row_id)
    await as_role(conn, "genretry_generator", "SELECT genretry.heartbeat($1, 0, '2100-01-01')", row_id)
    assert await conn.fetchval(
        "SELECT deadline_at <= now() + interval '8 minutes' FROM generation_history WHERE id = $1", row_id)
    await as_role(conn, "genretry_generator", "SELECT genretry.finish($1, 0, 'completed', NULL, '2021-01-01')", row_id)
    assert abs(await _event_age(conn, row_id, "finished")) < timedelta(minutes=1)


async def test_an_admin_gets_the_server_clock_too(conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn)
    await as_role(conn, "genretry_admin", "SELECT genretry.retry_now($1, false, 'infinity')", row_id)
    assert await conn.fetchval("SELECT deadline_at <= now() FROM generation_history WHERE id = $1", row_id)
    assert abs(await _event_age(conn, row_id, "retry_now")) < timedelta(minutes=1)


async def test_the_owner_keeps_its_clock(conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, status="pending", age=timedelta(minutes=1))
    claimed = await conn.fetch("SELECT * FROM genretry.claim('w', 10, '2 hours', now() + interval '7 minutes')")
    assert [r["id"] for r in claimed] == [row_id]
    assert await conn.fetchval(
        "SELECT lease_until > now() + interval '2 hours 6 minutes' FROM generation_history WHERE id = $1", row_id)


async def test_a_long_lease_alone_is_cut_for_the_daemon(conn: asyncpg.Connection,
                                                    daemon: asyncpg.Connection) -> None:
    """On the server's clock, a lease over genretry.max_lease() is still cut: the owner check is skipped only
    when the call asks for nothing the owner alone may have."""
    row_id = await make_generation(conn, due=True)
    claimed = await daemon.fetch("SELECT * FROM genretry.claim('d1', 10, '100 years')")
    assert [r["id"] for r in claimed] == [row_id]
    assert await conn.fetchval("SELECT lease_until <= now() + interval '1 hour 1 minute' FROM generation_history "
                               "WHERE id = $1", row_id)


async def test_the_daemon_s_calls_make_no_owner_look_up(conn: asyncpg.Connection) -> None:
    """The daemon's claim and wake-up look, as it sends them (server clock, a lease within the limit), do not
    run genretry.caller_is_owner: its catalog look-up was about 0.17 ms of an idle daemon's claim (issue 13).
    The same claim asking for a long lease does run it (the counter works)."""
    await make_generation(conn, due=True)
    async with conn.transaction():
        await conn.execute("SET LOCAL track_functions = 'all'")
        await conn.fetch(CLAIM, "d1", 10, 180.0)
        await conn.fetchval(NEXT)
        assert await conn.fetchval(OWNER_CALLS) is None
        await conn.fetch(CLAIM, "d1", 10, 7200.0)
        assert await conn.fetchval(OWNER_CALLS) == 1


async def test_the_daemon_cannot_push_a_recorded_deadline_with_its_own_clock(conn: asyncpg.Connection,
                                                                             daemon: asyncpg.Connection) -> None:
    """record_deliveries from the daemon's role runs on the server's clock: a clock a year ahead (or in
    2021) cannot park a row for a year, nor make it due at once; a hostile jitter cannot stretch a backoff."""
    for clock, jitter in (("now() + interval '1 year'", "1e9"), ("'2021-01-01'::timestamptz", "-1e9")):
        row_id = await make_generation(conn, due=True)
        claimed = await daemon.fetch("SELECT * FROM genretry.claim('d1', 10, '1 minute')")
        assert [r["id"] for r in claimed] == [row_id]
        await daemon.fetch(
            f"SELECT * FROM genretry.record_delivery($1, $2, 'server_error', 500, '{{}}'::jsonb, NULL, 'd1', "
            f"{clock}, {jitter})", row_id, claimed[0]["lease_id"])
        ahead = await conn.fetchval("SELECT deadline_at - now() FROM generation_history WHERE id = $1", row_id)
        assert timedelta(seconds=1) < ahead < timedelta(minutes=6), (clock, ahead)  # a first backoff: 5 s ± 20 %


async def test_counters_at_the_integer_maximum_do_not_break_recording(conn: asyncpg.Connection,
                                                                     daemon: asyncpg.Connection) -> None:
    """A row (or a generator's circuit state) whose counters someone set to the integer maximum: recording
    an outcome fails the row with its message instead of raising 'integer out of range' forever."""
    row_id = await make_generation(conn, due=True)
    await conn.execute("ALTER TABLE generation_history DISABLE TRIGGER USER")
    await conn.execute("UPDATE generation_history SET dispatch_failures = 2147483647 WHERE id = $1", row_id)
    await conn.execute("ALTER TABLE generation_history ENABLE TRIGGER USER")
    claimed = await daemon.fetch("SELECT * FROM genretry.claim('d1', 10, '1 minute')")
    assert [r["id"] for r in claimed] == [row_id]
    await daemon.fetch("SELECT * FROM genretry.record_delivery($1, $2, 'unreachable')", row_id,
                       claimed[0]["lease_id"])
    r = await row(conn, row_id)
    assert r["status"] == "failed" and r["error_message"].startswith("generator unreachable")

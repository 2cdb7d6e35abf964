"""Issue 10, classes 3 and 11: one hostile row never stops the claim, the views or the metrics; a lease is a lease.

Rows "already in the table" are written with the row triggers disabled, as the table's owner: that is what
an adopted table, a restored dump or a write that bypasses the trigger leaves behind.
"""

from __future__ import annotations

import contextlib
import math
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.support.factories import make_generation, one, row

pytestmark = pytest.mark.hostile

# What the daemon runs (processor/scheduler.py), as its own role.
CLAIM = "SELECT * FROM genretry.claim($1, $2, $3::float8 * interval '1 second')"
NEXT = "SELECT extract(epoch FROM genretry.next_wakeup(clock_timestamp()) - clock_timestamp())::float8"
GAUGES = "SELECT * FROM genretry.metrics_snapshot()"

# (name, SET clause written with the triggers off); each row is live and has spent its retries.
HOSTILE = [
    ("heartbeat-infinity-retry-now", "heartbeat_at = 'infinity', retry_phase = 'requested', "
                                     "deadline_at = now() - interval '1 second'"),
    ("heartbeat-infinity", "heartbeat_at = 'infinity', deadline_at = now() - interval '1 second'"),
    ("heartbeat-minus-infinity", "heartbeat_at = '-infinity', status_changed_at = '-infinity', "
                                 "deadline_at = now() - interval '1 second'"),
    ("status-changed-infinity", "status_changed_at = 'infinity', deadline_at = now() - interval '1 second'"),
    ("heartbeat-year-294276", "heartbeat_at = '294276-12-31 00:00:00+00', deadline_at = now() - interval '1 second'"),
    ("stale-for-huge", "stale_for = interval '170000000 years', deadline_at = now() - interval '1 second'"),
    ("deadline-minus-infinity", "deadline_at = '-infinity'"),
    ("deadline-infinity", "deadline_at = 'infinity'"),
    ("deadline-year-294276", "deadline_at = '294276-12-31 00:00:00+00'"),
    ("deadline-null", "deadline_at = NULL"),
    ("deadline-4713-bc", "deadline_at = '4713-01-01 00:00:00+00 BC', heartbeat_at = '4713-01-01 00:00:00+00 BC'"),
    ("attempt-max", "attempt = 2147483647, retry_count = 0, status_changed_at = now() - interval '1 hour', "
                    "deadline_at = now() - interval '1 second'"),
    ("lease-infinity", "lease_until = 'infinity', lease_id = gen_random_uuid(), retry_phase = 'leased', "
                       "deadline_at = now() - interval '1 second'"),
]


@contextlib.asynccontextmanager
async def triggers_off(conn: asyncpg.Connection) -> AsyncIterator[None]:
    await conn.execute("ALTER TABLE generation_history DISABLE TRIGGER USER")
    try:
        yield
    finally:
        await conn.execute("ALTER TABLE generation_history ENABLE TRIGGER USER")


async def hostile_row(conn: asyncpg.Connection, assignments: str) -> uuid.UUID:
    row_id = await make_generation(conn, retry_count=2)
    async with triggers_off(conn):
        await conn.execute(f"UPDATE generation_history SET {assignments} WHERE id = $1", row_id)
    return row_id


async def stuck_ids(conn: asyncpg.Connection) -> set[uuid.UUID]:
    return {r["id"] for r in await conn.fetch("SELECT id, reason FROM genretry.stuck")}


@pytest.mark.parametrize("assignments", [h[1] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
async def test_one_hostile_row_never_stops_the_claim_the_views_or_the_metrics(
        conn: asyncpg.Connection, daemon: asyncpg.Connection, assignments: str) -> None:
    ordinary = {await make_generation(conn, due=True) for _ in range(20)}
    bad = await hostile_row(conn, assignments)

    # the admin's views and the daemon's gauges and wake-up, before the claim touches anything
    overview = await conn.fetch("SELECT * FROM genretry.overview")
    assert sum(r["rows"] for r in overview) == 21
    assert bad in await stuck_ids(conn), "a hostile row is shown in genretry.stuck, never lost"
    gauges = await daemon.fetchrow(GAUGES)
    assert gauges["due"] >= 20 and math.isfinite(gauges["oldest_overdue_s"])
    wake = await daemon.fetchval(NEXT)
    assert wake is not None and math.isfinite(wake)

    claimed = await daemon.fetch(CLAIM, "d1", 100, 180.0)
    assert ordinary <= {r["id"] for r in claimed}
    assert not any(await daemon.fetch(CLAIM, "d2", 100, 180.0))  # nothing left that may be claimed

    # afterwards: the row is failed with a reason, or still visible in genretry.stuck
    # (or held by its own sign of life for a bounded time: at most an hour of clock skew beyond stale_for)
    status, held = await one(conn,
        """SELECT status, deadline_at BETWEEN now() AND now() + stale_for + interval '2 hours'
           FROM generation_history WHERE id = $1""", bad)
    assert status == "failed" or held or bad in await stuck_ids(conn)
    await conn.fetch("SELECT * FROM genretry.overview")
    assert math.isfinite((await daemon.fetchrow(GAUGES))["oldest_overdue_s"])
    wake = await daemon.fetchval(NEXT)
    assert wake is None or math.isfinite(wake)


@pytest.mark.parametrize("column", ["heartbeat_at", "status_changed_at", "deadline_at", "lease_until"])
@pytest.mark.parametrize("value", ["infinity", "-infinity", "294276-12-30 00:00:00+00", "4713-01-01 00:00:00+00 BC"])
async def test_the_trigger_keeps_timestamps_within_a_window_around_the_server_clock(
        conn: asyncpg.Connection, column: str, value: str) -> None:
    row_id = await make_generation(conn)
    await conn.execute(f"UPDATE generation_history SET {column} = $2::text::timestamptz WHERE id = $1", row_id, value)
    inside = await conn.fetchval(
        f"""SELECT {column} IS NULL OR ({column} > now() - interval '101 years'
                                        AND {column} < now() + stale_for + interval '2 hours')
            FROM generation_history WHERE id = $1""", row_id)
    assert inside
    assert await conn.fetchval(
        """SELECT deadline_at > now() - interval '101 years' AND deadline_at < now() + stale_for + interval '2 hours'
           FROM generation_history WHERE id = $1""", row_id)


async def test_a_new_row_with_infinite_timestamps_gets_a_finite_deadline(conn: asyncpg.Connection) -> None:
    row_id = await conn.fetchval(
        """INSERT INTO generation_history (user_id, status, heartbeat_at, status_changed_at, deadline_at)
           VALUES (gen_random_uuid(), 'generating', 'infinity', '-infinity', 'infinity') RETURNING id""")
    r = await row(conn, row_id)
    assert all(r[c] is not None and r[c].year < 3000 for c in ("heartbeat_at", "status_changed_at", "deadline_at"))


# --- class 11: a lease is a lease ----------------------------------------------------------------------------

async def test_a_write_to_deadline_at_never_claims_a_leased_row_again(conn: asyncpg.Connection,
                                                                      daemon: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, due=True)
    first = await daemon.fetch(CLAIM, "d1", 10, 180.0)
    assert [r["id"] for r in first] == [row_id]
    await conn.execute("UPDATE generation_history SET deadline_at = now() - interval '1 hour' WHERE id = $1", row_id)
    assert await daemon.fetch(CLAIM, "d2", 10, 180.0) == []
    r = await row(conn, row_id)
    assert r["deadline_at"] >= r["lease_until"]  # the daemon's wake-up is the lease end, not a spin
    assert (r["leased_by"], r["lease_id"]) == ("d1", first[0]["lease_id"])


async def test_a_leased_row_written_behind_the_triggers_back_is_not_claimed_either(
        conn: asyncpg.Connection, daemon: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, due=True)
    first = await daemon.fetch(CLAIM, "d1", 10, 180.0)
    async with triggers_off(conn):
        await conn.execute(
            "UPDATE generation_history SET deadline_at = now() - interval '1 hour', retry_phase = 'delivered' "
            "WHERE id = $1", row_id)
    assert await daemon.fetch(CLAIM, "d2", 10, 180.0) == []
    r = await row(conn, row_id)
    assert r["lease_id"] == first[0]["lease_id"] and r["deadline_at"] == r["lease_until"]
    wake = await daemon.fetchval(NEXT)
    assert wake is not None and wake > 60  # the lease end (3 min), not a past deadline to spin on


async def test_a_lease_that_ended_is_claimable_again(conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, due=True)
    await conn.fetch("SELECT * FROM genretry.claim('w1', 10, '1 minute')")
    await conn.execute("UPDATE generation_history SET deadline_at = now() - interval '1 hour' WHERE id = $1", row_id)
    later = await conn.fetch("SELECT * FROM genretry.claim('w2', 10, '1 minute', now() + interval '61 seconds')")
    assert [r["id"] for r in later] == [row_id]

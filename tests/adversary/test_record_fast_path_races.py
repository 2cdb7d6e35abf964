"""Races and roles against record_deliveries' fast path: rows and circuit rows locked or changed by other
transactions, the daemon's role and the server clock (see test_record_fast_path_attacks.py for the contract)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.support.factories import make_generation, one, row
from tests.support.pg import DAEMON_ROLE
from tests.support.record_twins import CALLS, CLAIM, COLUMNS, GEN, RECORD_MANY, T, claimed, element

pytestmark = pytest.mark.hostile

@pytest.fixture
async def admin(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(db_url)
    yield connection
    await connection.close()


@pytest.mark.parametrize("odd", [
    {"http_status": "abc"}, {"http_status": 99999999999}, {"lease_id": "not-a-lease"},
    {"retry_after_s": 1e300}, {"retry_after_s": "soon"},
], ids=["http_status abc", "http_status beyond int", "lease not a uuid", "retry_after_s 1e300", "retry_after_s soon"])
async def test_a_locked_row_with_an_odd_element_comes_back_locked(conn: asyncpg.Connection,
                                                                  admin: asyncpg.Connection,
                                                                  odd: dict[str, Any]) -> None:
    # Before dbd612e a locked row's element was answered 'locked' before any of its fields was read: the
    # daemon records it again later. The batch must not fail because of it.
    rows = await claimed(conn, 2)
    batch = [element(*rows[0], {}), element(*rows[1], odd)]
    async with admin.transaction():
        await admin.execute("SELECT 1 FROM generation_history WHERE id = $1 FOR UPDATE", rows[1][0])
        verdicts = {r["id"]: r["result"] for r in await conn.fetch(RECORD_MANY, json.dumps(batch), T)}
    assert verdicts == {rows[0][0]: "recorded", rows[1][0]: "locked"}


async def test_a_locked_row_records_nothing_then_records_once(conn: asyncpg.Connection,
                                                              admin: asyncpg.Connection) -> None:
    rows = await claimed(conn, 3)
    batch = [element(i, lease, {}) for i, lease in rows]
    async with admin.transaction():
        await admin.execute("SELECT 1 FROM generation_history WHERE id = $1 FOR NO KEY UPDATE", rows[1][0])
        verdicts = {r["id"]: r["result"] for r in await conn.fetch(RECORD_MANY, json.dumps(batch), T)}
    assert verdicts == {rows[0][0]: "recorded", rows[1][0]: "locked", rows[2][0]: "recorded"}
    assert await conn.fetchval("SELECT count(*) FROM genretry.events WHERE generation_id = $1 "
                               "AND event <> 'claimed'", rows[1][0]) == 0
    assert (await row(conn, rows[1][0]))["lease_id"] == rows[1][1]
    again = {r["id"]: r["result"] for r in await conn.fetch(RECORD_MANY, json.dumps(batch), T)}
    assert again == {rows[0][0]: "stale", rows[1][0]: "recorded", rows[2][0]: "stale"}
    assert [r["retry_count"] for r in [await row(conn, i) for i, _ in rows]] == [1, 1, 1]


@pytest.mark.parametrize("lock", ["FOR SHARE", "FOR KEY SHARE"])
async def test_a_share_locked_row_is_locked_too(conn: asyncpg.Connection, admin: asyncpg.Connection,
                                                lock: str) -> None:
    rows = await claimed(conn, 1)
    async with admin.transaction():
        await admin.execute(f"SELECT 1 FROM generation_history WHERE id = $1 {lock}", rows[0][0])
        verdicts = [r["result"] for r in await conn.fetch(RECORD_MANY, json.dumps([element(*rows[0], {})]), T)]
    assert verdicts == ["locked"]
    assert (await row(conn, rows[0][0]))["retry_count"] == 0


async def test_a_generator_finishing_the_row_in_an_open_transaction(conn: asyncpg.Connection,
                                                                    admin: asyncpg.Connection) -> None:
    rows = await claimed(conn, 2)
    r = await row(conn, rows[0][0])
    async with admin.transaction():
        await admin.execute("SELECT genretry.finish($1, $2, 'completed', NULL)", rows[0][0], r["attempt"])
        verdicts = {v["id"]: v["result"] for v in await conn.fetch(
            RECORD_MANY, json.dumps([element(i, lease, {}) for i, lease in rows]), T)}
    assert verdicts == {rows[0][0]: "locked", rows[1][0]: "recorded"}
    # recorded again after the generator committed: a finished row's retry is still counted (slow path)
    again = await one(conn, RECORD_MANY, json.dumps([element(*rows[0], {})]), T)
    assert (again["result"], again["status"], again["retry_count"]) == ("recorded", "completed", 1)
    assert (await row(conn, rows[0][0]))["status"] == "completed"


async def test_a_row_another_daemon_re_claimed(conn: asyncpg.Connection, admin: asyncpg.Connection) -> None:
    rows = await claimed(conn, 1)
    # the lease ran out and another daemon claimed the row again (committed): ours is stale
    await admin.execute("UPDATE generation_history SET lease_id = gen_random_uuid() WHERE id = $1", rows[0][0])
    before = await row(conn, rows[0][0])
    v = await one(conn, RECORD_MANY, json.dumps([element(*rows[0], {})]), T)
    assert v["result"] == "stale"
    after = await row(conn, rows[0][0])
    kept = (*COLUMNS, "lease_id")
    assert {c: after[c] for c in kept} == {c: before[c] for c in kept}
    assert [e["event"] for e in await conn.fetch(
        "SELECT event FROM genretry.events WHERE generation_id = $1 ORDER BY id", rows[0][0])] == [
        "claimed", "stale_record"]


async def test_a_row_another_daemon_holds_uncommitted(conn: asyncpg.Connection, admin: asyncpg.Connection) -> None:
    rows = await claimed(conn, 1)
    async with admin.transaction():
        await admin.execute("UPDATE generation_history SET lease_id = gen_random_uuid() WHERE id = $1", rows[0][0])
        v = await one(conn, RECORD_MANY, json.dumps([element(*rows[0], {})]), T)
        assert v["result"] == "locked"
    assert (await row(conn, rows[0][0]))["retry_count"] == 0


# --- (5) the circuit changed by someone else ---------------------------------------------------------------


async def test_a_circuit_opened_and_committed_before_the_batch(conn: asyncpg.Connection,
                                                               admin: asyncpg.Connection) -> None:
    rows = await claimed(conn, 2)
    await admin.execute("INSERT INTO genretry.generator_state (generator, state, consecutive_failures, pauses, "
                        "open_until, reason) VALUES ($1, 'open', 5, 1, $2, 'timeout from x')", GEN, T)
    await conn.execute("SET track_functions = 'pl'")
    async with conn.transaction():
        verdicts = await conn.fetch(RECORD_MANY, json.dumps([element(i, lease, {}) for i, lease in rows]), T)
        assert await conn.fetchval(CALLS) == 2, "the accepted outcomes of a paused generator go one by one"
    assert [(v["result"], v["circuit"]) for v in verdicts] == [("recorded", None)] * 2
    st = await one(conn, "SELECT state, consecutive_failures, pauses FROM genretry.generator_state")
    assert tuple(st) == ("open", 5, 1)


async def test_a_circuit_row_held_by_an_admin_does_not_block_nor_get_lost(conn: asyncpg.Connection,
                                                                          admin: asyncpg.Connection) -> None:
    rows = await claimed(conn, 2)
    await conn.execute("INSERT INTO genretry.generator_state (generator) VALUES ($1)", GEN)
    await conn.execute("SET lock_timeout = '20s'")  # never decides the outcome: nothing here may wait
    async with admin.transaction():
        await admin.execute("UPDATE genretry.generator_state SET consecutive_failures = 3 WHERE generator = $1",
                            GEN)
        verdicts = await conn.fetch(RECORD_MANY, json.dumps([element(i, lease, {}) for i, lease in rows]), T)
    assert [v["result"] for v in verdicts] == ["recorded"] * 2
    st = await one(conn, "SELECT state, consecutive_failures FROM genretry.generator_state")
    assert tuple(st) == ("closed", 3)


async def test_failures_committed_by_another_daemon_are_reset_by_an_accepted(conn: asyncpg.Connection,
                                                                             admin: asyncpg.Connection) -> None:
    rows = await claimed(conn, 2)
    await admin.execute("INSERT INTO genretry.generator_state (generator, consecutive_failures) VALUES ($1, 4)", GEN)
    await conn.fetch(RECORD_MANY, json.dumps([element(*rows[0], {})]), T)
    assert await conn.fetchval("SELECT consecutive_failures FROM genretry.generator_state") == 0


# --- (6) the role and the clock ----------------------------------------------------------------------------


@pytest.mark.parametrize("claimed_clock", ["2100-01-01", "2001-01-01", "infinity", "-infinity"])
async def test_the_daemon_records_on_the_server_clock(conn: asyncpg.Connection, daemon: asyncpg.Connection,
                                                      claimed_clock: str) -> None:
    ids = [await make_generation(conn, due=True) for _ in range(2)]
    leases = {r["id"]: r["lease_id"] for r in await daemon.fetch("SELECT * FROM genretry.claim('d', 10)")}
    batch = [{"id": str(i), "lease_id": str(leases[i]), "outcome": o, "http_status": 202}
             for i, o in zip(ids, ["accepted", "timeout"], strict=True)]
    verdicts = await daemon.fetch("SELECT * FROM genretry.record_deliveries($1::jsonb, 'd', $2::text::timestamptz)",
                                  json.dumps(batch), claimed_clock)
    assert [v["result"] for v in verdicts] == ["recorded", "recorded"]
    for row_id in ids:
        ahead = await conn.fetchval("SELECT deadline_at - now() FROM generation_history WHERE id = $1", row_id)
        assert timedelta(minutes=6) < ahead < timedelta(minutes=8)  # now + stale_after (7 minutes)
        ages = await conn.fetch("SELECT now() - at AS age, actor, worker FROM genretry.events "
                                "WHERE generation_id = $1", row_id)
        assert all(abs(a["age"]) < timedelta(minutes=1) for a in ages)
        assert {(a["actor"], a["worker"]) for a in ages} == {(DAEMON_ROLE, "d")}


async def test_set_role_to_the_daemon_s_role_gets_the_server_clock(conn: asyncpg.Connection) -> None:
    rows = await claimed(conn, 1, now=datetime.now(UTC) + timedelta(minutes=1))
    async with conn.transaction():
        await conn.execute("SET LOCAL ROLE genretry_processor")
        v = await one(conn, RECORD_MANY, json.dumps([element(*rows[0], {})]), datetime(2001, 1, 1, tzinfo=UTC))
    assert v["result"] == "recorded"
    assert timedelta(minutes=6) < v["deadline_at"] - datetime.now(UTC) < timedelta(minutes=8)
    at = await conn.fetchval("SELECT max(at) FROM genretry.events WHERE generation_id = $1", rows[0][0])
    assert abs(at - datetime.now(UTC)) < timedelta(minutes=1)


async def test_the_daemon_cannot_write_the_tables_itself(daemon: asyncpg.Connection) -> None:
    for sql in ("UPDATE generation_history SET retry_count = 0",
                "INSERT INTO genretry.events (event) VALUES ('x')",
                "UPDATE genretry.generator_state SET consecutive_failures = 0"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await daemon.execute(sql)


async def test_a_temp_table_cannot_stand_in_for_a_table_of_the_fast_path(conn: asyncpg.Connection,
                                                                         daemon: asyncpg.Connection) -> None:
    ids = [await make_generation(conn, due=True)]
    leases = {r["id"]: r["lease_id"] for r in await daemon.fetch("SELECT * FROM genretry.claim('d', 10)")}
    await daemon.execute("CREATE TEMP TABLE generation_history (id uuid, status text, lease_id uuid)")
    await daemon.execute("CREATE TEMP TABLE policy (generator text, stale_after interval)")
    batch = [{"id": str(ids[0]), "lease_id": str(leases[ids[0]]), "outcome": "accepted", "http_status": 202}]
    v = await one(daemon, "SELECT * FROM genretry.record_deliveries($1::jsonb, 'd')", json.dumps(batch))
    assert v["result"] == "recorded"
    assert (await row(conn, ids[0]))["retry_count"] == 1


# --- (7) a large batch ---------------------------------------------------------------------------------------


async def test_two_thousand_elements_each_recorded_once(conn: asyncpg.Connection) -> None:
    n = 2000  # ten times the daemon's largest batch
    await conn.execute("INSERT INTO generation_history (user_id, status, generator, request, status_changed_at, "
                       "deadline_at) SELECT gen_random_uuid(), 'generating', 'generate-website', '{}', "
                       "now() - interval '1 hour', now() - interval '1 second' FROM generate_series(1, $1)", n)
    leased = await conn.fetch(CLAIM, T - timedelta(minutes=1))
    assert len(leased) == n
    pick: Callable[[int], str] = lambda k: ["accepted", "timeout", "rejected", "accepted"][k % 4]  # noqa: E731
    batch = [{"id": str(r["id"]), "lease_id": str(r["lease_id"]), "outcome": pick(k), "http_status": 202}
             for k, r in enumerate(leased)]
    batch.append(dict(batch[0]))  # one duplicate at the end: stale
    verdicts = await conn.fetch(RECORD_MANY, json.dumps(batch), T)
    assert len(verdicts) == n + 1
    results: dict[str, int] = {}
    for v in verdicts:
        results[v["result"]] = results.get(v["result"], 0) + 1
    assert results == {"recorded": n, "stale": 1}
    counts = await conn.fetch("SELECT count(*) AS c FROM genretry.events WHERE event IN "
                              "('delivered', 'delivery_timeout', 'rejected') GROUP BY generation_id")
    assert len(counts) == n and {c["c"] for c in counts} == {1}

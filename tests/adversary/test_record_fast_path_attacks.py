"""Attacks on record_deliveries' set-based fast path (sql/code/043_record_deliveries.sql, commit dbd612e).

The contract: a batch must record exactly what calling genretry.record_delivery once per element, in the
batch's order, records (rows, events, verdicts, the generator's circuit); an element whose row is locked
by another transaction comes back 'locked' and nothing else; non-owner callers run on the server clock.
Each test states the correct behaviour: a failing test is a bug in the fast path.

Most tests run the same elements twice on fresh twin rows: once through record_deliveries ("batch") and
once through record_delivery per element in order, with the old loop's own argument casts ("one by one"),
and compare everything that both write."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from tests.support.factories import row
from tests.support.record_twins import ABSENT, GEN, RECORD_MANY, T, assert_same, both_ways, claimed, element

pytestmark = pytest.mark.hostile


# --- (1) the batch's order and the generator circuit -----------------------------------------------------

async def test_an_accepted_after_a_failure_in_the_same_batch_resets_the_failure_count(
        conn: asyncpg.Connection) -> None:
    # one by one: the time-out counts a circuit failure, the accepted after it closes the count again (0)
    batch, by_one = await both_ways(conn, [{"outcome": "timeout", "http_status": None}, {}])
    assert by_one["circuit"][0][1:3] == ("closed", 0)
    assert_same(batch, by_one)


async def test_an_accepted_between_failures_keeps_the_circuit_closed(conn: asyncpg.Connection) -> None:
    # pause_after_failures = 5: four time-outs, an accepted (count back to 0), one time-out (count 1).
    # Recorded out of order (the accepted first), the five time-outs are "in a row" and open the circuit.
    timeout: dict[str, Any] = {"outcome": "timeout", "http_status": None}
    specs: list[dict[str, Any]] = [timeout] * 4 + [{}] + [timeout]
    batch, by_one = await both_ways(conn, specs)
    assert by_one["circuit"][0][1:3] == ("closed", 1)
    assert not any(v[1][6] == "opened" for v in batch["verdicts"]), "the batch paused a healthy generator"
    assert_same(batch, by_one)


async def test_an_unauthorized_then_an_accepted_of_the_same_generator(conn: asyncpg.Connection) -> None:
    assert_same(*await both_ways(conn, [{"outcome": "unauthorized", "http_status": 401}, {}]))


async def test_an_accepted_then_failures_of_the_same_generator(conn: asyncpg.Connection) -> None:
    specs: list[dict[str, Any]] = [{}] + [{"outcome": "timeout", "http_status": None}] * 5
    assert_same(*await both_ways(conn, specs))


PROBE_IS_THE_LAST_ROW = (  # the circuit probes with the lease of the last row claimed
    "UPDATE genretry.generator_state SET state = 'probing', probe_lease = (SELECT lease_id FROM "
    "generation_history WHERE lease_id IS NOT NULL ORDER BY created_at DESC LIMIT 1)", "SELECT 1")


@pytest.mark.parametrize("last", ["accepted", "timeout", "released"])
async def test_the_probe_s_outcome_after_an_accepted_of_the_same_generator(conn: asyncpg.Connection,
                                                                            last: str) -> None:
    specs: list[dict[str, Any]] = [{}, {"outcome": last, "http_status": None}]
    assert_same(*await both_ways(conn, specs, circuit=[(GEN, "closed", 0)], policy=PROBE_IS_THE_LAST_ROW))


async def test_failures_of_another_generator_do_not_matter(conn: asyncpg.Connection) -> None:
    specs = [{"outcome": "timeout", "http_status": None, "generator": "other-gen"}, {}, {}]
    assert_same(*await both_ways(conn, specs, circuit=[("other-gen", "closed", 3)]))


# --- (2) hostile elements: the batch records what record_delivery records ---------------------------------


def _upper(s: str) -> str:
    return s.upper()


def _braces(s: str) -> str:
    return "{" + s + "}"


def _bare(s: str) -> str:
    return s.replace("-", "")


HOSTILE: dict[str, list[dict[str, Any]]] = {
    "id in upper case": [{"id_form": _upper}],
    "id in braces": [{"id_form": _braces}],
    "id without hyphens": [{"id_form": _bare}],
    "lease in upper case with braces": [{"lease_form": lambda s: _braces(_upper(s))}],
    "lease null": [{"lease_id": None}],
    "lease absent": [{"lease_id": ABSENT}],
    "lease of another row": [{}, {"lease_form": lambda s: str(uuid.UUID(int=1))}],
    "http_status as a string": [{"http_status": "202"}],
    "http_status with spaces": [{"http_status": " 202 "}],
    "http_status null": [{"http_status": None}],
    "http_status absent, no label": [{"http_status": ABSENT, "detail": {}}],
    "http_status negative, huge label": [{"http_status": -2147483648, "detail": {"label": "x" * 20000}}],
    "detail JSON null": [{"detail": None}],
    "detail a string": [{"detail": "accepted"}],
    "detail an empty object": [{"detail": {}}],
    "detail overriding the event's own keys": [{"detail": {"outcome": "rejected", "counted": False,
                                                           "retry_count": -1, "http_status": "x",
                                                           "next_due_at": None, "label": None}}],
    "detail label not a string": [{"detail": {"label": {"nested": [1, 2, {"x": None}]}}}],
    "detail deeply nested": [{"detail": {"deep": json.loads("[" * 500 + "]" * 500)}}],
    "detail huge": [{"detail": {"message": "m" * 200000, "label": "ok"}}],
    "detail with a NUL-like escape": [{"detail": {"label": "a\u0001b\u2028c"}}],
    "retry_after_s as a string": [{"retry_after_s": "7.25"}],
    "retry_after_s negative": [{"retry_after_s": -30}],
    "retry_after_s huge": [{"retry_after_s": 1e12}],
    "retry_after_s tiny": [{"retry_after_s": 1e-9}],
    "retry_after_s null": [{"retry_after_s": None}],
    "unknown keys": [{"extra": {"a": 1}, "outcome ": "rejected"}],
    "retry_count at int max": [{"retry_count": 2147483647}],
    "retry_count at int max - 1": [{"retry_count": 2147483646}],
    "hostile generator name": [{"generator": "gen'\"; DROP TABLE x; --\n\t\\" + "é" * 3000}],
    "generator named *": [{"generator": "*"}],
    "same id twice, two spellings": [{}, {"same_as": 0, "id_form": _upper}],
    "same id three times, braces": [{}, {"same_as": 0, "id_form": _braces}, {"same_as": 0}],
    "same id: time-out then accepted": [{"outcome": "timeout", "http_status": None}, {"same_as": 0}],
    "same id: accepted then rejected": [{}, {"same_as": 0, "outcome": "rejected", "http_status": 400}],
    "same id: stale accepted then own accepted": [{"lease_id": str(uuid.UUID(int=5))}, {"same_as": 0}],
    "a mixed batch": [{}, {"outcome": "rejected", "http_status": 422}, {"outcome": "unsendable"}, {},
                      {"outcome": "released"}, {"lease_id": None}, {"outcome": "timeout"}],
}


@pytest.mark.parametrize("name", list(HOSTILE))
async def test_hostile_elements_are_recorded_as_record_delivery_records_them(conn: asyncpg.Connection,
                                                                            name: str) -> None:
    assert_same(*await both_ways(conn, HOSTILE[name]))


POLICIES: dict[str, tuple[str, str]] = {  # name: (applied after the claim, undone before it)
    "own row, disabled": (
        "INSERT INTO genretry.policy (generator, stale_after, enabled) VALUES ('generate-website', '30 days', "
        "false)", "DELETE FROM genretry.policy WHERE generator <> '*'"),
    "star disabled": (
        "UPDATE genretry.policy SET enabled = false, stale_after = '1 second' WHERE generator = '*'",
        "UPDATE genretry.policy SET enabled = true, stale_after = '7 minutes' WHERE generator = '*'"),
    "own row out of the bounds (NOT VALID)": (
        "ALTER TABLE genretry.policy DROP CONSTRAINT IF EXISTS policy_bounded; "
        "INSERT INTO genretry.policy (generator, stale_after) VALUES ('generate-website', '5000 years')",
        "DELETE FROM genretry.policy WHERE generator <> '*'"),
    "own row of another generator only": (
        "INSERT INTO genretry.policy (generator, stale_after) VALUES ('generate-websit', '1 day'), "
        "('GENERATE-WEBSITE', '2 days'), ('generate-website ', '3 days')",
        "DELETE FROM genretry.policy WHERE generator <> '*'"),
}


@pytest.mark.parametrize("name", list(POLICIES))
async def test_policy_rows(conn: asyncpg.Connection, name: str) -> None:
    assert_same(*await both_ways(conn, [{}, {"outcome": "timeout", "http_status": None}],
                                   policy=POLICIES[name]))


CIRCUITS: dict[str, list[tuple[str, str, int]]] = {
    "closed, negative failures": [(GEN, "closed", -3)],
    "closed, failures at int max": [(GEN, "closed", 2147483647)],
    "open": [(GEN, "open", 0)],
    "probing, someone else's probe": [(GEN, "probing", 0)],
}


@pytest.mark.parametrize("name", list(CIRCUITS))
async def test_circuit_states(conn: asyncpg.Connection, name: str) -> None:
    assert_same(*await both_ways(conn, [{}, {}], circuit=CIRCUITS[name]))


@pytest.mark.parametrize("now", ["infinity", "-infinity", "1970-01-01T00:00:00+00:00", "2999-12-31T00:00:00+00:00"])
async def test_the_owner_s_clock_at_the_edges(conn: asyncpg.Connection, now: str) -> None:
    clock = {"infinity": datetime.max.replace(tzinfo=UTC), "-infinity": datetime.min.replace(tzinfo=UTC)}.get(
        now) or datetime.fromisoformat(now)
    assert_same(*await both_ways(conn, [{}, {"outcome": "timeout", "http_status": None}], now=clock))


# --- (3) what must raise raises as before, atomically ------------------------------------------------------


@pytest.mark.parametrize("bad", [
    {"outcome": "Accepted"}, {"outcome": " accepted"}, {"outcome": "ACCEPTED"}, {"outcome": None},
    {"outcome": ABSENT}, {"raw": 5}, {"raw": "accepted"}, {"raw": None}, {"raw": []}, {"raw": {}},
])
async def test_a_bad_element_fails_the_whole_batch(conn: asyncpg.Connection, bad: dict[str, Any]) -> None:
    rows = await claimed(conn, 2)
    batch = [element(*rows[0], {}), element(*rows[1], bad)]
    with pytest.raises(asyncpg.PostgresError):
        await conn.fetch(RECORD_MANY, json.dumps(batch), T)
    for row_id, lease in rows:  # the accepted one, recorded first by the fast path, is rolled back
        r = await row(conn, row_id)
        assert (r["retry_count"], r["lease_id"]) == (0, lease)


@pytest.mark.parametrize("bad", [{"id": "not-a-uuid"}, {"http_status": "202.0"}, {"http_status": 1e10},
                                 {"lease_id": "nope"}, {"retry_after_s": "soon"}, {"retry_after_s": "1e400"}])
async def test_a_malformed_field_fails_the_batch_as_before(conn: asyncpg.Connection, bad: dict[str, Any]) -> None:
    rows = await claimed(conn, 2)
    with pytest.raises(asyncpg.PostgresError):
        await conn.fetch(RECORD_MANY, json.dumps([element(*rows[0], {}), element(*rows[1], bad)]), T)
    assert (await row(conn, rows[0][0]))["retry_count"] == 0


async def test_an_empty_batch_and_a_non_array(conn: asyncpg.Connection) -> None:
    assert await conn.fetch(RECORD_MANY, "[]", T) == []
    for bad in ('{"id": 1}', '"x"', "null", "1"):
        with pytest.raises(asyncpg.InvalidParameterValueError):
            await conn.fetch(RECORD_MANY, bad, T)
    with pytest.raises(asyncpg.InvalidParameterValueError):
        await conn.fetch("SELECT * FROM genretry.record_deliveries(NULL, 'w1', $1)", T)


# --- (4) locked rows: 'locked' and nothing else, never an error ---------------------------------------------


"""genretry.record_deliveries records the common case (an accepted outcome of a live row still leased, its
generator's circuit with nothing to change) set-based, without calling record_delivery (issue 13). Held here
to what record_delivery itself makes of the same outcome: twin rows, one recorded each way at the same
clock, must end identical (row, event, verdict, circuit); and each case must take the path it claims."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from tests.support.factories import make_generation, one
from tests.support.record_twins import ABSENT, CALLS, RECORD_MANY, VERDICT, T

RECORD_ONE = "SELECT * FROM genretry.record_delivery($1, $2, $3, $4, $5::jsonb, $6::interval, 'w1', $7, 0.5)"
COLUMNS = ("status", "error_message", "retry_count", "dispatch_failures", "retry_phase", "deadline_at", "lease_id",
           "lease_until", "last_outcome", "attempt", "generator")


async def _twin(conn: asyncpg.Connection, setup: dict[str, Any]) -> tuple[uuid.UUID, uuid.UUID]:
    row_id = await make_generation(conn, due=True, generator=setup.get("generator", "generate-website"),
                                   retry_count=setup.get("retry_count", 0))
    claimed = {r["id"]: r["lease_id"] for r in await conn.fetch(
        "SELECT * FROM genretry.claim('w1', 10, '3 minutes', $1)", T - timedelta(minutes=1))}
    if setup.get("finished"):
        await conn.execute("UPDATE generation_history SET status = 'completed' WHERE id = $1", row_id)
    return row_id, claimed[row_id]


async def _state(conn: asyncpg.Connection, row_id: uuid.UUID) -> tuple[dict[str, Any], dict[str, Any]]:
    r = await one(conn, "SELECT * FROM generation_history WHERE id = $1", row_id)
    e = await one(conn, "SELECT event, detail::text, worker, actor, at, attempt, generator FROM genretry.events "
                        "WHERE generation_id = $1 ORDER BY id DESC LIMIT 1", row_id)
    detail = json.loads(e["detail"])
    kept = {c: r[c] for c in COLUMNS} | {"lease_id": r["lease_id"] is not None}  # each twin has its own lease
    return kept, {**dict(e), "detail": detail}


async def _circuit(conn: asyncpg.Connection, setup: dict[str, Any]) -> None:
    await conn.execute("DELETE FROM genretry.generator_state")
    if "circuit" in setup:
        state, failures = setup["circuit"]
        await conn.execute("INSERT INTO genretry.generator_state (generator, state, consecutive_failures, "
                           "open_until, probe_until) VALUES ('generate-website', $1, $2, $3, $3)",
                           state, failures, T)


CASES: dict[str, tuple[dict[str, Any], dict[str, Any], int]] = {  # name: (setup, element, record_delivery calls)
    "accepted, no circuit row": ({}, {}, 0),
    "accepted, circuit closed": ({"circuit": ("closed", 0)}, {}, 0),
    "accepted with a label, a message and a Retry-After": (
        {}, {"detail": {"label": "queued (202)", "message": "queued", "duration_ms": 3.5}, "retry_after_s": 7}, 0),
    "accepted, no detail at all": ({}, {"detail": ABSENT}, 0),
    "accepted, a generator with its own policy": ({"generator": "generate-php-website"}, {}, 0),
    "accepted after earlier retries": ({"retry_count": 1}, {}, 0),
    "accepted, circuit with failures": ({"circuit": ("closed", 2)}, {}, 1),
    "accepted, circuit probing": ({"circuit": ("probing", 0)}, {}, 1),
    "accepted, row finished while leased": ({"finished": True}, {}, 1),
    "accepted, someone else's lease": ({}, {"lease_id": str(uuid.UUID(int=7))}, 1),
    "accepted, detail not an object": ({}, {"detail": ["x"]}, 1),
    "timeout": ({}, {"outcome": "timeout", "http_status": None}, 1),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_the_batch_records_what_record_delivery_records(conn: asyncpg.Connection, name: str) -> None:
    setup, override, calls = CASES[name]
    await conn.execute("INSERT INTO genretry.policy (generator, stale_after) VALUES ('generate-php-website', "
                       "'3 minutes') ON CONFLICT DO NOTHING")
    await conn.execute("SET track_functions = 'pl'")
    results = []
    for way in ("batch", "one by one"):
        await _circuit(conn, {})
        row_id, lease = await _twin(conn, setup)
        await _circuit(conn, setup)  # after the claim: a circuit that is not closed would not let it claim
        element = {"id": str(row_id), "lease_id": str(lease), "outcome": "accepted", "http_status": 202,
                   "detail": {"label": "202"}, "retry_after_s": None, **override}
        element = {k: v for k, v in element.items() if v is not ABSENT}
        async with conn.transaction():
            if way == "batch":
                verdict = await one(conn, RECORD_MANY, json.dumps([element]), T)
                assert await conn.fetchval(CALLS) == calls, "the path this case takes"
            else:
                after = element["retry_after_s"]
                verdict = await one(conn, RECORD_ONE, row_id, uuid.UUID(element["lease_id"]), element["outcome"],
                                    element["http_status"], json.dumps(element.get("detail", {})),
                                    None if after is None else timedelta(seconds=after), T)
        circuit = await conn.fetch("SELECT state, consecutive_failures, pauses FROM genretry.generator_state")
        results.append(({k: verdict[k] for k in VERDICT}, *await _state(conn, row_id), [dict(c) for c in circuit]))
    assert results[0] == results[1]


async def test_an_id_twice_in_a_batch_goes_one_by_one(conn: asyncpg.Connection) -> None:
    row_id, lease = await _twin(conn, {})
    element = {"id": str(row_id), "lease_id": str(lease), "outcome": "accepted", "http_status": 202}
    await conn.execute("SET track_functions = 'pl'")
    async with conn.transaction():
        verdicts = await conn.fetch(RECORD_MANY, json.dumps([element, element]), T)
        assert await conn.fetchval(CALLS) == 2
    assert [v["result"] for v in verdicts] == ["recorded", "stale"]  # as before: the second finds no lease
    assert (await one(conn, "SELECT retry_count FROM generation_history WHERE id = $1", row_id))[0] == 1


async def test_a_mixed_batch_records_every_element_once(conn: asyncpg.Connection) -> None:
    rows = [await _twin(conn, {}) for _ in range(4)]
    outcomes = ["accepted", "server_error", "accepted", "unreachable"]
    batch = [{"id": str(r), "lease_id": str(lease), "outcome": o, "http_status": {"accepted": 202,
              "server_error": 500}.get(o)} for (r, lease), o in zip(rows, outcomes, strict=True)]
    verdicts = await conn.fetch(RECORD_MANY, json.dumps(batch), T)
    assert sorted(str(v["id"]) for v in verdicts) == sorted(str(r) for r, _ in rows)
    assert {v["result"] for v in verdicts} == {"recorded"}
    counts = await conn.fetch("SELECT generation_id, count(*) FROM genretry.events WHERE event <> 'claimed' "
                              "GROUP BY generation_id")
    assert sorted(c["count"] for c in counts) == [1, 1, 1, 1]

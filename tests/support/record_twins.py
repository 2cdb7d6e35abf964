"""Twin rows for the record_deliveries attacks (tests/adversary/test_record_fast_path_*.py): the same
elements recorded once through record_deliveries ("batch") and once through record_delivery per element in
the batch's order, with the loop's own argument casts before the fast path existed ("one by one")."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from tests.support.factories import make_generation, one, row

T = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)  # the owner's clock in these tests
GEN = "generate-website"
CLAIM = "SELECT * FROM genretry.claim('w1', 100000, '3 minutes', $1)"
RECORD_MANY = "SELECT * FROM genretry.record_deliveries($1::jsonb, 'w1', $2)"
# what the loop before dbd612e did for each element: record_delivery with these very casts
RECORD_ONE = """
    SELECT r.* FROM (SELECT $1::jsonb AS o) s,
    LATERAL genretry.record_delivery(
        (s.o ->> 'id')::uuid, (s.o ->> 'lease_id')::uuid, s.o ->> 'outcome', (s.o ->> 'http_status')::integer,
        coalesce(s.o -> 'detail', '{}'), pg_catalog.make_interval(secs => (s.o ->> 'retry_after_s')::float8),
        'w1', $2) r"""
CALLS = "SELECT coalesce(pg_stat_get_xact_function_calls('genretry.record_delivery'::regproc), 0)"
COLUMNS = ("status", "error_message", "retry_count", "dispatch_failures", "retry_phase", "deadline_at",
           "lease_until", "last_outcome", "attempt", "generator")
VERDICT = ("result", "status", "deadline_at", "retry_count", "dispatch_failures", "failed_with", "circuit")
CIRCUIT = ("generator", "state", "consecutive_failures", "pauses", "reason", "opened_at", "open_until",
           "probe_until")
ABSENT = object()


# --- the twin harness ------------------------------------------------------------------------------------


async def claimed(conn: asyncpg.Connection, n: int, generator: str = GEN, retry_count: int = 0,
                   now: datetime = T) -> list[tuple[uuid.UUID, uuid.UUID]]:
    ids = [await make_generation(conn, due=True, generator=generator) for _ in range(n)]
    leases = {r["id"]: r["lease_id"] for r in await conn.fetch(CLAIM, now - timedelta(minutes=1))}
    if retry_count:  # after the claim: a row at max_retries is failed as exhausted, not delivered
        await conn.execute("UPDATE generation_history SET retry_count = $2 WHERE id = ANY($1::uuid[])",
                           ids, retry_count)
    return [(i, leases[i]) for i in ids]


def element(row_id: uuid.UUID, lease: uuid.UUID, spec: dict[str, Any]) -> Any:
    """A JSON element for a row; spec keys override (ABSENT drops a key); 'raw' replaces it whole."""
    if "raw" in spec:
        return spec["raw"]
    element: dict[str, Any] = {"id": str(row_id), "lease_id": str(lease), "outcome": "accepted",
                               "http_status": 202, "detail": {"label": "202"}}
    for key, value in spec.items():
        if key in ("generator", "retry_count", "same_as", "id_form", "lease_form"):
            continue
        element[key] = value
    if "id_form" in spec:
        element["id"] = spec["id_form"](str(row_id))
    if "lease_form" in spec:
        element["lease_id"] = spec["lease_form"](str(lease))
    return {k: v for k, v in element.items() if v is not ABSENT}


async def set_circuit(conn: asyncpg.Connection, circuit: list[tuple[str, str, int]]) -> None:
    await conn.execute("DELETE FROM genretry.generator_state")
    for generator, state, failures in circuit:
        await conn.execute("INSERT INTO genretry.generator_state (generator, state, consecutive_failures, "
                           "open_until, probe_until, updated_at) VALUES ($1, $2, $3, $4, $4, $4)",
                           generator, state, failures, T)


def strip(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {k: v for k, v in detail.items() if k != "lease_id"}  # each twin has its own lease
    return detail


async def one_way(conn: asyncpg.Connection, specs: list[dict[str, Any]], way: str,
                   circuit: list[tuple[str, str, int]], now: datetime,
                   policy: tuple[str, str] | None = None) -> dict[str, Any]:
    await set_circuit(conn, [])
    if policy:
        await conn.execute(policy[1])  # undone before the claim: a disabled generator is not claimed
    rows: list[tuple[uuid.UUID, uuid.UUID]] = []
    index: dict[uuid.UUID, int] = {}
    elements = []
    for spec in specs:
        if "same_as" in spec:
            row_id, lease = rows[spec["same_as"]]
        else:
            (row_id, lease), = await claimed(conn, 1, spec.get("generator", GEN), spec.get("retry_count", 0))
            index[row_id] = len(rows)
        rows.append((row_id, lease))
        elements.append(element(row_id, lease, spec))
    await set_circuit(conn, circuit)  # after the claim: an open circuit would not let it claim
    if policy:
        await conn.execute(policy[0])
    async with conn.transaction():
        verdicts: list[dict[str, Any]]
        if way == "batch":
            verdicts = [dict(v) for v in await conn.fetch(RECORD_MANY, json.dumps(elements), now)]
        else:
            verdicts = [{"id": rows[i][0], **dict(await one(conn, RECORD_ONE, json.dumps(e), now))}
                        for i, e in enumerate(elements)]
    seen = sorted((index.get(v["id"], -1), tuple(v[k] for k in VERDICT)) for v in verdicts)
    state = {}
    for row_id, position in index.items():
        r = await row(conn, row_id)
        evs = await conn.fetch("SELECT event, detail::text, worker, actor, at, attempt, generator "
                               "FROM genretry.events WHERE generation_id = $1 AND event <> 'claimed' ORDER BY id",
                               row_id)
        state[position] = ({c: r[c] for c in COLUMNS} | {"leased": r["lease_id"] is not None},
                           [{**dict(e), "detail": strip(json.loads(e["detail"]))} for e in evs])
    circuits = [tuple(c[k] for k in CIRCUIT) for c in await conn.fetch(
        "SELECT * FROM genretry.generator_state ORDER BY generator")]
    return {"verdicts": seen, "rows": state, "circuit": circuits}


async def both_ways(conn: asyncpg.Connection, specs: list[dict[str, Any]],
                     circuit: list[tuple[str, str, int]] | None = None,
                     now: datetime = T, policy: tuple[str, str] | None = None
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    batch = await one_way(conn, specs, "batch", circuit or [], now, policy)
    by_one = await one_way(conn, specs, "one by one", circuit or [], now, policy)
    return batch, by_one


def assert_same(batch: dict[str, Any], by_one: dict[str, Any]) -> None:
    assert batch["verdicts"] == by_one["verdicts"], "the verdicts"
    assert batch["rows"] == by_one["rows"], "the rows and their events"
    assert batch["circuit"] == by_one["circuit"], "the generator circuit"

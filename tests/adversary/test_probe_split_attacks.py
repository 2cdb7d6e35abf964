"""Adversary: the circuit breaker's probe after it was split out of genretry.claim's main statement (6 Dec 2026).

Now: the circuit row of each probe-ready generator is locked SKIP LOCKED and moved to `probing`; a statement of
its own locks one due row per generator won; the main statement claims it with the normal rows; afterwards the
probe's lease is written to generator_state.probe_lease, found as the probe row whose lease this call changed
(first written keyed on "leased by this worker until exactly p_now + p_lease", which a not-due row of the same
worker matched: test_a_not_due_probe_row_of_this_worker_is_not_marked_as_the_probe), and a generator
won without a leased probe goes back to `open`.

Attacked here: two daemons claiming at once, probe rows that turn out exhausted, not due, locked or leased
elsewhere, admins holding the circuit row, owner-supplied clocks, and the probe's outcome recorded one at a
time (record_delivery) or in a batch (record_deliveries). The `claimed` events must say probe = true exactly
for the probe row.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import asyncpg
import pytest

from tests.support.factories import make_generation, one, row
from tests.support.pg import as_daemon
from tests.support.probes import (
    DAEMON_CLAIM,
    GEN,
    OTHER,
    RECORD,
    STATE,
    assert_not_stuck,
    db_now,
    due_rows,
    open_circuit,
    owner_claim,
    probe_flags,
)

pytestmark = pytest.mark.hostile


# --- probe rows that are not sent ----------------------------------------------------------------------------


async def test_an_exhausted_only_row_fails_and_the_circuit_can_probe_again(conn: asyncpg.Connection) -> None:
    """The paused generator's only due row has used its retries: the claim fails it (exhausted, no lease), so
    no probe went out: the circuit must not stay probing with no probe_lease, and a later row is probed."""
    spent = (await due_rows(conn, 1, retry_count=2))[0]  # max_retries is 2
    await open_circuit(conn)
    t = await db_now(conn)
    claimed = await owner_claim(conn, t)
    assert [(r["id"], r["action"]) for r in claimed] == [(spent, "exhausted")]
    assert (await row(conn, spent))["status"] == "failed"
    state = await one(conn, STATE, GEN)
    assert_not_stuck(state)
    assert (state["state"], state["open_until"], state["probe_lease"]) == ("open", t, None)
    fresh = (await due_rows(conn, 1))[0]
    probe = await owner_claim(conn, t + timedelta(seconds=1))
    assert [(r["id"], r["action"]) for r in probe] == [(fresh, "deliver")]
    state = await one(conn, STATE, GEN)
    assert (state["state"], state["probe_lease"]) == ("probing", probe[0]["lease_id"])
    assert await probe_flags(conn) == [(fresh, "true")]


async def test_a_not_due_only_row_reopens_the_circuit_at_once(conn: asyncpg.Connection) -> None:
    """The only row whose deadline says due has a fresh heartbeat (the deadline was early): not due, not sent;
    the circuit is open again, ready now, and probes once the row is really stale."""
    beating = await make_generation(conn, generator=GEN, heartbeat_at=None, due=True)
    await conn.execute("UPDATE generation_history SET heartbeat_at = now(), deadline_at = now() - interval '1 second' "
                       "WHERE id = $1", beating)
    await open_circuit(conn)
    t = await db_now(conn)
    assert await owner_claim(conn, t) == []
    state = await one(conn, STATE, GEN)
    assert_not_stuck(state)
    assert (state["state"], state["open_until"]) == ("open", t)
    later = t + timedelta(minutes=8)  # stale_after is 7 minutes
    probe = await owner_claim(conn, later)
    assert [r["id"] for r in probe] == [beating]
    state = await one(conn, STATE, GEN)
    assert (state["state"], state["probe_lease"]) == ("probing", probe[0]["lease_id"])
    assert await probe_flags(conn) == [(beating, "true")]


async def _leased_behind_the_trigger(conn: asyncpg.Connection, worker: str, lease_until: datetime,
                                     deadline_at: datetime) -> tuple[uuid.UUID, uuid.UUID]:
    """A row leased by `worker` until lease_until whose deadline says due earlier (written with a lease_id
    change, which the trigger lets through: a row written behind the trigger's back, which claim survives)."""
    row_id = await make_generation(conn, generator=GEN, due=True)
    lease_id = uuid.uuid4()
    await conn.execute(
        "UPDATE generation_history SET lease_id = $2, retry_phase = 'leased', leased_by = $3, lease_until = $4, "
        "deadline_at = $5, attempt = 1 WHERE id = $1", row_id, lease_id, worker, lease_until, deadline_at)
    stored = await row(conn, row_id)
    assert (stored["lease_until"], stored["deadline_at"]) == (lease_until, deadline_at)
    return row_id, lease_id


async def test_a_probe_row_leased_by_another_worker_is_not_taken(conn: asyncpg.Connection) -> None:
    """The only due-looking row is in flight with another daemon: not due (a lease is a lease), its lease left
    alone; no probe was taken, so the circuit goes back to open."""
    t = await db_now(conn)
    row_id, lease_id = await _leased_behind_the_trigger(conn, "w2", t + timedelta(minutes=3),
                                                        t - timedelta(seconds=1))
    await open_circuit(conn)
    assert await owner_claim(conn, t, worker="w1") == []
    r = await row(conn, row_id)
    assert (r["lease_id"], r["leased_by"]) == (lease_id, "w2")
    state = await one(conn, STATE, GEN)
    assert_not_stuck(state)
    assert (state["state"], state["probe_lease"], state["open_until"]) == ("open", None, t)


async def test_a_not_due_probe_row_of_this_worker_is_not_marked_as_the_probe(conn: asyncpg.Connection) -> None:
    """The same, but the live lease is this worker's own and ends exactly at p_now + p_lease (an owner's clock:
    the same instant as an earlier claim's end). The claim sends nothing of the generator, so the circuit must
    go back to open as above. The marking statement finds the probe by its phase, worker and lease end, not by
    whether this call leased it, and takes the old lease for the probe: the circuit stays `probing` on a
    delivery that was never a probe, and nothing of the generator is claimed until that lease ends."""
    t = await db_now(conn)
    row_id, lease_id = await _leased_behind_the_trigger(conn, "w1", t + timedelta(minutes=3),
                                                        t - timedelta(seconds=1))
    await open_circuit(conn)
    claimed = await owner_claim(conn, t, worker="w1", lease="3 minutes")
    assert claimed == []  # not due: its lease lives
    r = await row(conn, row_id)
    assert (r["lease_id"], r["leased_by"], r["retry_phase"]) == (lease_id, "w1", "leased")  # left alone
    assert await probe_flags(conn) == []  # and nothing was claimed as a probe
    state = await one(conn, STATE, GEN)
    assert (state["state"], state["probe_lease"]) == ("open", None), (dict(state), lease_id)
    # ... so that a row due meanwhile is probed at once
    fresh = (await due_rows(conn, 1))[0]
    assert [r["id"] for r in await owner_claim(conn, t + timedelta(seconds=1), worker="w1")] == [fresh]


async def test_an_admin_holding_the_only_due_row_then_finishing_it(db_url: str, conn: asyncpg.Connection) -> None:
    """An admin's open transaction holds the paused generator's only due row and completes it: the probe
    statement skips it (no wait), the circuit re-opens; after the commit there is nothing to probe, the circuit
    stays open and ready; the next due row is probed."""
    only = (await due_rows(conn, 1))[0]
    await open_circuit(conn)
    t = await db_now(conn)
    admin = await asyncpg.connect(db_url)
    try:
        await conn.execute("SET lock_timeout = '1s'")
        async with admin.transaction():
            await admin.execute("UPDATE generation_history SET status = 'completed' WHERE id = $1", only)
            assert await owner_claim(conn, t) == []
            state = await one(conn, STATE, GEN)
            assert_not_stuck(state)
            assert state["state"] == "open"
    finally:
        await admin.close()
    assert await owner_claim(conn, t + timedelta(seconds=1)) == []
    state = await one(conn, STATE, GEN)
    assert (state["state"], state["probe_lease"]) == ("open", None)
    fresh = (await due_rows(conn, 1))[0]
    probe = await owner_claim(conn, t + timedelta(seconds=2))
    assert [r["id"] for r in probe] == [fresh]
    assert (await one(conn, STATE, GEN))["probe_lease"] == probe[0]["lease_id"]


async def test_an_admin_holding_the_circuit_row_blocks_only_that_generator(db_url: str,
                                                                           conn: asyncpg.Connection) -> None:
    paused = await due_rows(conn, 2)
    others = await due_rows(conn, 2, generator=OTHER)
    await open_circuit(conn)
    admin = await asyncpg.connect(db_url)
    daemon = await asyncpg.connect(as_daemon(db_url))
    try:
        await daemon.execute("SET lock_timeout = '1s'")
        async with admin.transaction():
            await admin.execute("SELECT 1 FROM genretry.generator_state WHERE generator = $1 FOR UPDATE", GEN)
            claimed = await daemon.fetch(DAEMON_CLAIM, "d1")
        assert sorted(r["id"] for r in claimed) == sorted(others)
        assert (await one(conn, STATE, GEN))["state"] == "open"  # untouched while held
        probe = await daemon.fetch(DAEMON_CLAIM, "d1")
    finally:
        await admin.close()
        await daemon.close()
    assert [r["id"] for r in probe] == [paused[0]]
    assert await probe_flags(conn) == [(paused[0], "true")]
    assert [p for _, p in await probe_flags(conn, OTHER)] == ["false", "false"]


# --- owner clocks ----------------------------------------------------------------------------------------------


async def test_the_same_clock_twice_probes_once(conn: asyncpg.Connection) -> None:
    await due_rows(conn, 4)
    await open_circuit(conn)
    t = await db_now(conn)
    first = await owner_claim(conn, t)
    second = await owner_claim(conn, t)
    assert len(first) == 1 and second == []
    state = await one(conn, STATE, GEN)
    assert (state["state"], state["probe_lease"], state["probe_until"]) == (
        "probing", first[0]["lease_id"], t + timedelta(minutes=3))


async def test_a_clock_from_before_the_pause_end_takes_no_probe(conn: asyncpg.Connection) -> None:
    await due_rows(conn, 2)
    await open_circuit(conn, ready=False)
    t = await db_now(conn)
    assert await owner_claim(conn, t - timedelta(hours=1)) == []
    assert await owner_claim(conn, t) == []
    state = await one(conn, STATE, GEN)
    assert (state["state"], state["probe_lease"]) == ("open", None)
    probe = await owner_claim(conn, t + timedelta(minutes=1))
    assert len(probe) == 1 and (await one(conn, STATE, GEN))["probe_lease"] == probe[0]["lease_id"]


async def test_a_lost_probe_lease_is_taken_over_by_a_later_clock(conn: asyncpg.Connection) -> None:
    """The probing daemon died: once probe_until has passed, a claim takes the probe over (its old row again,
    due at its lease end, the same attempt), and the old lease's late outcome no longer decides the circuit."""
    await due_rows(conn, 1)
    await open_circuit(conn)
    t = await db_now(conn)
    (first,) = await owner_claim(conn, t, worker="w1")
    assert await owner_claim(conn, t + timedelta(minutes=2), worker="w2") == []  # still probing
    (second,) = await owner_claim(conn, t + timedelta(minutes=3), worker="w2")
    assert (second["id"], second["attempt"]) == (first["id"], first["attempt"])
    state = await one(conn, STATE, GEN)
    assert (state["state"], state["probe_lease"]) == ("probing", second["lease_id"])
    late = await one(conn, RECORD, first["id"], first["lease_id"], "accepted", 202, "w1",
                     t + timedelta(minutes=3, seconds=1))
    assert late["result"] == "stale" and late["circuit"] is None
    assert (await one(conn, STATE, GEN))["state"] == "probing"
    assert [p for _, p in await probe_flags(conn)] == ["true", "true"]


async def test_a_long_owner_lease_is_marked_on_the_circuit(conn: asyncpg.Connection) -> None:
    """The owner may lease for longer than max_lease(): the probe's lease end is p_now + p_lease as the claim
    wrote it, and the marking must find it (a lease of odd seconds and microseconds too)."""
    await due_rows(conn, 1)
    await open_circuit(conn)
    t = await db_now(conn)
    for lease in ("2 hours 0.000001 seconds", "1.5 microseconds"):
        (probe,) = await owner_claim(conn, t, lease=lease)
        state = await one(conn, STATE, GEN)
        assert (state["state"], state["probe_lease"]) == ("probing", probe["lease_id"]), lease
        await one(conn, RECORD, probe["id"], probe["lease_id"], "released", None, "w1", t)
        assert (await one(conn, STATE, GEN))["state"] == "open"


# --- the probe's outcome ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("outcome, status, state_after", [
    ("accepted", 202, "closed"), ("rejected", 422, "closed"), ("server_error", 500, "open"),
    ("unreachable", 503, "open"), ("timeout", None, "open"), ("unauthorized", 401, "open"),
    ("released", None, "open"), ("unsendable", None, "open")])
async def test_the_probe_outcome_one_at_a_time_decides_the_circuit(conn: asyncpg.Connection, outcome: str,
                                                                   status: int | None, state_after: str) -> None:
    await due_rows(conn, 2)
    await open_circuit(conn)
    t = await db_now(conn)
    (probe,) = await owner_claim(conn, t)
    result = await one(conn, RECORD, probe["id"], probe["lease_id"], outcome, status, "w1", t + timedelta(seconds=1))
    state = await one(conn, STATE, GEN)
    assert state["state"] == state_after
    assert_not_stuck(state)
    assert state["probe_lease"] is None
    if state_after == "closed":
        assert result["circuit"] == "closed"
        assert len(await owner_claim(conn, t + timedelta(seconds=2))) == 1  # the other row, the circuit closed
    elif outcome in ("released", "unsendable"):
        assert state["open_until"] == t + timedelta(seconds=1)  # probe again at once
        assert len(await owner_claim(conn, t + timedelta(seconds=1))) == 1
    else:
        assert result["circuit"] == "opened" and state["open_until"] > t + timedelta(seconds=30)


@pytest.mark.parametrize("outcome, status, state_after", [
    ("accepted", 202, "closed"), ("server_error", 500, "open"), ("released", None, "open")])
async def test_the_probe_outcome_in_a_batch_decides_the_circuit(conn: asyncpg.Connection, outcome: str,
                                                                status: int | None, state_after: str) -> None:
    """record_deliveries, the daemon's batch, with the probe beside a normal row of another generator whose
    accepted outcome takes the batch's fast path."""
    await due_rows(conn, 2)
    await due_rows(conn, 1, generator=OTHER)
    await open_circuit(conn)
    t = await db_now(conn)
    claimed = await owner_claim(conn, t)
    probe = next(r for r in claimed if r["generator"] == GEN)
    normal = next(r for r in claimed if r["generator"] == OTHER)
    items = [{"id": str(normal["id"]), "lease_id": str(normal["lease_id"]), "outcome": "accepted",
              "http_status": 202, "detail": {}, "retry_after_s": None},
             {"id": str(probe["id"]), "lease_id": str(probe["lease_id"]), "outcome": outcome,
              "http_status": status, "detail": {}, "retry_after_s": None}]
    results = {r["id"]: r for r in await conn.fetch("SELECT * FROM genretry.record_deliveries($1::jsonb, 'w1', $2)",
                                                    json.dumps(items), t + timedelta(seconds=1))}
    assert {r["result"] for r in results.values()} == {"recorded"}
    state = await one(conn, STATE, GEN)
    assert state["state"] == state_after and state["probe_lease"] is None
    expected_change = {"closed": "closed", "open": "opened"}[state_after] if outcome != "released" else None
    assert results[probe["id"]]["circuit"] == expected_change


async def test_a_non_probe_outcome_while_probing_does_not_decide_the_circuit(conn: asyncpg.Connection) -> None:
    """A row leased before the pause reports while the probe is out: neither its success nor its failure closes
    or re-opens the circuit; only the probe's does."""
    before = await due_rows(conn, 2)
    t = await db_now(conn)
    inflight = await owner_claim(conn, t)  # leased before the generator paused, in flight for 3 minutes
    assert sorted(r["id"] for r in inflight) == sorted(before)
    await due_rows(conn, 1)
    await open_circuit(conn)
    (probe,) = await owner_claim(conn, t + timedelta(seconds=1))
    assert probe["id"] not in before
    for r, (outcome, status) in zip(inflight, (("accepted", 202), ("server_error", 500)), strict=True):
        result = await one(conn, RECORD, r["id"], r["lease_id"], outcome, status, "w1", t)
        assert (result["result"], result["circuit"]) == ("recorded", None)
        state = await one(conn, STATE, GEN)
        assert (state["state"], state["probe_lease"]) == ("probing", probe["lease_id"]), outcome
    assert (await one(conn, RECORD, probe["id"], probe["lease_id"], "accepted", 202, "w1", t))["circuit"] == "closed"

"""Adversary: the split probe (see test_probe_split_attacks.py) against two daemons at once, and what the split must
not change: one probe, never two, and never a probe plus normal rows of that generator."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import asyncpg
import pytest
from aiohttp import web

from tests.support.factories import one
from tests.support.http import StartDaemon, Stub, settings_for, wait_until
from tests.support.lending import exactly_once
from tests.support.pg import as_daemon
from tests.support.probes import (
    DAEMON_CLAIM,
    GEN,
    OTHER,
    STATE,
    assert_not_stuck,
    db_now,
    due_rows,
    open_circuit,
    owner_claim,
    probe_flags,
)

pytestmark = pytest.mark.hostile


# --- two daemons ---------------------------------------------------------------------------------------------


async def test_two_daemons_racing_for_a_ready_probe_send_exactly_one(db_url: str, conn: asyncpg.Connection) -> None:
    """Twenty rounds: the pause of a generator with 5 due rows has just ended and two daemons (the daemon's role,
    the server's clock) claim at the same moment. Exactly one row of it is claimed in all, as the probe; the
    circuit is probing on that lease; the other daemon's claim gets none of its rows but other generators'."""
    a = await asyncpg.connect(as_daemon(db_url))
    b = await asyncpg.connect(as_daemon(db_url))
    try:
        for attempt in range(20):
            await conn.execute("UPDATE generation_history SET status = 'completed' WHERE status <> 'completed'")
            await open_circuit(conn)
            paused = await due_rows(conn, 5)
            others = await due_rows(conn, 2, generator=OTHER)
            ra, rb = await asyncio.gather(a.fetch(DAEMON_CLAIM, "da"), b.fetch(DAEMON_CLAIM, "db"))
            mine = [r for r in [*ra, *rb] if r["generator"] == GEN]
            assert len(mine) == 1, (attempt, mine)
            assert mine[0]["id"] == paused[0] and mine[0]["action"] == "deliver"  # the oldest due row
            assert sorted(r["id"] for r in [*ra, *rb] if r["generator"] == OTHER) == sorted(others)
            state = await one(conn, STATE, GEN)
            assert (state["state"], state["probe_lease"]) == ("probing", mine[0]["lease_id"])
            flags = {r["generation_id"]: r["probe"] for r in await conn.fetch(
                "SELECT generation_id, detail->>'probe' AS probe FROM genretry.events WHERE event = 'claimed' "
                "AND generation_id = ANY($1::uuid[])", [*paused, *others])}
            assert flags == {paused[0]: "true", **{o: "false" for o in others}}
            assert await a.fetch(DAEMON_CLAIM, "da") == [] and await b.fetch(DAEMON_CLAIM, "db") == []
            await conn.execute("DELETE FROM genretry.generator_state")
    finally:
        await a.close()
        await b.close()


async def test_a_daemon_mid_claim_holds_the_probe_from_the_other(db_url: str, conn: asyncpg.Connection) -> None:
    """Daemon A's claim has taken the probe and not committed; daemon B claims meanwhile (lock_timeout set: any
    wait raises): B skips the generator, neither waiting nor sending a second probe, before and after A commits."""
    paused = await due_rows(conn, 3)
    other = (await due_rows(conn, 1, generator=OTHER))[0]
    await open_circuit(conn)
    a = await asyncpg.connect(as_daemon(db_url))
    b = await asyncpg.connect(as_daemon(db_url))
    try:
        await b.execute("SET lock_timeout = '1s'")
        async with a.transaction():
            ra = await a.fetch("SELECT * FROM genretry.claim('da', 1, '3 minutes')")
            rb = await b.fetch(DAEMON_CLAIM, "db")
        rb_after = await b.fetch(DAEMON_CLAIM, "db")
    finally:
        await a.close()
        await b.close()
    assert [r["id"] for r in ra if r["generator"] == GEN] == [paused[0]]  # the probe, beyond the limit of 1
    assert [r["id"] for r in [*ra, *rb, *rb_after] if r["generator"] == OTHER] == [other]
    assert all(r["generator"] != GEN for r in [*rb, *rb_after])
    state = await one(conn, STATE, GEN)
    assert state["state"] == "probing" and state["probe_lease"] == ra[0]["lease_id"]


# --- what the split must not change ------------------------------------------------------------------------------


async def test_several_generators_ready_at_once_each_get_one_probe(conn: asyncpg.Connection) -> None:
    """Three paused generators ready together, one with nothing due, one whose oldest due row is exhausted, one
    with three due rows; plus normal rows of a closed generator under a limit of 2."""
    gens = ["gen-a", "gen-b", "gen-c"]
    for g in gens:
        await open_circuit(conn, g)
    spent = (await due_rows(conn, 1, generator="gen-b", retry_count=5))[0]
    await asyncio.sleep(0.01)
    b_next = (await due_rows(conn, 1, generator="gen-b"))[0]
    c_rows = await due_rows(conn, 3, generator="gen-c")
    normal = await due_rows(conn, 4, generator=OTHER)
    t = await db_now(conn)
    claimed = await owner_claim(conn, t, limit=2)
    by_gen: dict[str, list[tuple[uuid.UUID, str]]] = {}
    for r in claimed:
        by_gen.setdefault(r["generator"], []).append((r["id"], r["action"]))
    assert by_gen.get("gen-a") is None
    assert by_gen["gen-b"] == [(spent, "exhausted")]
    assert by_gen["gen-c"] == [(c_rows[0], "deliver")]
    assert len(by_gen[OTHER]) == 2 and {i for i, _ in by_gen[OTHER]} <= set(normal)
    states = {g: await one(conn, STATE, g) for g in gens}
    for s in states.values():
        assert_not_stuck(s)
    assert (states["gen-a"]["state"], states["gen-b"]["state"], states["gen-c"]["state"]) == (
        "open", "open", "probing")
    assert states["gen-c"]["probe_lease"] == next(r["lease_id"] for r in claimed if r["id"] == c_rows[0])
    # gen-b re-opened at p_now: its next row is the probe of the next claim
    again = await owner_claim(conn, t + timedelta(seconds=1), limit=1)
    assert [(r["id"], r["generator"]) for r in again if r["generator"] == "gen-b"] == [(b_next, "gen-b")]
    flags = {r["generation_id"]: r["probe"] for r in await conn.fetch(
        "SELECT generation_id, detail->>'probe' AS probe FROM genretry.events WHERE event = 'claimed'")}
    assert {i for i, p in flags.items() if p == "true"} == {c_rows[0], b_next}


async def test_a_disabled_generator_gets_no_probe(conn: asyncpg.Connection) -> None:
    """`UPDATE genretry.policy SET enabled = false` pauses one generator (README): its rows are not claimed. A
    circuit of it whose pause ends meanwhile must not send a probe either."""
    await conn.execute("INSERT INTO genretry.policy (generator, enabled) VALUES ($1, false)", GEN)
    await due_rows(conn, 2)
    await open_circuit(conn)
    t = await db_now(conn)
    assert [r["id"] for r in await owner_claim(conn, t)] == []
    assert await probe_flags(conn) == []


# --- two real daemons ------------------------------------------------------------------------------------------


async def test_two_daemons_send_one_probe_and_the_rest_only_after_it(
        db_url: str, conn: asyncpg.Connection, stub: Stub, start_daemon: StartDaemon) -> None:
    """Two daemons (ticks of 0.2 s) and a paused generator whose pause is over, five rows due: while the probe's
    answer is held back, neither daemon sends another row of it (five ticks each); once the probe is accepted
    the circuit closes and the other four go, every row exactly once, the probe flagged alone."""
    release = asyncio.Event()

    async def held(_request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.json_response({}, status=202)

    stub.behaviours[GEN] = held
    paused = await due_rows(conn, 5)
    others = await due_rows(conn, 2, generator=OTHER)
    await open_circuit(conn)
    for worker in ("daemon-a", "daemon-b"):
        await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="0.2", PROCESSOR_WORKER_ID=worker))
    await stub.wait_for(3)
    await asyncio.sleep(1.0)  # five ticks of each daemon while the probe is out
    assert [s.generator for s in stub.seen].count(GEN) == 1
    state = await one(conn, STATE, GEN)
    assert state["state"] == "probing" and state["probe_lease"] is not None
    release.set()
    await stub.wait_for(7)

    async def all_delivered() -> bool:
        phases = await conn.fetch("SELECT retry_phase FROM generation_history WHERE id = ANY($1::uuid[])",
                                  [*paused, *others])
        return all(p["retry_phase"] == "delivered" for p in phases)

    await wait_until(all_delivered)
    exactly_once(stub, [*paused, *others])
    assert (await one(conn, STATE, GEN))["state"] == "closed"
    flags = await probe_flags(conn)
    assert [p for _, p in flags].count("true") == 1 and flags[0] == (paused[0], "true")

"""The circuit breaker's probe, scripted for attacks (tests/adversary/test_probe_*_attacks.py): a generator's circuit
opened with its pause over or not, due rows, a claim on the owner's clock, the `claimed` events' probe flags."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from tests.support.factories import make_generation

GEN, OTHER = "generate-logo", "generate-website"
OWNER_CLAIM = "SELECT * FROM genretry.claim($1, $2, $3::text::interval, $4)"
DAEMON_CLAIM = "SELECT * FROM genretry.claim($1, 100, '3 minutes')"
RECORD = "SELECT * FROM genretry.record_delivery($1, $2, $3, $4, '{}', NULL, $5, $6, 0.5)"
STATE = "SELECT * FROM genretry.generator_state WHERE generator = $1"


async def open_circuit(conn: asyncpg.Connection, generator: str = GEN, *, ready: bool = True) -> None:
    """The generator's circuit open after a pause; the pause is over (ready) or has half a minute to go."""
    until = "now() - interval '1 second'" if ready else "now() + interval '30 seconds'"
    await conn.execute(
        f"""INSERT INTO genretry.generator_state AS s (generator, state, consecutive_failures, pauses, reason,
                                                     opened_at, open_until)
            VALUES ($1, 'open', 5, 1, 'scripted', now() - interval '1 minute', {until})
            ON CONFLICT (generator) DO UPDATE SET state = 'open', open_until = excluded.open_until,
                probe_lease = NULL, probe_until = NULL""", generator)


async def due_rows(conn: asyncpg.Connection, n: int, generator: str = GEN, **kw: Any) -> list[uuid.UUID]:
    return [await make_generation(conn, due=True, generator=generator, **kw) for _ in range(n)]


async def db_now(conn: asyncpg.Connection) -> datetime:
    value: datetime = await conn.fetchval("SELECT now()")
    return value


async def owner_claim(conn: asyncpg.Connection, at: datetime, worker: str = "w1", lease: str = "3 minutes",
                 limit: int = 100) -> list[asyncpg.Record]:
    return list(await conn.fetch(OWNER_CLAIM, worker, limit, lease, at))


async def probe_flags(conn: asyncpg.Connection, generator: str = GEN) -> list[tuple[uuid.UUID, str]]:
    return [(r["generation_id"], r["probe"]) for r in await conn.fetch(
        "SELECT generation_id, detail->>'probe' AS probe FROM genretry.events "
        "WHERE event = 'claimed' AND generator = $1 ORDER BY id", generator)]


def assert_not_stuck(state: asyncpg.Record) -> None:
    """A circuit is never left probing without a probe to end it."""
    assert not (state["state"] == "probing" and state["probe_lease"] is None), dict(state)

"""A generator that accepts connections and never answers is paused; it does not burn every row's retries.

Issue 10, class 12: time-outs count toward the generator's circuit as well as the row's attempts (SPEC 4).
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.support.factories import make_generation
from tests.support.hostile_peers import never, raw_peer
from tests.support.http import StartDaemon, settings_for, wait_until

pytestmark = pytest.mark.hostile

async def test_a_black_hole_opens_the_circuit(db_url: str, conn: asyncpg.Connection,
                                              start_daemon: StartDaemon) -> None:
    # rows come back due one second after a time-out, and could take ten retries each: without the circuit
    # the black hole would take them all within the test
    await conn.execute("UPDATE genretry.policy SET stale_after = '1 second', max_retries = 10, "
                       "pause_for = '1 hour', backoff_max = '1 hour'")
    ids = [await make_generation(conn, due=True) for _ in range(10)]
    async with raw_peer(never()) as peer:
        await start_daemon(settings_for(db_url, peer.url, PROCESSOR_RESPONSE_TIMEOUT="0.3",
                                        PROCESSOR_CONNECT_TIMEOUT="0.3", PROCESSOR_LEASE="2s",
                                        PROCESSOR_MAX_IN_FLIGHT="2", PROCESSOR_TICK="0.2"))

        async def paused() -> bool:
            state = await conn.fetchval("SELECT state FROM genretry.generator_state "
                                        "WHERE generator = 'generate-website'")
            return bool(state == "open")

        async def settled() -> bool:  # the deliveries claimed before it opened have timed out too
            return bool(await conn.fetchval("SELECT count(*) FROM generation_history WHERE lease_id IS NOT NULL") == 0)

        await wait_until(paused, within_s=15)
        await wait_until(settled)
        sent_until_paused = peer.requests
        await asyncio.sleep(1.5)  # longer than stale_after + a tick: an open circuit sends nothing more
        sent = peer.requests
    counts = [await conn.fetchval("SELECT retry_count FROM generation_history WHERE id = $1", i) for i in ids]
    # five time-outs open it; a freed slot is refilled before its outcome is written, so up to two rounds of
    # two in flight may already be on their way
    assert 5 <= sent_until_paused <= 5 + 2 * 2
    assert sent == sent_until_paused
    assert sum(counts) == sent and max(counts) <= 1  # well under max_retries = 10
    assert await conn.fetchval("SELECT count(*) FROM generation_history WHERE status = 'failed'") == 0
    reason = await conn.fetchval("SELECT reason FROM genretry.generator_state")
    assert reason == "no answer within 0.3 s from generate-website"

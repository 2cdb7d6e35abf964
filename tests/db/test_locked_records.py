"""record_deliveries never waits for a locked row; extend_leases keeps waiting outcomes' leases alive."""

from __future__ import annotations

import json
from datetime import timedelta

import asyncpg
import pytest

from tests.support.factories import make_generation, row
from tests.support.pg import as_daemon

pytestmark = pytest.mark.hostile


async def test_a_locked_row_comes_back_locked_and_the_batch_is_recorded(db_url: str,
                                                                      conn: asyncpg.Connection) -> None:
    daemon = await asyncpg.connect(as_daemon(db_url))
    admin = await asyncpg.connect(db_url)
    try:
        ids = [await make_generation(conn, due=True) for _ in range(3)]
        claimed = {r["id"]: r["lease_id"] for r in await daemon.fetch("SELECT * FROM genretry.claim('d', 10)")}
        async with admin.transaction():
            await admin.execute("SELECT 1 FROM generation_history WHERE id = $1 FOR UPDATE", ids[1])
            outcomes = [{"id": str(i), "lease_id": str(claimed[i]), "outcome": "accepted", "http_status": 202}
                        for i in ids]
            result = {r["id"]: r["result"] for r in await daemon.fetch(
                "SELECT * FROM genretry.record_deliveries($1::jsonb, 'd')", json.dumps(outcomes))}
            assert result == {ids[0]: "recorded", ids[1]: "locked", ids[2]: "recorded"}
            # the lease of the locked row cannot be touched either: skipped, not waited for
            extended = await daemon.fetch("SELECT genretry.extend_leases($1::jsonb, '10 minutes')",
                                          json.dumps([{"id": str(ids[1]), "lease_id": str(claimed[ids[1]])}]))
            assert extended == []
        assert (await row(conn, ids[1]))["retry_count"] == 0
    finally:
        await daemon.close()
        await admin.close()


async def test_extend_leases_only_for_the_lease_holder_and_never_beyond_the_cap(db_url: str,
                                                                               conn: asyncpg.Connection) -> None:
    daemon = await asyncpg.connect(as_daemon(db_url))
    try:
        mine, other = await make_generation(conn, due=True), await make_generation(conn, due=True)
        rows = await daemon.fetch("SELECT * FROM genretry.claim('d', 10, '1 minute')")
        claimed = {r["id"]: r["lease_id"] for r in rows}
        items = [{"id": str(mine), "lease_id": str(claimed[mine])},
                 {"id": str(other), "lease_id": "00000000-0000-0000-0000-000000000000"}]  # not its lease
        extended = [r[0] for r in await daemon.fetch("SELECT genretry.extend_leases($1::jsonb, '100 years')",
                                                     json.dumps(items))]
        assert extended == [mine]
        r = await row(conn, mine)
        ahead = await conn.fetchval("SELECT lease_until - now() FROM generation_history WHERE id = $1", mine)
        assert timedelta(minutes=50) < ahead <= timedelta(hours=1, seconds=5)  # capped at max_lease()
        assert r["deadline_at"] == r["lease_until"]
        before = (await row(conn, other))["lease_until"]
        await daemon.fetch("SELECT genretry.extend_leases($1::jsonb, '1 second')",
                           json.dumps(items[:1]))
        assert (await row(conn, mine))["lease_until"] >= r["lease_until"]  # never shortened
        assert (await row(conn, other))["lease_until"] == before
    finally:
        await daemon.close()

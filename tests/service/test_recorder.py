"""Outcomes are recorded in batches; one bad element does not cost the others their record."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from processor.contracts import OutcomeKind
from processor.delivery import Outcome
from processor.recorder import Recorder
from tests.support.factories import make_generation


async def test_a_bad_element_fails_alone(db_url: str, conn: asyncpg.Connection) -> None:
    ids = [await make_generation(conn, due=True) for _ in range(3)]
    claimed = {r["id"]: r["lease_id"] for r in await conn.fetch("SELECT * FROM genretry.claim('w', 10, '1 min')")}
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
    assert pool is not None
    recorder = Recorder(pool, "w", linger_s=0.05)
    try:
        results = await asyncio.gather(
            recorder.record(ids[0], claimed[ids[0]], Outcome(OutcomeKind.ACCEPTED, 202, "202")),
            recorder.record(ids[1], "not-a-lease", Outcome(OutcomeKind.ACCEPTED, 202, "202")),
            recorder.record(ids[2], claimed[ids[2]], Outcome(OutcomeKind.SERVER_ERROR, 500, "500")),
            return_exceptions=True)
    finally:
        await recorder.close()
        await pool.close()
    assert isinstance(results[1], asyncpg.DataError)
    assert [r.result for r in (results[0], results[2])] == ["recorded", "recorded"]
    counts = [await conn.fetchval("SELECT retry_count FROM generation_history WHERE id = $1", i) for i in ids]
    assert counts == [1, 0, 1]


async def test_many_outcomes_share_a_transaction(db_url: str, conn: asyncpg.Connection) -> None:
    ids = [await make_generation(conn, due=True) for _ in range(50)]
    claimed = await conn.fetch("SELECT * FROM genretry.claim('w', 100, '1 min')")
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
    assert pool is not None
    recorder = Recorder(pool, "w", linger_s=0.05, max_batch=100)
    try:
        await asyncio.gather(*(recorder.record(r["id"], r["lease_id"], Outcome(OutcomeKind.ACCEPTED, 202, "202"))
                               for r in claimed))
    finally:
        await recorder.close()
        await pool.close()
    assert await conn.fetchval("SELECT count(*) FROM generation_history WHERE retry_count = 1") == len(ids)
    events = await conn.fetch("SELECT DISTINCT at FROM genretry.events WHERE event = 'delivered'")
    assert len(events) == 1  # one transaction: one now() for all fifty


@pytest.mark.hostile
async def test_a_detail_the_database_refuses_still_records_the_outcome(db_url: str, conn: asyncpg.Connection) -> None:
    # jsonb refuses NUL and lone surrogates; an outcome that is not recorded is redelivered when its lease
    # ends, again and again: the outcome is written without its detail instead
    row_id = await make_generation(conn, due=True)
    claimed = await conn.fetchrow("SELECT * FROM genretry.claim('w', 10, '1 min')")
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
    assert pool is not None
    recorder = Recorder(pool, "w")
    try:
        verdict = await recorder.record(row_id, claimed["lease_id"],
                                        Outcome(OutcomeKind.SERVER_ERROR, 500, "500\x00", "bad \udcff\x00 answer"))
    finally:
        await recorder.close()
        await pool.close()
    assert verdict is not None and verdict.result == "recorded"
    r = await conn.fetchrow("SELECT retry_count, retry_phase, last_outcome FROM generation_history WHERE id = $1",
                            row_id)
    assert (r["retry_count"], r["retry_phase"], r["last_outcome"]) == (1, "backoff", "answer not recordable")


async def test_record_until_retries_a_database_that_comes_back_and_gives_up_at_its_time(
        db_url: str, conn: asyncpg.Connection) -> None:
    from processor import db
    from tests.support.pg import with_database

    row_id = await make_generation(conn, due=True)
    claimed = await conn.fetchrow("SELECT * FROM genretry.claim('w', 1, '1 min')")
    assert claimed is not None
    gave_up: list[int] = []
    database = await conn.fetchval("SELECT current_database()")
    admin = await asyncpg.connect(with_database(db_url, "postgres"))
    pool = await db.create_pool(db_url, min_size=1, max_size=1)
    recorder = Recorder(pool, "w", linger_s=0.0, on_give_up=lambda: gave_up.append(1))
    try:
        # connections refused for a while (as while the database restarts): retried, then written
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 "
                            "AND pid <> pg_backend_pid() AND pid <> $2", database, conn.get_server_pid())
        writing = asyncio.ensure_future(recorder.record_until(
            row_id, claimed["lease_id"], Outcome(OutcomeKind.ACCEPTED, 202, "202"), give_up_at=time.monotonic() + 30))
        await asyncio.sleep(0.6)  # at least one failed try
        assert not writing.done()
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        verdict = await asyncio.wait_for(writing, 15)
        assert verdict is not None and gave_up == []
        assert await conn.fetchval("SELECT last_outcome FROM generation_history WHERE id = $1", row_id)
        # refused until after give_up_at: one give-up, counted, and no exception
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 "
                            "AND pid <> pg_backend_pid() AND pid <> $2", database, conn.get_server_pid())
        assert await recorder.record_until(row_id, claimed["lease_id"], Outcome(OutcomeKind.ACCEPTED, 202, "202"),
                                           give_up_at=time.monotonic() + 0.5) is None
        assert gave_up == [1]
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await admin.close()
        await recorder.close()
        pool.terminate()

"""The warm-up before READY: never fails the start, sends nothing to a generator."""

from __future__ import annotations

import asyncpg

from processor import db, warmup
from processor.credentials import Authority
from tests.support.http import Stub, settings_for
from tests.support.pg import as_daemon


async def test_warm_up_prepares_and_signs_without_contacting_generators(db_url: str, stub: Stub) -> None:
    settings = settings_for(db_url, stub.url)
    pool = await db.create_pool(as_daemon(db_url), min_size=1, max_size=1)
    try:
        timings = await warmup.warm_up(authority=Authority(settings), pool=pool, generators=["generate-website"],
                                       statements=["SELECT 1", "SELECT genretry.next_wakeup(clock_timestamp())"])
        assert timings["credential"] >= 0 and timings["statements"] >= 0
        assert stub.seen == []
    finally:
        await pool.close()


async def test_a_failing_step_is_skipped_not_fatal(db_url: str, stub: Stub) -> None:
    settings = settings_for(db_url, stub.url)
    pool = await db.create_pool(as_daemon(db_url), min_size=1, max_size=1)
    try:
        timings = await warmup.warm_up(authority=Authority(settings), pool=pool, generators=[],
                                       statements=["SELECT * FROM no_such_table"])
        assert timings["statements"] == -1 and timings["credential"] >= 0
        assert await pool.fetchval("SELECT 2") == 2  # the pool is fine afterwards
    finally:
        await pool.close()


async def test_closed_pool_does_not_stop_warm_up(db_url: str, stub: Stub) -> None:
    settings = settings_for(db_url, stub.url)
    pool = await db.create_pool(as_daemon(db_url), min_size=1, max_size=1)
    await pool.close()
    timings = await warmup.warm_up(authority=Authority(settings), pool=pool, generators=["generate-website"],
                                   statements=["SELECT 1"])
    assert timings["statements"] == -1
    assert isinstance(pool, asyncpg.Pool)

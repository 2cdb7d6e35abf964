"""The daemon's pool never hands out a connection that saw a suspect error (issue 10, class 14)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from processor import db
from processor.errors import DatabaseError


async def _pid(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT pg_backend_pid()"))


async def test_driver_state_error_discards_the_connection(db_url: str) -> None:
    pool = await db.create_pool(db_url, min_size=1, max_size=1)
    try:
        before = await _pid(pool)
        with pytest.raises(asyncpg.InternalClientError):
            async with pool.acquire():
                raise asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress")
        assert await _pid(pool) != before  # a fresh connection, not the one in an unknown state
    finally:
        await pool.close()


async def test_statement_error_keeps_the_connection(db_url: str) -> None:
    pool = await db.create_pool(db_url, min_size=1, max_size=1)
    try:
        before = await _pid(pool)
        with pytest.raises(asyncpg.DivisionByZeroError):
            await pool.fetchval("SELECT 1 / 0")
        assert await _pid(pool) == before  # the server reported a statement error: the session is fine
    finally:
        await pool.close()


async def test_a_backend_terminated_mid_statement_is_a_database_error_then_recovers(db_url: str) -> None:
    # deterministic: the statement itself ends its backend (terminating another backend raced the next
    # statement: it either reached the dying backend or found it gone, about one run in thirty the latter)
    pool = await db.create_pool(db_url, min_size=1, max_size=1)
    try:
        victim = await _pid(pool)
        with pytest.raises(db.TRANSIENT_ERRORS):
            await pool.fetchval("SELECT pg_terminate_backend(pg_backend_pid())")
        assert await _pid(pool) != victim
    finally:
        await pool.close()


async def test_a_backend_terminated_while_idle_is_replaced_before_the_next_statement(db_url: str) -> None:
    pool = await db.create_pool(db_url, min_size=1, max_size=1)
    admin = await asyncpg.connect(db_url)
    try:
        victim = await _pid(pool)
        assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", victim)  # waits for it to exit
        await asyncio.sleep(0.2)  # the closed socket is noticed by the event loop, as it is while a daemon idles
        assert await _pid(pool) != victim
    finally:
        await admin.close()
        await pool.close()


async def test_a_statement_the_server_cancelled_keeps_the_connection(db_url: str) -> None:
    # 57014 (statement_timeout, pg_cancel_backend) is reported by the server about one statement; before,
    # its class 57 counted as "session in doubt" and the connection was thrown away (and the LISTEN connection
    # with it, after a lent claim: tests/adversary/test_lent_claim_warmup_attacks.py)
    pool = await db.create_pool(db_url, min_size=1, max_size=1, server_settings={"statement_timeout": "100"})
    try:
        before = await _pid(pool)
        with pytest.raises(asyncpg.QueryCanceledError):
            await pool.fetchval("SELECT pg_sleep(5)")
        assert await _pid(pool) == before
        assert await pool.fetchval("SELECT 2") == 2
    finally:
        await pool.close()


async def test_timeout_mid_statement_discards_the_connection(db_url: str) -> None:
    pool = await db.create_pool(db_url, min_size=1, max_size=1, command_timeout=0.2)
    try:
        before = await _pid(pool)
        with pytest.raises(TimeoutError):
            await pool.fetchval("SELECT pg_sleep(5)")
        assert await _pid(pool) != before
    finally:
        await pool.close()


def test_driver_errors_are_transient() -> None:
    assert issubclass(asyncpg.InternalClientError, db.TRANSIENT_ERRORS)
    assert issubclass(DatabaseError, db.TRANSIENT_ERRORS)

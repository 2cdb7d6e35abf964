"""Rows with valid defaults, so a test states only what it is about."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from processor.db import Conn

SEED_ID = uuid.UUID("507db582-8c3f-4e4f-8703-947e6c469a5e")


async def one(conn: Conn, sql: str, *args: Any) -> asyncpg.Record:
    """The one row a query returns (a test fails here, not later, when there is none)."""
    record = await conn.fetchrow(sql, *args)
    assert record is not None, sql
    return record


async def make_generation(
    conn: Conn,
    *,
    id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    status: str = "generating",
    generator: str = "generate-website",
    request: Any = None,
    admin_note: str | None = None,
    retry_count: int = 0,
    heartbeat_at: datetime | None = None,
    age: timedelta = timedelta(0),
    due: bool = False,
) -> uuid.UUID:
    """Insert one generation. age backdates its status change; due=True makes it due now.

    One INSERT: the row is born due (stale for an hour), rather than written to after the fact, so the
    factory never writes deadline_at on a row that something else may already hold.
    """
    row_id = id or uuid.uuid4()
    changed = timedelta(hours=1) if due else age
    await conn.execute(
        """INSERT INTO generation_history
               (id, user_id, status, generator, request, admin_note, retry_count, heartbeat_at,
                status_changed_at, created_at, deadline_at)
           VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, now() - $9::interval, now() - $10::interval,
                   CASE WHEN $11 THEN now() - interval '1 second' END)""",
        row_id, user_id or uuid.uuid4(), status, generator,
        json.dumps({"prompt": "a bakery site"} if request is None else request),
        admin_note, retry_count, heartbeat_at, changed, age, due,
    )
    return row_id


async def row(conn: asyncpg.Connection, row_id: uuid.UUID) -> asyncpg.Record:
    record = await conn.fetchrow("SELECT * FROM generation_history WHERE id = $1", row_id)
    assert record is not None
    return record


async def events(conn: asyncpg.Connection, row_id: uuid.UUID) -> list[str]:
    return [r["event"] for r in await conn.fetch(
        "SELECT event FROM genretry.events WHERE generation_id = $1 ORDER BY id", row_id)]

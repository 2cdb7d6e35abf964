"""Test harness: a real PostgreSQL; a template migrated once per session; a fresh database per test.

LISTEN/NOTIFY only delivers on commit, so tests cannot share one database and roll back: each test gets
its own database cloned from the migrated template (CREATE DATABASE ... TEMPLATE), which takes ~50 ms.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from processor import migrate
from tests.support.pg import DAEMON_PASSWORD, DAEMON_ROLE, as_daemon, server, with_database

pytest_plugins = ("tests.support.http",)

_counter = itertools.count()
RUN_ID = uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """Admin URL of the test server; fails (never skips) when no database can be had."""
    try:
        with server() as (url, source):
            os.environ.setdefault("GENRETRY_TEST_DB_SOURCE", source)
            yield url
    except Exception as exc:
        pytest.fail(f"no PostgreSQL for the tests: {exc}", pytrace=False)


async def _admin(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(url)


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str) -> Iterator[str]:
    """A database migrated once per session, used as the template of every test database."""
    name = f"genretry_tpl_{RUN_ID}"

    async def create() -> None:
        admin = await _admin(pg_admin_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        conn = await asyncpg.connect(with_database(pg_admin_url, name))
        try:
            await migrate.migrate(conn)
            # the daemons in the tests log in as a role that holds genretry_processor and nothing else
            await conn.execute(f"""DO $$ BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{DAEMON_ROLE}') THEN
                    CREATE ROLE {DAEMON_ROLE} LOGIN PASSWORD '{DAEMON_PASSWORD}' IN ROLE genretry_processor;
                END IF; END $$""")
        finally:
            await conn.close()

    asyncio.run(create())
    yield name
    asyncio.run(_drop(pg_admin_url, name))


async def _drop(admin_url: str, name: str) -> None:
    admin = await _admin(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def create_test_db(admin_url: str, template: str | None) -> str:
    """Create a database (from the template, or empty) and return its name."""
    name = f"genretry_t_{RUN_ID}_{next(_counter)}"
    admin = await _admin(admin_url)
    try:
        clause = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await admin.close()
    return name


@pytest.fixture
async def db_url(pg_admin_url: str, template_db: str) -> AsyncIterator[str]:
    """URL of a fresh, migrated database for this test alone."""
    name = await create_test_db(pg_admin_url, template_db)
    yield with_database(pg_admin_url, name)
    await _drop(pg_admin_url, name)


@pytest.fixture
async def empty_db_url(pg_admin_url: str) -> AsyncIterator[str]:
    """URL of a fresh database with nothing migrated."""
    name = await create_test_db(pg_admin_url, None)
    yield with_database(pg_admin_url, name)
    await _drop(pg_admin_url, name)


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(db_url)
    yield connection
    await connection.close()


@pytest.fixture
async def daemon(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    """The same database as the daemon's login role (only genretry_processor)."""
    connection = await asyncpg.connect(as_daemon(db_url))
    yield connection
    await connection.close()

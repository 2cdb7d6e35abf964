"""Where the tests' PostgreSQL comes from: TEST_DATABASE_URL, else Docker (testcontainers), else pgserver.

Each source yields an admin URL on a server where the tests may create databases.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg


def with_database(url: str, name: str) -> str:
    """The same server URL, pointing at another database (query string such as ?host= kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


DAEMON_ROLE, DAEMON_PASSWORD = "genretry_test_daemon", "genretry-test-daemon"


async def as_role(conn: asyncpg.Connection, role: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """Run one statement as `role` (SET LOCAL ROLE, in its own transaction) and return its rows."""
    async with conn.transaction():
        await conn.execute(f"SET LOCAL ROLE {role}")
        return list(await conn.fetch(sql, *args))


def as_daemon(url: str) -> str:
    """The same database, as a login role that holds only genretry_processor (what the daemon runs as)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{DAEMON_ROLE}:{DAEMON_PASSWORD}@{host}"))


def _docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextlib.contextmanager
def server() -> Iterator[tuple[str, str]]:
    """Yield (admin URL, description of the source)."""
    url = os.environ.get("TEST_DATABASE_URL", "").strip()
    if url:
        yield url, "TEST_DATABASE_URL"
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as pg:
            yield pg.get_connection_url(), "testcontainers postgres:16"
        return
    try:
        import pgserver
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise RuntimeError(
            "no test database: set TEST_DATABASE_URL, start Docker, or install pgserver (make install)"
        ) from exc
    with tempfile.TemporaryDirectory(prefix="genretry-pg-") as tmp:
        srv = pgserver.get_server(tmp, cleanup_mode="stop")  # type: ignore[attr-defined]
        try:
            yield srv.get_uri("postgres"), "embedded pgserver"
        finally:
            srv.cleanup()

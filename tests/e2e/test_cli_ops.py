"""Operations from the shell: the schema as SQL for other migration tools; the reference generator stops clean."""

from __future__ import annotations

import asyncio
import signal
import socket

import asyncpg

from processor import migrate
from tests.support import cli


async def test_migrate_sql_prints_a_script_that_migrates_an_empty_database(empty_db_url: str) -> None:
    env = cli.env_for(empty_db_url)
    del env["DATABASE_URL"]  # --all needs no database
    script = await cli.run("migrate", "--sql", "--all", env=env)
    assert script.code == 0, script.err
    pending = await cli.run("migrate", "--sql", env=cli.env_for(empty_db_url))
    assert pending.code == 0 and pending.out == script.out  # nothing applied yet: everything is pending
    conn = await asyncpg.connect(empty_db_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('genretry.events')") is None  # --sql changed nothing
        await conn.execute(script.out)
        assert await migrate.check_schema(conn) == (migrate.required_version(), True)
    finally:
        await conn.close()
    again = await cli.run("migrate", "--dry-run", env=cli.env_for(empty_db_url))
    assert again.code == 0 and "up to date" in again.out
    nothing = await cli.run("migrate", "--sql", env=cli.env_for(empty_db_url))
    assert "INSERT INTO genretry.schema_migrations" not in nothing.out and "-- code:" not in nothing.out


async def test_serve_generator_exits_0_on_sigterm(db_url: str) -> None:
    """A SIGTERM as soon as the port accepts is a clean stop (exit 0): the handlers are installed before the
    port opens (uvicorn's own capture re-raised it after shutdown: -15 about one run in three). Five times."""
    for _ in range(5):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = await cli.start("serve-generator", "--port", str(port), env=cli.env_for(db_url))
        try:
            async with asyncio.timeout(20):
                while True:
                    try:
                        _, writer = await asyncio.open_connection("127.0.0.1", port)
                    except OSError:
                        await asyncio.sleep(0.01)
                        continue
                    writer.close()
                    break
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

"""The admin CLI: a thin layer over the SQL admin API, with its output and exit codes."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import asyncpg

from tests.support import cli
from tests.support.factories import make_generation


async def test_status_shows_overview_and_stuck_rows_with_reasons(db_url: str, conn: asyncpg.Connection) -> None:
    stuck = await make_generation(conn, age=timedelta(minutes=9), generator="generate-php-website")
    await conn.execute("UPDATE generation_history SET deadline_at = now() - interval '2 minutes' WHERE id = $1",
                       stuck)
    await make_generation(conn)
    result = await cli.run("status", env=cli.env_for(db_url))
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("overview")
    assert any(line.startswith("generate-php-website | generating | 1") for line in lines)
    assert "stuck (1)" in result.out
    row = next(line for line in lines if line.startswith(str(stuck)))
    assert "no heartbeat for 9 min (stale after 7 min)" in row
    header = next(line for line in lines if line.startswith("id "))
    assert row.index("generate-php-website") == header.index("generator")  # aligned columns


async def test_status_json_for_scripts(db_url: str, conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, due=True)
    result = await cli.run("status", "--json", env=cli.env_for(db_url))
    assert result.code == 0
    data = json.loads(result.out)
    assert [s["id"] for s in data["stuck"]] == [str(row_id)]
    assert data["stuck"][0]["reason"].startswith("no heartbeat for")
    assert data["overview"][0]["generator"] == "generate-website"


async def test_reset_retry_now_give_up_and_history(db_url: str, conn: asyncpg.Connection) -> None:
    env = cli.env_for(db_url)
    row_id = await make_generation(conn, status="failed", retry_count=2, admin_note="retry:2")
    reset = await cli.run("reset", str(row_id), env=env)
    assert (reset.code, reset.out.strip()) == (0, f"{row_id}: reset to pending and due now "
                                                  "(was failed after 2 automatic retries)")
    retry = await cli.run("retry-now", str(row_id), env=env)
    assert retry.code == 0 and "due now (0 of 2 automatic retries used)" in retry.out
    give_up = await cli.run("give-up", str(row_id), "--reason", "user cancelled", env=env)
    assert give_up.code == 0 and give_up.out.strip() == f"{row_id}: failed (user cancelled)"
    assert await conn.fetchval("SELECT status FROM generation_history WHERE id = $1", row_id) == "failed"
    history = await cli.run("history", str(row_id), env=env)
    assert history.code == 0
    assert [line.split("|")[2].strip() for line in history.out.splitlines()[2:]] == ["reset", "retry_now", "given_up"]
    as_json = json.loads((await cli.run("history", str(row_id), "--json", env=env)).out)
    assert as_json[2]["detail"]["reason"] == "user cancelled" and as_json[0]["actor"] == "postgres"


async def test_unknown_id_exits_1_with_the_databases_message(db_url: str) -> None:
    missing = uuid.uuid4()
    for args in (("reset", str(missing)), ("retry-now", str(missing)), ("history", str(missing)),
                 ("give-up", str(missing), "--reason", "x")):
        result = await cli.run(*args, env=cli.env_for(db_url))
        assert (result.code, result.err.strip()) == (1, f"processor: generation {missing} not found"), args


async def test_malformed_id_exits_2_before_touching_the_database() -> None:
    result = await cli.run("reset", "507db582", env=cli.env_for("postgresql://nobody@127.0.0.1:1/none"))
    assert result.code == 2
    assert result.err.strip() == "processor: '507db582' is not a generation id (a UUID)"


async def test_a_live_lease_needs_force(db_url: str, conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, due=True)
    await conn.fetch("SELECT * FROM genretry.claim('w', 10, '1 minute')")
    refused = await cli.run("give-up", str(row_id), "--reason", "stop", env=cli.env_for(db_url))
    assert refused.code == 1 and "has a delivery in flight" in refused.err and "force" in refused.err
    forced = await cli.run("give-up", str(row_id), "--reason", "stop", "--force", env=cli.env_for(db_url))
    assert forced.code == 0

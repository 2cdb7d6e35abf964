"""The admin CLI on a bad day: one line and an exit code for every database error, --json everywhere,
the failed listing with a bulk reset, and nothing from a row that can act on the admin's terminal."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.support import cli
from tests.support.factories import make_generation

NOWHERE = "postgresql://nobody@127.0.0.1:1/none"


def _one_line(result: cli.Result) -> str:
    assert "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    return result.err.strip()


@pytest.mark.parametrize("value", ["-1", "0", "abc", "100001"])
async def test_a_bad_limit_is_one_line_naming_the_option_before_connecting(value: str) -> None:
    result = await cli.run("status", "--limit", value, env=cli.env_for(NOWHERE))
    assert result.code == 2 and result.out == ""
    assert "--limit" in _one_line(result)


async def test_an_unmigrated_database_is_one_line_and_exit_2(empty_db_url: str) -> None:
    env = cli.env_for(empty_db_url)
    for args in (("status",), ("failed",), ("history", str(uuid.uuid4())), ("reset", str(uuid.uuid4())),
                 ("reset", str(uuid.uuid4()), str(uuid.uuid4()), "--dry-run"), ("status", "--json")):
        result = await cli.run(*args, env=env)
        assert result.code == 2, (args, result.err)
        assert "run `processor migrate`" in _one_line(result), args


@pytest.fixture
async def stranger_url(db_url: str, conn: asyncpg.Connection) -> AsyncIterator[str]:
    """A login role that may connect but holds none of the genretry roles."""
    name = f"genretry_test_stranger_{uuid.uuid4().hex[:8]}"
    await conn.execute(f"CREATE ROLE {name} LOGIN")
    parts = urlsplit(db_url)
    yield urlunsplit(parts._replace(netloc=f"{name}@{parts.netloc.rsplit('@', 1)[-1]}"))
    await conn.execute(f"DROP OWNED BY {name}")
    await conn.execute(f"DROP ROLE {name}")


async def test_a_role_without_rights_is_one_line_and_exit_2(stranger_url: str, conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, status="failed")
    env = cli.env_for(stranger_url)
    for args in (("status",), ("failed", "--json"), ("history", str(row_id)), ("reset", str(row_id)),
                 ("reset", str(row_id), str(uuid.uuid4())), ("give-up", str(row_id), "--reason", "x")):
        result = await cli.run(*args, env=env)
        assert result.code == 2, (args, result.err)
        assert "permission denied" in _one_line(result) and "genretry_admin" in result.err, args
    assert await conn.fetchval("SELECT status FROM generation_history WHERE id = $1", row_id) == "failed"


async def _fail(conn: asyncpg.Connection, generator: str, message: str, ago: str = "1 minute") -> uuid.UUID:
    row_id = await make_generation(conn, generator=generator, retry_count=2)
    await conn.execute("UPDATE generation_history SET status = 'failed', error_message = $2 WHERE id = $1",
                       row_id, message)
    await conn.execute("ALTER TABLE generation_history DISABLE TRIGGER USER")
    try:
        await conn.execute("UPDATE generation_history SET updated_at = now() - $2::text::interval WHERE id = $1",
                           row_id, ago)
    finally:
        await conn.execute("ALTER TABLE generation_history ENABLE TRIGGER USER")
    return row_id


async def test_failed_lists_with_filters_and_resets_the_set(db_url: str, conn: asyncpg.Connection) -> None:
    env = cli.env_for(db_url)
    php = await _fail(conn, "generate-php-website", "retries exhausted: 2 automatic retries made")
    web = await _fail(conn, "generate-website", "generator rejected the request (422)")
    old = await _fail(conn, "generate-website", "retries exhausted: 2 automatic retries made", ago="3 days")
    await make_generation(conn)  # live: never listed
    listed = json.loads((await cli.run("failed", "--json", env=env)).out)
    assert [r["id"] for r in listed] == [str(web), str(php), str(old)] or \
        {r["id"] for r in listed} == {str(web), str(php), str(old)}
    by = {"--generator": ("generate-website", {web, old}), "--since": ("1d", {web, php}),
          "--reason": ("EXHAUSTED", {php, old})}
    for option, (value, expected) in by.items():
        result = await cli.run("failed", option, value, "--json", env=env)
        assert result.code == 0, result.err
        assert {uuid.UUID(r["id"]) for r in json.loads(result.out)} == expected, option
    table = await cli.run("failed", "--generator", "generate-php-website", env=env)
    assert table.code == 0 and str(php) in table.out and str(web) not in table.out

    dry = await cli.run("failed", "--reason", "exhausted", "--reset", "--dry-run", "--json", env=env)
    assert dry.code == 0 and {r["id"] for r in json.loads(dry.out)["would_reset"]} == {str(php), str(old)}
    assert await conn.fetchval("SELECT count(*) FROM generation_history WHERE status = 'failed'") == 3

    done = await cli.run("failed", "--reason", "exhausted", "--reset", "--json", env=env)
    assert done.code == 0, done.err
    assert all(r["ok"] for r in json.loads(done.out)["results"])
    rows = await conn.fetch("SELECT id, status, retry_count FROM generation_history WHERE id = ANY($1)", [php, old])
    assert {(r["status"], r["retry_count"]) for r in rows} == {("pending", 0)}
    assert await conn.fetchval("SELECT status FROM generation_history WHERE id = $1", web) == "failed"


async def test_a_limit_that_cuts_the_set_says_so(db_url: str, conn: asyncpg.Connection) -> None:
    """`failed --reset` resets the newest --limit rows (50 by default): when more match, the admin is told,
    in the table and in JSON (`more_match`), instead of reading "reset 2 of 2" as all of them."""
    env = cli.env_for(db_url)
    rows = [await _fail(conn, "generate-website", "retries exhausted", ago=f"{i} hours") for i in range(3)]
    listed = await cli.run("failed", "--limit", "2", env=env)
    assert listed.code == 0 and "only the newest 2 were listed" in listed.out
    assert "more failed generations match" not in (await cli.run("failed", "--limit", "3", env=env)).out
    dry = json.loads((await cli.run("failed", "--reset", "--dry-run", "--limit", "2", "--json", env=env)).out)
    assert dry["more_match"] is True and len(dry["would_reset"]) == 2
    first = await cli.run("failed", "--reset", "--limit", "2", env=env)
    assert first.code == 0 and "reset 2 of 2 generation(s)" in first.out
    assert "only the newest 2 were reset" in first.out
    second = await cli.run("failed", "--reset", "--limit", "2", "--json", env=env)
    assert json.loads(second.out)["more_match"] is False and len(json.loads(second.out)["results"]) == 1
    assert await conn.fetchval("SELECT count(*) FROM generation_history WHERE id = ANY($1) AND status = 'pending'",
                               rows) == 3


async def test_reset_of_many_ids_reports_each_and_exits_1_when_one_is_refused(db_url: str,
                                                                              conn: asyncpg.Connection) -> None:
    env = cli.env_for(db_url)
    a, b = await _fail(conn, "generate-website", "x"), await _fail(conn, "generate-website", "y")
    missing = uuid.uuid4()
    dry = await cli.run("reset", str(a), str(b), str(missing), "--dry-run", env=env)
    assert dry.code == 1 and "would reset 2 generation(s)" in dry.out and "(not found)" in dry.out
    assert await conn.fetchval("SELECT count(*) FROM generation_history WHERE status = 'failed'") == 2
    result = await cli.run("reset", str(a), str(b), str(missing), "--json", env=env)
    assert result.code == 1
    outcome = {r["id"]: r["ok"] for r in json.loads(result.out)["results"]}
    assert outcome == {str(a): True, str(b): True, str(missing): False}
    assert await conn.fetchval("SELECT count(*) FROM generation_history WHERE status = 'pending'") == 2


async def test_json_on_every_admin_command(db_url: str, conn: asyncpg.Connection) -> None:
    env = cli.env_for(db_url)
    row_id = await make_generation(conn, status="failed", retry_count=1)
    for args in (("reset", str(row_id)), ("retry-now", str(row_id)), ("give-up", str(row_id), "--reason", "r")):
        result = await cli.run(*args, "--json", env=env)
        assert result.code == 0, result.err
        data = json.loads(result.out)
        assert data["id"] == str(row_id) and data["ok"] is True and data["message"].startswith(str(row_id))
    listings: tuple[tuple[str, ...], ...] = (("status",), ("failed",), ("history", str(row_id)))
    for listing in listings:
        result = await cli.run(*listing, "--json", env=env)
        assert result.code == 0 and json.loads(result.out) is not None, listing


HOSTILE = "gen\x1b[2J\x1b]0;owned\x07\u202eevil\u200b"


async def test_row_controlled_text_never_acts_on_the_terminal(db_url: str, conn: asyncpg.Connection) -> None:
    env = cli.env_for(db_url)
    await conn.execute("ALTER TABLE generation_history DISABLE TRIGGER USER")  # as an old row may hold it
    try:
        live = await make_generation(conn, generator=HOSTILE)
        await conn.execute("""UPDATE generation_history SET deadline_at = now() - interval '5 minutes',
                                  status_changed_at = now() - interval '1 hour' WHERE id = $1""", live)
    finally:
        await conn.execute("ALTER TABLE generation_history ENABLE TRIGGER USER")
    dead = await _fail(conn, "generate-website", f"generator said: {HOSTILE}")
    outputs = [await cli.run("status", env=env), await cli.run("failed", env=env),
               await cli.run("give-up", str(live), "--reason", HOSTILE, "--force", env=env),
               await cli.run("history", str(live), env=env), await cli.run("history", str(dead), "--json", env=env)]
    for result in outputs:
        assert result.code == 0, result.err
        for char in ("\x1b", "\x07", "\u202e", "\u200b"):
            assert char not in result.out + result.err
    assert "gen\\x1b[2J" in outputs[0].out  # the generator name, escaped, in both tables
    assert "\\x1b[2J" in outputs[1].out and "\\u202e" in outputs[1].out  # shown, escaped
    refused = await cli.run("history", f"{HOSTILE}", env=env)
    assert refused.code == 2 and "\x1b" not in refused.err

"""processor run / check as subprocesses: signals, --once, --dry-run, configuration errors."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from processor import migrate
from tests.support import cli
from tests.support.factories import make_generation
from tests.support.http import Stub, answer_after
from tests.support.pg import with_database


def events(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


async def test_sigterm_finishes_or_releases_in_flight_work_and_exits_0(db_url: str, conn: asyncpg.Connection,
                                                                       stub: Stub) -> None:
    stub.behaviours["generate-website"] = answer_after(4)
    for _ in range(10):
        await make_generation(conn, due=True)
    proc = await cli.start("run", env=cli.daemon_env_for(db_url, stub.url, PROCESSOR_GRACE="1",
                                                  PROCESSOR_RESPONSE_TIMEOUT="10", PROCESSOR_GENERATOR_IN_FLIGHT="2"))
    await stub.wait_for(2, within_s=15)
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, err.decode()
    leased = await conn.fetchval("SELECT count(*) FROM generation_history WHERE lease_id IS NOT NULL "
                                 "OR retry_phase = 'leased'")
    assert leased == 0
    released = await conn.fetchval("SELECT count(*) FROM genretry.events WHERE event = 'released'")
    assert released == 10  # 2 cut off in flight, 8 never sent
    assert await conn.fetchval("SELECT max(retry_count) FROM generation_history") == 0
    names = [e["event"] for e in events(out.decode())]
    shutdown = [n for n in names if n in ("daemon_stopping", "grace_period_over", "daemon_stopped")]
    assert shutdown == ["daemon_stopping", "grace_period_over", "daemon_stopped"]
    assert names[-1] == "daemon_stopped"
    if "daemon_ready" in names:
        assert names.index("daemon_ready") < names.index("daemon_stopping")  # never READY once stopping


async def test_once_sweeps_waits_and_exits(db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    ids = [await make_generation(conn, due=True) for _ in range(3)]
    result = await cli.run("run", "--once", env=cli.daemon_env_for(db_url, stub.url))
    assert result.code == 0, result.err
    assert len(stub.seen) == 3
    assert await conn.fetchval("SELECT count(*) FROM generation_history WHERE id = ANY($1) AND retry_count = 1",
                               ids) == 3
    retries = [e for e in events(result.out) if e["event"] == "auto_retry"]
    assert len(retries) == 3 and all(e["outcome"] == "accepted" for e in retries)


async def test_dry_run_logs_and_changes_nothing(db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    row_id = await make_generation(conn, due=True)
    spent = await make_generation(conn, due=True, retry_count=2)
    before = await conn.fetch("SELECT * FROM generation_history ORDER BY id")
    result = await cli.run("run", "--dry-run", env=cli.daemon_env_for(db_url, stub.url))
    assert result.code == 0, result.err
    logged = {e["event"]: e for e in events(result.out)}
    assert logged["would_deliver"]["generation_id"] == str(row_id)
    assert logged["would_fail_exhausted"]["generation_id"] == str(spent)
    assert stub.seen == []
    assert await conn.fetch("SELECT * FROM generation_history ORDER BY id") == before
    assert await conn.fetchval("SELECT count(*) FROM genretry.events") == 0


async def test_bad_configuration_lists_every_problem_and_exits_2(db_url: str) -> None:
    env = cli.env_for(db_url, "not a url", PROCESSOR_AUTH_MODE="magic", PROCESSOR_TICK="soon",
                      PROCESSOR_MAX_IN_FLIGHT="0", PROCESSOR_LEASE="5", PROCESSOR_RESPONSE_TIMEOUT="30")
    result = await cli.run("run", env=env)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert all(line.startswith("processor: config: ") for line in lines)
    named = " ".join(lines)
    for setting in ("FUNCTIONS_URL", "PROCESSOR_AUTH_MODE", "PROCESSOR_TICK", "PROCESSOR_MAX_IN_FLIGHT",
                    "PROCESSOR_LEASE"):
        assert setting in named, setting
    assert "Traceback" not in result.err


async def test_missing_keys_for_the_mode_exit_2(db_url: str) -> None:
    env = cli.env_for(db_url, PROCESSOR_JWT_PRIVATE_KEY="", PROCESSOR_JWT_KID="")
    result = await cli.run("run", env=env)
    assert result.code == 2 and "PROCESSOR_JWT_PRIVATE_KEY: required for PROCESSOR_AUTH_MODE=scoped-jwt" in result.err


async def test_an_old_schema_is_refused_with_the_command(empty_db_url: str) -> None:
    result = await cli.run("run", env=cli.env_for(empty_db_url))
    assert result.code == 2
    assert result.err.strip() == (f"processor: database schema is at version 0, this processor needs "
                                  f"{migrate.required_version()}: run `processor migrate`")


async def test_check_reports_each_part(db_url: str, stub: Stub) -> None:
    env = cli.daemon_env_for(db_url, stub.url, SUPABASE_SECRET_KEYS='{"default": "sb_secret_abcdefghijklmnop"}')
    result = await cli.run("check", env=env)
    assert result.code == 0, result.out + result.err
    for line in ("ok   database:", f"ok   schema: version {migrate.required_version()}", "ok   listen:",
                 "ok   authority: scoped-jwt", "--   route generate-website:", "all checks passed"):
        assert line in result.out, line
    assert stub.seen == []  # the unit runs check before every start: no generator is contacted (no 401s)
    probed = await cli.run("check", "--probe-routes", env=env)
    assert probed.code == 0 and "ok   route generate-website:" in probed.out
    assert len(stub.seen) == 3
    assert "sb_secret_abcdefghijklmnop" not in result.out and "super-secret-jwt" not in result.out
    assert "secret_keys" in result.out and "default=sb_secret_… (26 characters, sha256 " in result.out
    pem = env["PROCESSOR_JWT_PRIVATE_KEY"]
    body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    assert not any(body[i:i + 8] in result.out for i in range(len(body) - 7))  # not even a prefix of the key
    fingerprint = hashlib.sha256(pem.strip().encode()).hexdigest()[:8]
    assert f"jwt_private_key       -----BEGIN … ({len(pem.strip())} characters, sha256 {fingerprint})" in result.out


async def test_check_fails_on_an_unreachable_route(db_url: str) -> None:
    result = await cli.run("check", "--probe-routes", env=cli.env_for(db_url, "http://127.0.0.1:9"))
    assert result.code == 1
    assert "FAIL route generate-website:" in result.out


async def test_a_database_that_is_down_is_waited_for_but_mistakes_are_reported(db_url: str, tmp_path: Path) -> None:
    """At start, `run` waits out a database that is down (a restart, refused connections), saying so and
    telling systemd the start takes longer; a wrong database or role is reported at once; --once never waits."""
    parts = urlsplit(db_url)
    for url in (with_database(db_url, "genretry_no_such_database"),
                urlunsplit(parts._replace(netloc=f"genretry_no_such_role@{parts.netloc.rsplit('@', 1)[-1]}"))):
        result = await cli.run("run", env=cli.env_for(url), timeout_s=30)
        assert result.code != 0 and "does not exist" in result.err + result.out
    down = "postgresql://postgres@127.0.0.1:1/postgres"
    once = await cli.run("run", "--once", env=cli.env_for(down), timeout_s=30)
    assert once.code != 0
    log = tmp_path / "daemon.log"
    proc = await cli.start("run", env=cli.env_for(down), log=log)
    await cli.wait_for_line(log, '"database_unavailable"')
    assert proc.returncode is None
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 20) == 0

"""Adversary: hostile values in what the admin CLI prints, bad option values, secrets from odd files."""

from __future__ import annotations

import asyncio
import io
import json
import os
import uuid
from pathlib import Path

import asyncpg
import pytest

from processor import admin
from processor.admin import FailedFilter
from processor.config import Settings
from tests.support import cli
from tests.support.factories import make_generation

HOSTILE = "\x1b[2J\x1b]0;pwned\x07\u202egnp.exe\u2028\u200b\x9b31m\r\nfake | line"


def _settings(db_url: str) -> Settings:
    return Settings.from_env({"DATABASE_URL": db_url})


def _unsafe(text: str) -> list[str]:
    """Characters a terminal would act on (or hide), other than the table's own newlines."""
    return [c for c in text if c != "\n" and (not c.isprintable() or c in "\u202e\u2028\u200b")]


async def test_hostile_row_text_is_printable_in_every_listing_and_valid_json(
        db_url: str, conn: asyncpg.Connection) -> None:
    """Survived: escape sequences, bidi overrides, line separators and C1 controls in a row's generator,
    error_message, an event's detail and a give-up reason: text output has none, --json parses back."""
    failed = await make_generation(conn, status="failed", generator="gen" + HOSTILE)
    await conn.execute("UPDATE generation_history SET error_message = $2 WHERE id = $1", failed, HOSTILE * 3)
    stuck = await make_generation(conn, due=True, generator=HOSTILE)
    await conn.execute("SELECT genretry.give_up($1, $2)", stuck, "reason " + HOSTILE)
    await make_generation(conn, due=True, generator=HOSTILE + "2")
    settings = _settings(db_url)
    for as_json in (False, True):
        outs = [io.StringIO() for _ in range(3)]
        assert await admin.status(settings, as_json=as_json, out=outs[0]) == 0
        assert await admin.failed(settings, FailedFilter(), as_json=as_json, out=outs[1]) == 0
        assert await admin.history(settings, stuck, as_json=as_json, out=outs[2]) == 0
        outputs = [o.getvalue() for o in outs]
        for text in outputs:
            assert _unsafe(text) == [], text[:300]
            if as_json:
                assert text.isascii() and len(text.splitlines()) == 1
                json.loads(text)
    # what --json gives back is the stored text, exactly
    out = io.StringIO()
    await admin.failed(settings, FailedFilter(), as_json=True, out=out)
    messages = {r["error_message"] for r in json.loads(out.getvalue())}
    assert HOSTILE * 3 in messages


async def test_one_huge_name_does_not_multiply_the_output(db_url: str, conn: asyncpg.Connection) -> None:
    for _ in range(19):
        await make_generation(conn, status="failed")
    await make_generation(conn, status="failed", generator="g" * 1_000_000)  # written by the app, not by us
    out = io.StringIO()
    assert await admin.failed(_settings(db_url), FailedFilter(), as_json=False, out=out) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 22
    # the huge row may be long; the other rows must not be padded to its width
    assert sum(len(line) for line in lines) < 3 * 1_000_000, f"{sum(len(x) for x in lines)} characters printed"


@pytest.mark.parametrize("since", ["999999999999d", "9999999d", "99999999999999999999s"])
async def test_an_absurd_since_is_one_line_and_exit_2(db_url: str, since: str) -> None:
    result = await cli.run("failed", "--since", since, env=cli.env_for(db_url))
    assert result.code == 2, result.err
    assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1


async def test_a_secret_file_that_is_a_fifo_does_not_hang(db_url: str, tmp_path: Path) -> None:
    fifo = tmp_path / "jwt-secret"
    os.mkfifo(fifo)
    env = {k: v for k, v in cli.env_for(db_url).items() if k != "SUPABASE_JWT_SECRET"}
    env["SUPABASE_JWT_SECRET_FILE"] = str(fifo)
    proc = await cli.start("check", env=env)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 10)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("`processor check` hung reading SUPABASE_JWT_SECRET_FILE (a FIFO)") from None
    assert proc.returncode == 2
    assert err.decode().startswith("processor: config: SUPABASE_JWT_SECRET:")


@pytest.mark.parametrize("kind", ["directory", "symlink loop", "huge", "not utf-8", "missing", "both set"])
async def test_odd_secret_files_are_one_line_naming_the_setting(db_url: str, tmp_path: Path, kind: str) -> None:
    """Survived: each odd NAME_FILE (and NAME with NAME_FILE) is one config line, exit 2, secret unshown."""
    path = tmp_path / "secret"
    env = {k: v for k, v in cli.env_for(db_url).items() if k != "SUPABASE_JWT_SECRET"}
    if kind == "directory":
        path.mkdir()
    elif kind == "symlink loop":
        (tmp_path / "other").symlink_to(path)
        path.symlink_to(tmp_path / "other")
    elif kind == "huge":
        path.write_bytes(b"s" * (2 << 20))
    elif kind == "not utf-8":
        path.write_bytes(b"secret-\xff\xfe-value-1234567890")
    elif kind == "both set":
        path.write_text("file-secret-value-0123456789abcdef\n")
        env["SUPABASE_JWT_SECRET"] = "inline-secret-value-0123456789abcdef"
    env["SUPABASE_JWT_SECRET_FILE"] = str(path)
    result = await cli.run("status", env=env)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("processor: config: SUPABASE_JWT_SECRET:"), result.err
    assert "secret-value" not in result.err and "sssssss" not in result.err


async def test_bad_ids_and_limits_are_one_line_exit_2(db_url: str) -> None:
    """Survived: hostile ids and limits (escapes, huge numbers) never reach the database; one line, exit 2."""
    env = cli.env_for(db_url)
    for args in (["history", "\x1b[2J" + "0" * 5000], ["reset", str(uuid.uuid4()), "not-a-uuid"],
                 ["status", "--limit", "99999999999999999999999"], ["failed", "--limit", "0"],
                 ["give-up", "x", "--reason", "r"]):
        result = await cli.run(*args, env=env)
        assert result.code == 2, (args, result.err)
        assert len(result.err.strip().splitlines()) == 1 and "\x1b" not in result.err, result.err


@pytest.mark.parametrize("column,value", [("heartbeat_at", "infinity"), ("status_changed_at", "-infinity"),
                                          ("status_changed_at", "infinity"), ("heartbeat_at", "-infinity")])
async def test_infinite_times_in_a_row_do_not_break_status(db_url: str, conn: asyncpg.Connection, column: str,
                                                           value: str) -> None:
    """Probe: the app writes an infinite time into a live row; `processor status` and `failed` still answer."""
    row_id = await make_generation(conn)
    await conn.execute(f"UPDATE generation_history SET {column} = '{value}' WHERE id = $1", row_id)
    settings = _settings(db_url)
    for as_json in (False, True):
        out = io.StringIO()
        assert await admin.status(settings, as_json=as_json, out=out) == 0
        if as_json:
            json.loads(out.getvalue())


@pytest.mark.parametrize("setting", ["FUNCTIONS_URL", "PROCESSOR_ROUTES"])
async def test_a_password_in_a_generator_url_never_reaches_check_output(db_url: str, setting: str) -> None:
    password = "Sup3rS3cretPw0rd"
    url = f"https://svc:{password}@example.invalid/functions/v1"
    extra = {"FUNCTIONS_URL": url} if setting == "FUNCTIONS_URL" else {
        "PROCESSOR_ROUTES": json.dumps({"generate-website": url + "/generate-website"})}
    result = await cli.run("check", env=cli.env_for(db_url, **extra))
    assert password[:7] not in result.out + result.err

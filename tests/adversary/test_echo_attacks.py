"""Adversary: a generator echoes the key it was sent, transformed; hostile names in the daemon's log."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import asyncpg
import pytest
import structlog
from aiohttp import web

from processor import routing
from tests.support.factories import make_generation
from tests.support.http import StartDaemon, Stub, first_outcome, settings_for, status_of, wait_until

KEY = "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz"
BODY = KEY.removeprefix("sb_secret_")


def _pieces(text: str, *, fold: bool = False) -> list[str]:
    """7-character pieces of the key holding some of its secret part (the `sb_secret_` prefix is public)
    found in text: SPEC 6 allows at most 6 characters. fold: compare case-insensitively."""
    key, text = (KEY.lower(), text.lower()) if fold else (KEY, text)
    return [key[i:i + 7] for i in range(4, len(key) - 6) if key[i:i + 7] in text]


ENCODINGS: dict[str, Callable[[str], str]] = {
    "base64": lambda k: base64.b64encode(k.encode()).decode(),
    "hex": lambda k: k.encode().hex(),
    "upper case": lambda k: k.upper(),
    "6-character chunks": lambda k: " ".join(k[i:i + 6] for i in range(0, len(k), 6)),
    "reversed": lambda k: k[::-1],
}
DECODERS: dict[str, Callable[[str], str]] = {
    "base64": lambda t: _decode_all(t, lambda w: base64.b64decode(w + "==", validate=False).decode("latin-1")),
    "hex": lambda t: _decode_all(t, lambda w: bytes.fromhex(w).decode("latin-1")),
    "upper case": lambda t: t,  # compared case-insensitively
    "6-character chunks": lambda t: t.replace(" ", ""),
    "reversed": lambda t: t[::-1],
}


def _decode_all(text: str, decode: Callable[[str], str]) -> str:
    out = []
    for word in text.replace('"', " ").split():
        try:
            out.append(decode(word))
        except ValueError:
            out.append(word)
    return " ".join(out)


async def _failed_with_echo(db_url: str, conn: asyncpg.Connection, stub: Stub, start_daemon: StartDaemon,
                            echo: str) -> asyncpg.Record:
    async def echoing(_request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": "bad_request", "message": f"unknown apikey {echo}"}, status=400)

    stub.behaviours["generate-website"] = echoing
    row_id = await make_generation(conn, due=True)
    await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60", PROCESSOR_AUTH_MODE="service-key",
                                    SUPABASE_SECRET_KEYS=json.dumps({"default": KEY})))

    async def failed() -> bool:
        return await status_of(conn, row_id) == "failed"
    await wait_until(failed, within_s=15)
    row = await conn.fetchrow(
        """SELECT h.error_message, (SELECT string_agg(e.detail::text, ' ') FROM genretry.events e
                                    WHERE e.generation_id = h.id) AS details
           FROM generation_history h WHERE h.id = $1""", row_id)
    assert row is not None
    return row


@pytest.mark.parametrize("encoding", list(ENCODINGS))
async def test_an_encoded_echo_of_the_key_is_not_stored(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                                        start_daemon: StartDaemon, encoding: str) -> None:
    assert stub.seen == []
    row = await _failed_with_echo(db_url, conn, stub, start_daemon, ENCODINGS[encoding](KEY))
    assert stub.seen[0].headers["apikey"] == KEY  # the generator did get the key
    for stored in (row["error_message"], row["details"]):
        assert _pieces(DECODERS[encoding](stored), fold=encoding == "upper case") == [], stored


@pytest.mark.parametrize("echo", [
    KEY, BODY, json.dumps({"apikey": KEY}), KEY.replace("_", "%5F"), "Bearer " + KEY, KEY[:20] + "\n" + KEY[20:]])
async def test_plain_and_escaped_echoes_of_the_key_are_not_stored(db_url: str, conn: asyncpg.Connection,
                                                                  stub: Stub, start_daemon: StartDaemon,
                                                                  echo: str) -> None:
    """Survived: verbatim, without prefix, inside JSON, percent-encoded, after Bearer, cut by a newline."""
    row = await _failed_with_echo(db_url, conn, stub, start_daemon, echo)
    assert _pieces(row["error_message"]) == [] and _pieces(row["details"]) == []
    assert "[redacted" in row["error_message"]


async def test_an_exhausted_rows_hostile_name_never_reaches_the_log_as_it_is(
        db_url: str, conn: asyncpg.Connection, stub: Stub, start_daemon: StartDaemon) -> None:
    hostile = "\x1b[2J\x1b]0;owned\x07" + "g" * 1_000_000
    row_id = await make_generation(conn, due=True, generator=hostile, retry_count=5)
    await conn.execute("UPDATE generation_history SET admin_note = NULL WHERE id = $1", row_id)
    with structlog.testing.capture_logs() as logs:
        await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))

        async def failed() -> bool:
            return await status_of(conn, row_id) == "failed"
        await wait_until(failed, within_s=15)
    assert any(e["event"] == "generation_exhausted" for e in logs)
    names = [e["generator"] for e in logs if "generator" in e]
    assert all(routing.is_name(n) or len(n) < 100 for n in names), [n[:40] for n in names]
    assert not stub.seen


async def test_dry_run_never_logs_a_hostile_name_as_it_is(db_url: str, conn: asyncpg.Connection,
                                                          stub: Stub) -> None:
    from processor.daemon import Daemon

    hostile = "\x1b[2J\x1b]0;owned\x07" + "g" * 1_000_000
    await make_generation(conn, due=True, generator=hostile)
    with structlog.testing.capture_logs() as logs:
        await Daemon(settings_for(db_url, stub.url)).run(dry_run=True, signals=False)
    assert any(e["event"].startswith("would_") for e in logs)
    names = [e["generator"] for e in logs if "generator" in e]
    assert all(routing.is_name(n) or len(n) < 100 for n in names), [n[:40] for n in names]
    assert not stub.seen


async def test_a_retry_after_that_isdigit_but_not_a_number_is_a_counted_503(
        db_url: str, conn: asyncpg.Connection, stub: Stub, start_daemon: StartDaemon) -> None:
    async def odd_retry_after(_request: web.Request) -> web.StreamResponse:
        return web.Response(status=503, text="busy", headers={"Retry-After": "\u00b2"})

    row_id, events = await first_outcome(db_url, conn, stub, start_daemon, odd_retry_after)
    assert events[0] == "delivery_failed", events
    assert await conn.fetchval("SELECT dispatch_failures FROM generation_history WHERE id = $1", row_id) == 1


async def test_a_deeply_nested_answer_is_a_counted_500(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                                      start_daemon: StartDaemon) -> None:
    async def nested(_request: web.Request) -> web.StreamResponse:
        return web.Response(status=500, text="[" * 30000 + "]" * 30000, content_type="application/json")

    row_id, events = await first_outcome(db_url, conn, stub, start_daemon, nested)
    assert events[0] == "delivery_failed", events
    assert await conn.fetchval("SELECT retry_count FROM generation_history WHERE id = $1", row_id) == 1


async def test_a_deeply_nested_request_fails_the_row_once(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                                          start_daemon: StartDaemon) -> None:
    row_id = await make_generation(conn, due=True)
    await conn.execute("UPDATE generation_history SET request = $2::jsonb WHERE id = $1", row_id,
                       '{"prompt": ' + "[" * 5000 + "]" * 5000 + "}")
    await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))

    async def settled() -> bool:
        return bool(await conn.fetchval(
            "SELECT count(*) FROM genretry.events WHERE generation_id = $1 AND event <> 'claimed'", row_id) > 0)
    await wait_until(settled, within_s=15)
    events = [r["event"] for r in await conn.fetch(
        "SELECT event FROM genretry.events WHERE generation_id = $1 AND event <> 'claimed' ORDER BY id", row_id)]
    assert "released" not in events, events[:5]


async def test_hostile_names_leave_nothing_behind_in_the_daemon(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                                                start_daemon: StartDaemon) -> None:
    ids = [await make_generation(conn, due=True, generator=f"{i:06d}" + "x" * 100_000) for i in range(200)]
    running = await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="60"))

    async def all_failed() -> bool:
        return bool(await conn.fetchval(
            "SELECT count(*) FROM generation_history WHERE id = ANY($1) AND status = 'failed'", ids) == 200)
    await wait_until(all_failed, within_s=60)
    assert not stub.seen
    scheduler = running.daemon.scheduler
    assert scheduler is not None
    held = sum(len(name) for name in scheduler._per_generator)
    assert held < 10_000, f"{len(scheduler._per_generator)} names, {held} characters held"

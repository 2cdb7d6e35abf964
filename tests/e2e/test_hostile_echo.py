"""A generator that echoes the credentials it got (issue 10, class 7): no secret reaches the database or the log.

The daemon runs as a subprocess in service-key mode (apikey and Bearer both carry the secret key); a stub
echoes both headers back in every kind of answer that is stored: a 400's message, a 500's error, a 503's
text and a redirect's Location. generation_history, genretry.events and the daemon's whole output are then
searched for any 7-character piece of the secret (SPEC 6 allows at most a 6-character prefix).
"""

from __future__ import annotations

import json
import secrets

import asyncpg
import pytest
from aiohttp import web

from tests.support import cli
from tests.support.factories import make_generation
from tests.support.http import Stub

pytestmark = pytest.mark.hostile


def echo(status: int) -> web.StreamResponse:
    raise AssertionError  # replaced per test: see behaviours below


def pieces(secret: str, size: int = 7) -> set[str]:
    return {secret[i:i + size] for i in range(len(secret) - size + 1)}


async def test_an_echoing_generator_leaves_no_secret_behind(db_url: str, conn: asyncpg.Connection,
                                                           stub: Stub) -> None:
    secret = "sb_secret_" + secrets.token_urlsafe(30)

    def echoed(request: web.Request) -> str:
        return (f"refused apikey={request.headers.get('apikey')} "
                f"authorization={request.headers.get('authorization')} "
                f"raw={request.headers.get('apikey', '')[10:]}")

    async def rejected(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": "bad_request", "message": echoed(request)}, status=400)

    async def server_error(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": echoed(request)}, status=500)

    async def unavailable(request: web.Request) -> web.StreamResponse:
        return web.Response(text=echoed(request) + " " + "x" * 490 + echoed(request), status=503)

    async def redirect(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": f"https://x.example/?key={request.headers['apikey']}"})

    behaviours = {"echo-rejected": rejected, "echo-server-error": server_error, "echo-unavailable": unavailable,
                  "echo-redirect": redirect}
    stub.behaviours.update(behaviours)
    ids = [await make_generation(conn, generator=name, due=True) for name in behaviours]
    env = cli.daemon_env_for(db_url, stub.url, PROCESSOR_AUTH_MODE="service-key",
                             SUPABASE_SECRET_KEYS=json.dumps({"default": secret}),
                             PROCESSOR_SERVICE_KEY_BEARER="true", PROCESSOR_LOG_LEVEL="debug")
    result = await cli.run("run", "--once", env=env)
    assert result.code == 0, result.err

    assert len(stub.seen) == 4 and all(s.headers["apikey"] == secret for s in stub.seen)  # the echo really ran
    stored = await conn.fetchval("SELECT string_agg(row_to_json(g)::text, ' ') FROM generation_history g "
                                 "WHERE id = ANY($1)", ids)
    details = await conn.fetchval("SELECT string_agg(detail::text, ' ') FROM genretry.events "
                                  "WHERE generation_id = ANY($1)", ids)
    assert await conn.fetchval("SELECT count(*) FROM generation_history WHERE id = ANY($1) "
                               "AND last_outcome IS NOT NULL", ids) == 4
    assert "[redacted" in stored and "[redacted" in details
    random_part = secret[len("sb_secret_"):]
    for where, text in (("generation_history", stored), ("genretry.events", details),
                        ("daemon log", result.out + result.err)):
        assert secret not in text, where
        assert not [p for p in pieces(random_part) if p in text], where

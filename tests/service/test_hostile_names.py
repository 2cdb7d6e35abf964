"""Hostile generator names end to end (issue 10, class 6): no request ever leaves the configured base path.

A loopback stub records the raw path of every request it receives, whatever the method or path; rows whose
generator is a path, a query, an encoded dot-dot, unicode or control characters fail with a message that
says the request was never sent, and only the well-formed row reaches the stub.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest
from aiohttp import web

from tests.support.factories import make_generation, row
from tests.support.http import Running, StartDaemon, serve_app_on_loopback, settings_for, wait_until

pytestmark = pytest.mark.hostile
HOSTILE = [
    "../../auth/v1/admin/users", "../../../auth/v1/admin/users", "generate-website/../../../rest/v1/secrets",
    "generate-website?apikey=leak", "gen#frag", "%2e%2e/%2e%2e/auth/v1/admin/users", "%2e%2e", "..", ".",
    "générer", "生成", "gen\x1b[31mred", "gen\r\nX-Injected: 1", "gen\tx", "generate-website\n",
    "//evil.example/x", "http://evil.example/steal", "Generate-Website", "a" * 64, "gen\\..\\..\\auth",
]


@dataclass
class PathRecorder:
    url: str = ""
    paths: list[str] = field(default_factory=list)
    daemon: Running | None = None


@pytest.fixture
async def recorder() -> AsyncIterator[PathRecorder]:
    rec = PathRecorder()

    async def handle(request: web.Request) -> web.StreamResponse:
        rec.paths.append(request.raw_path)
        return web.json_response({"accepted": True}, status=202)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner, rec.url = await serve_app_on_loopback(app)
    yield rec
    await runner.cleanup()


async def fail_and_record(conn: asyncpg.Connection, db_url: str, recorder: PathRecorder,
                          start_daemon: StartDaemon, names: list[str], **env: str) -> dict[str, asyncpg.Record]:
    good = await make_generation(conn, due=True)
    ids = {name: await make_generation(conn, generator=name, due=True) for name in names}
    recorder.daemon = await start_daemon(settings_for(db_url, f"{recorder.url}/functions/v1", **env))

    async def settled() -> bool:
        rows = [await row(conn, i) for i in ids.values()]
        return all(r["status"] == "failed" for r in rows) and (await row(conn, good))["retry_count"] == 1

    await wait_until(settled, 20)
    return {name: await row(conn, i) for name, i in ids.items()}


async def test_hostile_names_never_leave_the_base_path(db_url: str, conn: asyncpg.Connection,
                                                     recorder: PathRecorder, start_daemon: StartDaemon) -> None:
    failed = await fail_and_record(conn, db_url, recorder, start_daemon, HOSTILE)
    assert recorder.paths == ["/functions/v1/generate-website"]  # the well-formed row, and nothing else
    for name, r in failed.items():
        assert "never sent" in r["error_message"], name
        assert "rejected" not in r["error_message"], name  # the generator never saw it
        assert "\x1b" not in r["error_message"] and len(r["error_message"]) < 1000, name
        assert (r["retry_count"], r["dispatch_failures"]) == (0, 0), name
        detail = await conn.fetchval(
            "SELECT detail FROM genretry.events WHERE generation_id = $1 AND event = 'not_sent'", r["id"])
        assert "never sent" in json.loads(detail)["message"], name
    # the names never become metric labels (one series each, escapes and all): one fixed label instead
    assert recorder.daemon is not None
    registry = recorder.daemon.daemon.metrics.registry
    labels = {s.labels.get("generator") for m in registry.collect() for s in m.samples} - {None}
    configured = set(recorder.daemon.daemon.settings.generators)  # their series exist from the warm-up on
    assert "generate-website" in configured and labels <= configured | {"(invalid)"}, labels
    assert registry.get_sample_value("genretry_rows_failed_total", {"generator": "(invalid)"}) == len(HOSTILE)


async def test_with_routes_only_configured_names_are_sent(db_url: str, conn: asyncpg.Connection,
                                                         recorder: PathRecorder, start_daemon: StartDaemon) -> None:
    routes = json.dumps({"generate-php-website": f"{recorder.url}/php/run"})
    failed = await fail_and_record(conn, db_url, recorder, start_daemon, ["generate-anything", "admin"],
                                   PROCESSOR_ROUTES=routes)
    assert recorder.paths == ["/functions/v1/generate-website"]
    assert all("not configured" in r["error_message"] for r in failed.values())

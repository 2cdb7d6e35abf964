"""End to end: the real daemon delivers to a generator built on the TypeScript kit (Node, and Deno).

The generator looks owners up through a stand-in for the platform's REST API (loopback, secret key in
`apikey`, switchable to 503) and reports through genretry.heartbeat/finish as a login role holding only
genretry_generator, the way docs/generator-authority.md says.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from aiohttp import web

from processor.credentials import Delivery, Minter
from tests.support.factories import events, make_generation
from tests.support.http import Running, serve_app_on_loopback, settings_for, status_of, wait_until
from tests.support.keys import DEMO_SECRET_KEY, PROCESSOR_KID, processor_pair

KIT = Path(__file__).resolve().parents[2] / "generators" / "typescript"
GEN = "generate-website"
GENERATOR_ROLE, GENERATOR_PASSWORD = "genretry_test_generator", "genretry-test-generator"
RUNTIMES = ["node", "deno"]


def kit_ready() -> None:
    """node_modules from the lock file, the kit compiled; both cheap when already done."""
    if not (KIT / "node_modules" / ".package-lock.json").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=KIT, check=True, capture_output=True)
    subprocess.run([str(KIT / "node_modules" / ".bin" / "tsc"), "-p", "tsconfig.json"], cwd=KIT, check=True,
                   capture_output=True)


@pytest.fixture(scope="module")
def built() -> None:
    kit_ready()


async def generator_role_env(conn: asyncpg.Connection, db_url: str) -> dict[str, str]:
    """PG* variables for a login role holding only genretry_generator (created once per cluster)."""
    with contextlib.suppress(asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
        await conn.execute(f"""DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{GENERATOR_ROLE}') THEN
                CREATE ROLE {GENERATOR_ROLE} LOGIN PASSWORD '{GENERATOR_PASSWORD}' IN ROLE genretry_generator;
            END IF; END $$""")
    parts = urlsplit(db_url)
    host = parse_qs(parts.query).get("host", [parts.hostname or "127.0.0.1"])[0]
    return {"PGHOST": host, "PGPORT": str(parts.port or 5432), "PGDATABASE": parts.path.lstrip("/"),
            "PGUSER": GENERATOR_ROLE, "PGPASSWORD": GENERATOR_PASSWORD}


@dataclass
class Rest:
    """The platform's REST API as far as the generator uses it: GET /rest/v1/generation_history."""

    url: str = ""
    down: bool = False
    calls: int = 0


@pytest.fixture
async def rest(pool: asyncpg.Pool) -> AsyncIterator[Rest]:
    state = Rest()

    async def handle(request: web.Request) -> web.StreamResponse:
        state.calls += 1
        if state.down:
            return web.json_response({"message": "upstream unavailable"}, status=503)
        if request.headers.get("apikey") != DEMO_SECRET_KEY:
            return web.json_response({"message": "Invalid API key"}, status=401)
        row_id = request.query.get("id", "").removeprefix("eq.")
        owner = await pool.fetchval("SELECT user_id::text FROM generation_history WHERE id::text = $1", row_id)
        return web.json_response([{"user_id": owner}] if owner else [])

    app = web.Application()
    app.router.add_get("/rest/v1/generation_history", handle)
    runner, state.url = await serve_app_on_loopback(app)
    yield state
    await runner.cleanup()


def command_for(runtime: str) -> list[str]:
    if runtime == "node":  # example/serve.ts: the same generator behind node:http
        return ["node", str(KIT / "dist" / "example" / "serve.js")]
    # Deno runs the edge function of the guide as it is (Deno.serve; DENO_SERVE_ADDRESS picks the port);
    # --allow-write because a unix-socket connection (the embedded PostgreSQL) needs it
    deno = KIT / "node_modules" / ".bin" / "deno"
    return [str(deno), "run", "--allow-net", "--allow-env", "--allow-read", "--allow-write", "--allow-sys",
            "--config", str(KIT / "deno.json"), str(KIT / "example" / "edge-function.ts")]


StartTs = Callable[[str], Awaitable[str]]


@pytest.fixture
async def ts_generator(built: None, conn: asyncpg.Connection, db_url: str, rest: Rest) -> AsyncIterator[StartTs]:
    procs: list[asyncio.subprocess.Process] = []

    async def start(runtime: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "SUPABASE_", "GENRETRY_"))}
        env.update(await generator_role_env(conn, db_url))
        env.update({"PORT": "0", "SUPABASE_URL": rest.url,
                    "SUPABASE_SECRET_KEYS": json.dumps({"default": DEMO_SECRET_KEY}),
                    "GENRETRY_PROCESSOR_JWKS": json.dumps({"keys": [processor_pair()[1]]}),
                    "GENRETRY_GENERATORS": "generate-website,generate-php-website",
                    "GENRETRY_WORK_SECONDS": "0.1", "DENO_NO_UPDATE_CHECK": "1",
                    "DENO_SERVE_ADDRESS": "tcp:127.0.0.1:0"})
        proc = await asyncio.create_subprocess_exec(*command_for(runtime), cwd=KIT, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        procs.append(proc)
        # node prints "listening PORT" on stdout; Deno.serve prints "Listening on http://127.0.0.1:PORT/" on stderr
        stream = proc.stdout if runtime == "node" else proc.stderr
        assert stream is not None
        line = await asyncio.wait_for(stream.readline(), 60)
        match = re.search(rb"istening (?:on http://127\.0\.0\.1:)?(\d+)", line)
        if match is None:
            raise AssertionError(f"{runtime} generator did not start: {line!r} {await stream.read(4000)!r}")
        return f"http://127.0.0.1:{int(match.group(1))}"

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def runtime_param(runtime: str) -> str:
    if runtime == "deno" and not (KIT / "node_modules" / ".bin" / "deno").exists() and not shutil.which("deno"):
        raise AssertionError("deno is a devDependency of the kit: `npm ci` in generators/typescript installs it")
    return runtime


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_the_daemon_delivers_to_the_kit_and_the_row_completes(
        runtime: str, conn: asyncpg.Connection, db_url: str, ts_generator: StartTs, rest: Rest,
        start_daemon: Callable[..., Awaitable[Running]]) -> None:
    url = await ts_generator(runtime_param(runtime))
    rows = [await make_generation(conn, due=True) for _ in range(3)]
    await start_daemon(settings_for(db_url, url, PROCESSOR_GENERATORS="generate-website"))
    for row_id in rows:
        await wait_until(functools.partial(_is, conn, row_id, "completed"), within_s=30)
    assert await events(conn, rows[0]) == ["claimed", "delivered", "finished"]
    finisher = await conn.fetchval(
        "SELECT actor FROM genretry.events WHERE generation_id = $1 AND event = 'finished'", rows[0])
    assert finisher == GENERATOR_ROLE  # finish ran as the generator's own role
    assert rest.calls >= 3


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_forged_expired_misaddressed_and_replayed_requests_are_refused(
        runtime: str, conn: asyncpg.Connection, ts_generator: StartTs) -> None:
    url = await ts_generator(runtime_param(runtime))
    owner = uuid.uuid4()
    row_id = await make_generation(conn, user_id=owner)
    body = {"retryHistoryId": str(row_id), "retryAttempt": 0}
    good = Minter(private_key_pem=processor_pair()[0], kid=PROCESSOR_KID)
    forger = Minter(private_key_pem=_other_pem(), kid=PROCESSOR_KID)  # right kid, wrong key
    d = Delivery(GEN, str(owner), str(row_id), 0)
    async with httpx.AsyncClient(timeout=10) as http:
        async def send(token: str, generator: str = GEN, **headers: str) -> tuple[int, str]:
            auth = {"Authorization": f"Bearer {token}", **headers}
            r = await http.post(f"{url}/{generator}", json=body, headers=auth)
            return r.status_code, r.json().get("error", "")

        assert await send(forger.mint(d)) == (401, "bad_signature")
        assert await send(good.mint(d, now=time.time() - 400)) == (401, "token_expired")
        assert await send(good.mint(Delivery("generate-php-website", str(owner), str(row_id), 0))) == (
            403, "wrong_audience")
        assert await send(DEMO_SECRET_KEY[:-1] + "x") == (401, "unknown_secret_key")
        token = good.mint(d)
        assert (await send(token, **{"Idempotency-Key": "a"}))[0] == 202
        assert await send(token, **{"Idempotency-Key": "b"}) == (409, "token_replayed")
    await wait_until(lambda: _is(conn, row_id, "completed"), within_s=30)


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_a_failing_owner_lookup_leaves_the_row_undamaged(
        runtime: str, conn: asyncpg.Connection, db_url: str, ts_generator: StartTs, rest: Rest,
        start_daemon: Callable[..., Awaitable[Running]]) -> None:
    url = await ts_generator(runtime_param(runtime))
    rest.down = True
    row_id = await make_generation(conn, due=True)
    await start_daemon(settings_for(db_url, url, PROCESSOR_GENERATORS="generate-website"))

    async def refused_503() -> bool:
        return bool(await conn.fetchval(
            "SELECT count(*) FROM genretry.events WHERE generation_id = $1 AND detail->>'http_status' = '503'",
            row_id))

    await wait_until(refused_503, within_s=30)
    row = await conn.fetchrow("SELECT status, error_message FROM generation_history WHERE id = $1", row_id)
    assert row["status"] in ("generating", "pending") and row["error_message"] is None
    rest.down = False
    await conn.execute("SELECT genretry.retry_now($1, force => true)", row_id)
    await wait_until(lambda: _is(conn, row_id, "completed"), within_s=30)


async def test_a_token_one_instance_accepted_is_refused_by_every_other(
        conn: asyncpg.Connection, ts_generator: StartTs) -> None:
    """An edge function runs as many isolates: the example's replay guard is in the database (SqlReplayGuard),
    so a token accepted by one instance (Node) is refused by another (Deno), and the other way round. With the
    guard in memory, the second instance accepted it."""
    node, deno = await ts_generator("node"), await ts_generator(runtime_param("deno"))
    good = Minter(private_key_pem=processor_pair()[0], kid=PROCESSOR_KID)
    async with httpx.AsyncClient(timeout=10) as http:
        for first, second in ((node, deno), (deno, node)):
            owner = uuid.uuid4()
            row_id = await make_generation(conn, user_id=owner)
            token = good.mint(Delivery(GEN, str(owner), str(row_id), 0))
            replies = []
            for url in (first, second):
                r = await http.post(f"{url}/{GEN}", json={"retryHistoryId": str(row_id), "retryAttempt": 0},
                                    headers={"Authorization": f"Bearer {token}"})
                replies.append((r.status_code, r.json().get("error", "")))
            assert replies[0][0] == 202 and replies[1] == (409, "token_replayed"), replies
            await wait_until(functools.partial(_is, conn, row_id, "completed"), within_s=30)
    assert await conn.fetchval("SELECT count(*) FROM genretry.used_tokens") == 2


async def _is(conn: asyncpg.Connection, row_id: uuid.UUID, status: str) -> bool:
    return await status_of(conn, row_id) == status


def _other_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()

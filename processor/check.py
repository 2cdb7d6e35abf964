"""processor check: the resolved configuration (secrets redacted), then each dependency, one line each."""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from collections.abc import Awaitable, Callable
from typing import TextIO

import asyncpg
import httpx

from processor import db, delivery, migrate, scrub
from processor.config import Settings
from processor.credentials import Authority, Delivery
from processor.errors import ProcessorError
from processor.listener import Listener
from processor.logs import redact
from processor.output import printable

SECRET_FIELDS = {"jwt_secret", "jwt_private_key", "service_role_key", "secret_keys", "jwks", "processor_jwt_secret",
                 "processor_jwks"}


def _secret(value: str) -> str:
    """Which secret is set, told without showing it: compare the fingerprint with
    `printf %s "$SECRET" | sha256sum | cut -c1-8` where the same secret is configured (a generator, say)."""
    return f"{redact(value)} ({len(value)} characters, sha256 {hashlib.sha256(value.encode()).hexdigest()[:8]})"


def describe_settings(settings: Settings) -> list[tuple[str, str]]:
    """(name, value) for every setting; a secret as its kind, length and fingerprint, a URL without its password."""
    rows = []
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name in SECRET_FIELDS:
            if isinstance(value, dict):
                shown = f"{len(value.get('keys', []))} key(s)" if f.name.endswith("jwks") else \
                    ", ".join(f"{k}={_secret(str(v))}" for k, v in value.items())
            else:
                shown = _secret(str(value)) if value else ""
            rows.append((f.name, shown or "(not set)"))
        elif f.name in ("database_url", "functions_url"):
            rows.append((f.name, scrub.redact_url(value) if value else ""))
        elif f.name == "routes":
            rows.append((f.name, str({k: scrub.redact_url(v) for k, v in value.items()})))
        else:
            rows.append((f.name, str(value)))
    return rows


async def run_checks(settings: Settings, out: TextIO = sys.stdout, *, probe_routes: bool = False) -> int:
    """Print the configuration and the result of each check; 0 when all pass, else 1.

    Generators are only contacted with probe_routes: each probe is a request without credentials, which a
    generator answers (and logs) as a 401, so the systemd unit's check before every start sends nothing.
    """
    width = max(len(name) for name, _ in describe_settings(settings))
    print("configuration:", file=out)
    for name, value in describe_settings(settings):
        print(f"  {name:<{width}}  {value}", file=out)
    print("checks:", file=out)
    failures = 0

    async def check(name: str, probe: Callable[[], Awaitable[str]]) -> None:
        nonlocal failures
        try:
            detail = await probe()
        except (ProcessorError, asyncpg.PostgresError, OSError, httpx.HTTPError, ValueError) as exc:
            failures += 1
            print(f"  FAIL {printable(name)}: {printable(scrub.scrub(str(exc)))}", file=out)
        else:
            print(f"  ok   {printable(name)}: {printable(scrub.scrub(detail))}", file=out)

    pool: asyncpg.Pool | None = None

    async def database() -> str:
        nonlocal pool
        pool = await db.create_pool(settings.database_url, min_size=1, max_size=2)
        version = await pool.fetchval("SHOW server_version")
        return f"{db.describe_target(settings.database_url)} (PostgreSQL {version})"

    await check("database", database)
    if pool is not None:
        async def schema() -> str:
            assert pool is not None
            async with pool.acquire() as conn:
                version, current = await migrate.check_schema(conn)
            return f"version {version}" + ("" if current else " (functions differ: run `processor migrate`)")

        async def listen() -> str:
            assert pool is not None
            listener = Listener(settings.database_url, lambda _d: None, lambda: None)
            try:
                await listener.start(pool)
            finally:
                await listener.close()
            return "notifications arrive (direct or session-mode connection)"

        await check("schema", schema)
        await check("listen", listen)
        await pool.close()

    async def authority() -> str:
        headers = Authority(settings).headers(Delivery("check", "00000000-0000-0000-0000-000000000000",
                                                       "00000000-0000-0000-0000-000000000000", 0))
        return f"{settings.auth_mode}: sends {', '.join(sorted(headers))}"

    await check("authority", authority)
    if not probe_routes:
        for generator in settings.generators:
            print(f"  --   route {printable(generator)}: {printable(scrub.redact_url(settings.route(generator)))} "
                  "(not contacted; --probe-routes to try it)", file=out)
        print("all checks passed" if not failures else f"{failures} check(s) failed", file=out)
        return 0 if not failures else 1
    async with delivery.make_client(max_connections=4, connect_timeout_s=settings.connect_timeout_s,
                                    response_timeout_s=min(settings.response_timeout_s, 10)) as client:
        for generator in settings.generators:
            url = settings.route(generator)

            async def route(url: str = url) -> str:
                # no credentials: a generator that verifies answers 401 and starts nothing
                response = await client.post(url, json={})
                if response.status_code == 404:
                    raise ValueError(f"{url} answered 404: no such function")
                return f"{url} answers ({response.status_code} without credentials)"

            await check(f"route {generator}", route)
    print("all checks passed" if not failures else f"{failures} check(s) failed", file=out)
    return 0 if not failures else 1

"""processor demo: the whole story on an embedded PostgreSQL (or DATABASE_URL), in well under a minute.

Stuck generations, one of them the seed's 507db582 with its legacy 'retry:2', are found the moment they
become stale, retried with service authority through the reference generator, and completed; 507db582
fails with "retries exhausted", is reset as the seed's step 6 did by hand, and then completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from processor import db, logs, migrate, reference_generator
from processor.authority import Keys
from processor.config import DEFAULT_GENERATORS, Settings
from processor.daemon import Daemon
from processor.errors import ProcessorError

SEED_ID = uuid.UUID("507db582-8c3f-4e4f-8703-947e6c469a5e")
DEMO_JWT_SECRET = "demo-only-jwt-secret-not-for-production-0123456789"
STALE_S = 3


@contextlib.asynccontextmanager
async def _database(force: bool) -> AsyncIterator[str]:
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        yield url
        return
    try:
        import warnings

        warnings.filterwarnings("ignore", module="platformdirs")  # pgserver's runtime directory notice
        import pgserver
    except ImportError as exc:
        raise ProcessorError("the demo needs an embedded PostgreSQL: pip install pgserver "
                             "(make demo does), or set DATABASE_URL") from exc
    with tempfile.TemporaryDirectory(prefix="genretry-demo-") as tmp:
        print("demo: starting an embedded PostgreSQL (pgserver) in a temporary directory...", flush=True)
        server = await asyncio.to_thread(pgserver.get_server, tmp, cleanup_mode="stop")  # type: ignore[attr-defined]
        try:
            yield server.get_uri("postgres")
        finally:
            await asyncio.to_thread(server.cleanup)


LEGACY_TABLE = """
CREATE TABLE public.generation_history (
    id uuid PRIMARY KEY, user_id uuid NOT NULL, status text NOT NULL, generator text NOT NULL,
    request jsonb NOT NULL DEFAULT '{}', error_message text, admin_note text, heartbeat_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now())
"""


async def _seed_rows(conn: asyncpg.Connection, *, legacy: bool) -> dict[uuid.UUID, str]:
    """A realistic set; returns id -> what the row is, for the final table.

    legacy: the rows go into a table shaped like the old system's (before `processor migrate`), so that
    adoption turns 507db582's admin_note 'retry:2' into retry_count 2, as it would in production.
    """
    story: dict[uuid.UUID, str] = {}

    async def add(what: str, status: str, generator: str, age_s: float, *, row_id: uuid.UUID | None = None,
                  note: str | None = None, request: str = '{"prompt": "a bakery site"}',
                  heartbeat: bool = False) -> uuid.UUID:
        rid = row_id or uuid.uuid4()
        await conn.execute(
            """INSERT INTO generation_history (id, user_id, status, generator, request, admin_note, heartbeat_at,
                                               created_at, updated_at)
               VALUES ($1, gen_random_uuid(), $2, $3, $4::jsonb, $5, CASE WHEN $6 THEN now() END,
                       now() - $7 * interval '1 second', now() - $7 * interval '1 second')""",
            rid, status, generator, request, note, heartbeat, age_s)
        if not legacy:  # an already migrated table: write what adoption would have read from admin_note
            await conn.execute(
                """UPDATE generation_history SET status_changed_at = updated_at,
                       retry_count = coalesce(substring(admin_note FROM '^retry:(\\d+)$')::int, 0),
                       deadline_at = NULL WHERE id = $1""", rid)
        story[rid] = what
        return rid

    for g in DEFAULT_GENERATORS:
        await add("finished earlier", "completed", g, 3600)
    await add("working, heartbeating", "generating", "generate-website", 1, heartbeat=True)
    await add("working, heartbeating", "generating", "generate-react-website", 1, heartbeat=True)
    await add("stuck: no heartbeat", "generating", "generate-website", 540)
    await add("stuck: no heartbeat", "generating", "generate-react-website", 900)
    await add("stuck: never started", "pending", "generate-php-website", 300)
    await add("its generator hangs once", "generating", "generate-php-website", 600,
              request='{"prompt": "a shop", "_reference": {"hang_attempts": [1]}}')
    await add("the seed's site, 'retry:2'", "generating", "generate-website", 7200, row_id=SEED_ID, note="retry:2")
    return story


async def _snapshot(conn: asyncpg.Connection) -> dict[uuid.UUID, asyncpg.Record]:
    rows = await conn.fetch("SELECT id, generator, status, retry_count, attempt, error_message FROM generation_history")
    return {r["id"]: r for r in rows}


async def _heartbeat_healthy(pool: asyncpg.Pool, ids: list[uuid.UUID], stop: asyncio.Event) -> None:
    """The two healthy generations keep heartbeating, then finish: they are never retried."""
    started = time.monotonic()
    while not stop.is_set() and time.monotonic() - started < 8:
        for rid in ids:
            await pool.execute("SELECT genretry.heartbeat($1, 0)", rid)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    for rid in ids:
        await pool.execute("SELECT genretry.finish($1, 0, 'completed')", rid)


async def run(*, force: bool = False, log_format: str = "console") -> int:
    logs.configure(log_format, "info")
    started = time.monotonic()
    async with _database(force) as url:
        conn = await db.connect(url)
        try:
            legacy = await conn.fetchval("SELECT to_regclass('public.generation_history')") is None
            if legacy:
                print("demo: an old system's table with stuck generations, 507db582 among them ('retry:2')",
                      flush=True)
                await conn.execute(LEGACY_TABLE)
                story = await _seed_rows(conn, legacy=True)
            else:
                existing = await conn.fetchval("SELECT count(*) FROM generation_history")
                if existing and not force:
                    raise ProcessorError(f"this database already has {existing} generations: the demo inserts its "
                                         "own rows and changes the policy; use --force only on a scratch database")
            report = await migrate.migrate(conn)
            print(f"demo: processor migrate: applied {', '.join(report.applied) or 'nothing new'}", flush=True)
            if not legacy:
                story = await _seed_rows(conn, legacy=False)
            seed_retries = await conn.fetchval("SELECT retry_count FROM generation_history WHERE id = $1", SEED_ID)
            print(f"demo: adopted 507db582: admin_note 'retry:2' -> retry_count {seed_retries} "
                  "(its retries are spent)", flush=True)
            # the demo's policy is for the demo: on a given database the '*' row is put back afterwards
            saved = await conn.fetchrow("SELECT stale_after, pending_stale_after, backoff_base FROM genretry.policy "
                                        "WHERE generator = '*'")
            await conn.execute(
                "UPDATE genretry.policy SET stale_after = $1 * interval '1 second', "
                "pending_stale_after = $1 * interval '1 second', backoff_base = '1 second' WHERE generator = '*'",
                STALE_S)
            try:
                print(f"demo: policy stale_after lowered to {STALE_S} s for the demo (production default: 7 min)",
                      flush=True)
                before = await _snapshot(conn)
                pool = await db.create_pool(url, min_size=1, max_size=6)
                served = await reference_generator.start(
                    pool, DEFAULT_GENERATORS, Keys(processor_secret=DEMO_JWT_SECRET),
                    behaviour=reference_generator.Behaviour(work_s=1.0))
                print(f"demo: reference generator listening on {served.url}", flush=True)
                settings = Settings.from_env({"DATABASE_URL": url, "FUNCTIONS_URL": served.url,
                                              "PROCESSOR_JWT_SECRET": DEMO_JWT_SECRET, "PROCESSOR_TICK": "5",
                                              "PROCESSOR_RESPONSE_TIMEOUT": "5", "PROCESSOR_GRACE": "3"},
                                             need=("database", "dispatch"))
                daemon = Daemon(settings)
                stop = asyncio.Event()
                healthy = [rid for rid, what in story.items() if what.startswith("working")]
                beating = asyncio.create_task(_heartbeat_healthy(pool, healthy, stop))
                running = asyncio.create_task(daemon.run(signals=False))
                try:
                    await _story(conn, daemon, running, story, started)
                finally:
                    stop.set()
                    await beating
                    daemon.request_stop()
                    await running
                    await served.stop()
                    await pool.close()
                after = await _snapshot(conn)
                _print_table(story, before, after)
            finally:
                if saved is not None:
                    await conn.execute(
                        "UPDATE genretry.policy SET stale_after = $1, pending_stale_after = $2, backoff_base = $3 "
                        "WHERE generator = '*'", saved["stale_after"], saved["pending_stale_after"],
                        saved["backoff_base"])
        finally:
            await conn.close()
    print(f"demo: done in {time.monotonic() - started:.0f} s; everything it started is stopped.", flush=True)
    return 0


async def _story(conn: asyncpg.Connection, daemon: Daemon, running: asyncio.Task[None],
                 story: dict[uuid.UUID, str], started: float) -> None:
    reset_done = False
    last_line = ""
    while time.monotonic() - started < 55:
        if running.done():
            await running  # a daemon that stopped by itself: raise what stopped it
        counts = await conn.fetchrow(
            """SELECT count(*) FILTER (WHERE status = 'completed' AND retry_count > 0) AS rescued,
                      count(*) FILTER (WHERE status = 'failed') AS failed,
                      count(*) FILTER (WHERE status IN ('pending', 'generating')) AS live,
                      (SELECT count(*) FROM genretry.stuck) AS stuck
               FROM generation_history""")
        assert counts is not None
        line = (f"demo: progress: rescued {counts['rescued']}, failed {counts['failed']}, "
                f"still live {counts['live']} ({counts['stuck']} stuck)")
        if line != last_line:
            print(line, flush=True)
            last_line = line
        seed = await conn.fetchrow("SELECT status, error_message FROM generation_history WHERE id = $1", SEED_ID)
        assert seed is not None
        if not reset_done and seed["status"] == "failed":
            print(f"demo: 507db582 failed: {seed['error_message']}", flush=True)
            message = await conn.fetchval("SELECT genretry.reset($1)", SEED_ID)
            print(f"demo: SELECT genretry.reset('{SEED_ID}');  -- the seed's step 6, as one call", flush=True)
            print(f"demo:   -> {message}", flush=True)
            reset_done = True
        if reset_done and counts["live"] == 0:
            return
        await asyncio.sleep(0.5)
    raise ProcessorError("the demo did not finish within 55 s")


def _print_table(story: dict[uuid.UUID, str], before: dict[uuid.UUID, Any], after: dict[uuid.UUID, Any]) -> None:
    print("\ndemo: before and after", flush=True)
    header = f"{'generation':<10} {'generator':<22} {'what':<27} {'before':<16} {'after':<28} note"
    print(header)
    print("-" * len(header))
    for rid, what in story.items():
        b, a = before[rid], after[rid]
        was = f"{b['status']} r{b['retry_count']}"
        now = f"{a['status']} r{a['retry_count']} attempt {a['attempt']}"
        note = (a["error_message"] or "")[:60]
        print(f"{str(rid)[:8]:<10} {a['generator']:<22} {what:<27} {was:<16} {now:<28} {note}")
    print("(r = automatic retries counted; attempt = deliveries' attempt number, 0 = the user's own run)")

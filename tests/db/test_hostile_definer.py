"""Issue 10, class 4: SECURITY DEFINER hygiene. A role with CREATE on schema public (the default before
PostgreSQL 15, and on upgraded clusters) defines operators and functions shaped like the ones genretry's
functions call; nothing of it ever runs, neither with the owner's rights nor in anyone else's session.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from processor import migrate
from tests.support.factories import make_generation
from tests.support.pg import as_daemon

pytestmark = pytest.mark.hostile

# Mallory's shapes: the operator of the issue, and look-alikes of the built-ins genretry's functions and views
# call with argument types that are an exact match for them (so they would win over pg_catalog's variadic
# or implicitly cast candidates wherever public is on the path). Each records who ran it and tries to make
# Mallory superuser.
SHAPES = """
CREATE TABLE public.pwned (what text, by_role text);
GRANT INSERT ON public.pwned TO PUBLIC;
CREATE FUNCTION public.evil(what text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.pwned VALUES (what, current_user);
    BEGIN
        EXECUTE pg_catalog.format('ALTER ROLE %I SUPERUSER', '{role}'::text);
    EXCEPTION WHEN insufficient_privilege THEN NULL;
    END;
END $$;
CREATE FUNCTION public.evil_div(i interval, n integer) RETURNS interval LANGUAGE plpgsql AS $$
BEGIN PERFORM public.evil('interval / integer'); RETURN i OPERATOR(pg_catalog./) n::float8; END $$;
CREATE OPERATOR public./ (LEFTARG = interval, RIGHTARG = integer, FUNCTION = public.evil_div);
CREATE FUNCTION public.format(f text, a integer, b text, c text, d text, e text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM public.evil('format(text, integer, text, text, text, text)'); RETURN f; END $$;
CREATE FUNCTION public.format(f text, a text, b text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM public.evil('format(text, text, text)'); RETURN f; END $$;
CREATE FUNCTION public.format(f text, a text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM public.evil('format(text, text)'); RETURN f; END $$;
CREATE FUNCTION public.jsonb_build_object(a text, b uuid, c text, d timestamptz, e text, f text, g text, h boolean)
RETURNS jsonb LANGUAGE plpgsql AS $$ BEGIN PERFORM public.evil('jsonb_build_object'); RETURN '{{}}'; END $$;
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN PERFORM public.evil('now()'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION public.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN PERFORM public.evil('clock_timestamp()'); RETURN pg_catalog.clock_timestamp(); END $$;
CREATE FUNCTION public.human_interval(p interval) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM public.evil('human_interval'); RETURN 'x'; END $$;
CREATE FUNCTION public.effective_policy(p text) RETURNS genretry.policy LANGUAGE plpgsql AS $$
BEGIN PERFORM public.evil('effective_policy'); RETURN NULL; END $$;
"""


def _as_login(url: str, role: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{role}:{password}@{host}"))


@pytest.fixture
async def mallory(db_url: str, conn: asyncpg.Connection) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """A login role with CREATE on public and an application's rights on the table, holding its shapes."""
    role, password = f"genretry_test_mallory_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    try:
        await conn.execute(f"GRANT CREATE, USAGE ON SCHEMA public TO {role}")
        await conn.execute(f"GRANT SELECT, INSERT, UPDATE ON generation_history TO {role}")
        await conn.execute(f"GRANT USAGE ON SCHEMA genretry TO {role}")  # for the genretry.policy return type
        session = await asyncpg.connect(_as_login(db_url, role, password))
        try:
            await session.execute(SHAPES.format(role=role))
            yield role, session
        finally:
            await session.close()
    finally:
        await conn.execute(f"ALTER ROLE {role} NOSUPERUSER")
        await conn.execute(f"DROP OWNED BY {role} CASCADE")  # on the old code, what bound its shapes
        await conn.execute(f"DROP ROLE {role}")


async def _nothing_ran(conn: asyncpg.Connection, role: str) -> None:
    assert await conn.fetch("SELECT what, by_role FROM public.pwned") == []
    assert await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = $1", role) is False


async def test_an_ordinary_update_by_a_role_with_create_on_public_runs_nothing_of_its_own(
        conn: asyncpg.Connection, mallory: tuple[str, asyncpg.Connection]) -> None:
    role, session = mallory
    row_id = await make_generation(conn, age=timedelta(minutes=5))
    # a heartbeat beyond the slack: track_row computes stale_for / 10 (an interval divided by an integer)
    await session.execute("UPDATE generation_history SET heartbeat_at = now() WHERE id = $1", row_id)
    await session.execute("UPDATE generation_history SET status = 'pending' WHERE id = $1", row_id)
    await session.execute("INSERT INTO generation_history (user_id, status) VALUES (gen_random_uuid(), 'generating')")
    await _nothing_ran(conn, role)


async def test_the_daemon_and_the_admin_views_run_nothing_of_it(
        db_url: str, conn: asyncpg.Connection, mallory: tuple[str, asyncpg.Connection]) -> None:
    role, _ = mallory
    exhausted = await make_generation(conn, due=True, retry_count=2)
    fresh = await make_generation(conn, due=True)
    daemon = await asyncpg.connect(as_daemon(db_url))
    try:
        claimed = await daemon.fetch("SELECT * FROM genretry.claim('d1', 10, '1 minute')")
        assert {(r["id"], r["action"]) for r in claimed} == {(exhausted, "exhausted"), (fresh, "deliver")}
        await daemon.fetch("SELECT * FROM genretry.metrics_snapshot()")
        await daemon.fetchval("SELECT genretry.next_wakeup(clock_timestamp())")
    finally:
        await daemon.close()
    await _nothing_ran(conn, role)


async def test_code_applied_while_the_shapes_exist_binds_none_of_them(
        conn: asyncpg.Connection, mallory: tuple[str, asyncpg.Connection]) -> None:
    role, session = mallory
    # an upgrade re-applies sql/code with the shapes already in public (the migrating role's usual path)
    await conn.execute("UPDATE genretry.schema_code SET checksum = 'changed'")
    await migrate.migrate(conn)
    await make_generation(conn, due=True)  # generating, no heartbeat: "no heartbeat for ..." in stuck
    await session.execute("UPDATE generation_history SET heartbeat_at = now() - interval '1 hour'")
    assert len(await conn.fetch("SELECT * FROM genretry.stuck")) == 1  # read by a superuser
    await conn.fetch("SELECT * FROM genretry.overview")
    await _nothing_ran(conn, role)


async def test_every_genretry_function_runs_on_a_pinned_search_path(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch(
        """SELECT p.oid::regprocedure::text AS fn, p.prosecdef,
                  (SELECT c FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%') AS path
           FROM pg_proc p WHERE p.pronamespace = 'genretry'::regnamespace""")
    definers = [r["fn"] for r in rows if r["prosecdef"]]
    assert len(definers) >= 9  # track_row, apply_policy, claim, record_delivery(ies), next_wakeup, ...
    unpinned = [(r["fn"], r["path"]) for r in rows
                if r["path"] is None or "public" in r["path"] or not r["path"].startswith("search_path=pg_catalog")]
    assert unpinned == []
    # and the triggers on the application's table run definer functions from genretry only
    triggers = await conn.fetch(
        """SELECT p.prosecdef, p.pronamespace::regnamespace::text AS schema FROM pg_trigger t
           JOIN pg_proc p ON p.oid = t.tgfoid
           WHERE t.tgrelid = 'public.generation_history'::regclass AND NOT t.tgisinternal""")
    assert triggers and all(t["schema"] == "genretry" for t in triggers)

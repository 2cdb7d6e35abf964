"""Attacks on the per-delivery cuts (docs/design.md "Claiming ahead" and "The hot path, per delivery"):
the log-value cache, batched log lines, claiming ahead, the cookie shortcut, the shield's removal, the nap.

Four of these failed on the first version of the cuts and pinned the fixes: a finaliser logging during a
batched write deadlocked (the line writer's lock was not re-entrant), a loop closed with a drain pending
withheld later lines, an accepted outcome waiting on a locked row was dropped when the grace period ended
(its cancelled waiter took the outcome with it), and secrets in mapping keys and sets reached the line (an
older hole). The others pin what held."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import io
import json
import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from processor import db, delivery, logs, scrub
from processor.daemon import Daemon
from processor.errors import ConfigError
from processor.log_lines import Lines
from processor.scheduler import Scheduler
from tests.support.factories import make_generation, row
from tests.support.http import StartDaemon, Stub, answer_after, settings_for, wait_until
from tests.support.pg import as_daemon

ROOT = Path(__file__).resolve().parents[2]
SECRET = "Zq9-hunter2-correct-horse-battery-staple-77"


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure("json", "info", stream=stream)
    yield stream
    logs.batch_lines(False)
    scrub.forget_all()


# --- (1) the log-value cache --------------------------------------------------------------------------


def test_a_secret_configured_after_its_value_was_cached_is_redacted(json_logs: io.StringIO) -> None:
    log = logs.get_logger()
    short = f"generator said {SECRET}"  # short: cached on first use
    long = "x" * 300 + SECRET  # over 256: never cached
    nested = {"a": [short, (b"bytes " + SECRET.encode(),)], "b": {"c": short}}
    log.info("before", value=short, long=long, nested=nested)
    assert SECRET in json_logs.getvalue()  # not a secret yet: the cache now holds it as clean
    scrub.remember([SECRET])
    json_logs.truncate(0)
    json_logs.seek(0)
    log.info("after", value=short, long=long, nested=nested, event_key=short)
    log.info(short)  # the event itself
    assert SECRET not in json_logs.getvalue()
    assert SECRET[:12] not in json_logs.getvalue()


def test_str_subclasses_and_str_enums_share_the_cache_without_leaking(json_logs: io.StringIO) -> None:
    class Kind(enum.StrEnum):
        LEAKY = SECRET

    class Tagged(str):
        pass

    scrub.remember([SECRET])
    log = logs.get_logger()
    log.info("x", kind=Kind.LEAKY, tagged=Tagged(SECRET), plain=SECRET)
    log.info("y", kind=Kind.LEAKY, tagged=Tagged(SECRET), plain=SECRET)
    assert SECRET not in json_logs.getvalue()


def test_a_secret_as_a_mapping_key_or_in_a_set_is_redacted(json_logs: io.StringIO) -> None:
    """Not new with the cache (keys and sets were never cleaned) but the same hole: a peer's header names or a
    set of values are rendered as they are."""
    scrub.remember([SECRET])
    log = logs.get_logger()
    log.info("headers", headers={SECRET: "1"})
    log.info("set", values={SECRET})
    assert SECRET not in json_logs.getvalue()


def test_a_stdlib_libraries_exception_text_is_redacted_when_batched(json_logs: io.StringIO) -> None:
    scrub.remember([SECRET])

    async def main() -> None:
        logs.batch_lines(True)
        try:
            try:
                raise RuntimeError(f"connection to postgresql://u:{SECRET}@db failed")
            except RuntimeError:
                logging.getLogger("asyncpg").warning("pool: %s", SECRET, exc_info=True)
                logs.get_logger().exception("delivery_error", why=SECRET)
            assert json_logs.getvalue() == ""  # pending until the end of the turn
        finally:
            logs.batch_lines(False)

    asyncio.run(main())
    text = json_logs.getvalue()
    assert [line["event"] for line in _lines(json_logs)] == ["pool: [redacted secret]", "delivery_error"]
    assert SECRET not in text and "RuntimeError" in text


# --- (2) batched lines ---------------------------------------------------------------------------------


def test_a_finaliser_that_logs_during_a_batched_write_does_not_deadlock_the_process() -> None:
    """Lines.write held a non-reentrant threading.Lock while it called loop.call_soon, which allocates (a
    Handle, a Context) and so may run the cyclic GC. A finaliser run by that collection that logs (asyncio's
    "Task was destroyed but it is pending!", aiohttp's "Unclosed client session", both through the standard
    library's logging, which now writes to the same Lines) re-enters write() and waits for the lock its own
    thread holds: the daemon hangs for good. Before, stdlib lines went to a StreamHandler (an RLock) and
    structlog's to a PrintLogger, so this re-entry could not happen. Here the collection is made to happen at
    that instant (gc threshold 1 and a cycle planted when the lock is held); in a daemon it is a matter of
    time."""
    script = textwrap.dedent("""
        import asyncio, gc, logging, sys
        from processor import logs

        class Abandoned:  # a pending Task / unclosed session in a reference cycle
            def __del__(self):
                logging.getLogger("asyncio").error("Task was destroyed but it is pending!")

        planted = []
        def plant(phase, info):  # a garbage cycle that this collection (run under the lock) frees
            if phase == "start" and not planted and logs._lines is not None and logs._lines._lock._is_owned():
                planted.append(1)
                a = Abandoned(); a.me = a

        async def main():
            logs.configure("json", "info", stream=sys.stdout)
            logs.batch_lines(True)
            gc.callbacks.append(plant)
            try:
                gc.set_threshold(1)
                for i in range(50):
                    logs.get_logger().info("auto_retry", i=i)
                    await asyncio.sleep(0)
                gc.set_threshold(700)
            finally:
                logs.batch_lines(False)
        asyncio.run(main())
        print("finished planted=%d" % len(planted), file=sys.stderr)
    """)
    try:
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("the process hung: a finaliser's log line re-entered Lines.write under its own lock")
    assert "finished" in done.stderr, done.stderr
    if "planted=1" in done.stderr:  # a collection ran under the lock: its finaliser's line is not lost
        assert "Task was destroyed" in done.stdout


def test_a_loop_closed_with_a_drain_pending_does_not_withhold_later_lines() -> None:
    """A line logged in a loop schedules a drain; a loop closed before running it (stopped from a callback,
    closed by a harness) leaves Lines `_scheduled` for good: every later line, even one logged outside any
    loop (documented as written at once), is kept in memory until batching is turned off or the process
    exits."""
    stream = io.StringIO()
    lines = Lines(stream)
    lines.batching = True
    loop = asyncio.new_event_loop()

    async def last_turn() -> None:
        lines.write("in the loop\n")
        loop.stop()

    task = loop.create_task(last_turn())
    loop.run_forever()  # the drain was scheduled for the next turn, which never comes
    loop.close()
    assert task.done()
    lines.write("after the loop\n")  # outside any loop: documented as written at once
    assert stream.getvalue() == "in the loop\nafter the loop\n"


async def test_lines_from_threads_and_stdlib_keep_their_order_with_batching(json_logs: io.StringIO) -> None:
    import threading

    logs.batch_lines(True)
    log = logs.get_logger()
    log.info("a")
    thread = threading.Thread(target=lambda: logging.getLogger("asyncpg").warning("b"))
    thread.start()
    thread.join()  # within the turn that logged "a": "b" goes after it
    await asyncio.sleep(0)
    log.info("c")
    await asyncio.sleep(0)
    logs.batch_lines(False)
    assert [line["event"] for line in _lines(json_logs)] == ["a", "b", "c"]


# --- (3) claiming ahead ----------------------------------------------------------------------------------


async def test_a_key_that_cannot_sign_leaves_no_ready_row_leased(db_url: str, conn: asyncpg.Connection,
                                                                 stub: Stub) -> None:
    ids = [await make_generation(conn, due=True) for _ in range(8)]
    settings = dataclasses.replace(
        settings_for(db_url, stub.url, PROCESSOR_TICK="0.2", PROCESSOR_MAX_IN_FLIGHT="2", PROCESSOR_BATCH_SIZE="8"),
        jwt_private_key="-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    daemon = Daemon(settings)
    with pytest.raises(ConfigError):
        await asyncio.wait_for(daemon.run(signals=False), 20)
    rows = [await row(conn, i) for i in ids]
    assert stub.seen == []
    assert [(r["retry_count"], r["lease_id"]) for r in rows] == [(0, None)] * 8
    assert await conn.fetchval("SELECT count(*) FROM generation_history WHERE deadline_at > now()") == 0


# --- (4) cookies ------------------------------------------------------------------------------------------


async def test_a_peers_set_cookie_never_reaches_another_generator(stub: Stub) -> None:
    async def sets(_request: web.Request) -> web.StreamResponse:
        response = web.json_response({}, status=202)
        response.set_cookie("session", "peer-a-secret", path="/")
        response.headers["Set-Cookie2"] = "x=y"
        return response

    stub.behaviours["generate-a"] = sets
    client = delivery.make_client(max_connections=2, connect_timeout_s=1, response_timeout_s=2)
    try:
        for name in ("generate-a", "generate-a", "generate-b"):
            await delivery.deliver(client, f"{stub.url}/{name}", {}, b"{}", connect_timeout_s=1,
                                   response_timeout_s=2)
        assert len(client.cookies) == 0
    finally:
        await client.aclose()
    assert all("cookie" not in s.headers for s in stub.seen), [s.headers.get("cookie") for s in stub.seen]


# --- (5) the outcome of a delivery cancelled at shutdown (no asyncio.shield) ---------------------------


@pytest.fixture
async def one_slot(db_url: str, stub: Stub) -> AsyncIterator[Scheduler]:
    settings = settings_for(db_url, stub.url, PROCESSOR_MAX_IN_FLIGHT="2", PROCESSOR_BATCH_SIZE="10")
    pool = await db.create_pool(as_daemon(db_url), min_size=1, max_size=4,
                                server_settings={"lock_timeout": db.LOCK_TIMEOUT_MS})
    client = delivery.make_client(max_connections=2, connect_timeout_s=1, response_timeout_s=5)
    scheduler = Scheduler(pool, client, settings, claim_ahead=0)
    yield scheduler
    await client.aclose()
    await pool.close()


async def test_an_answered_outcome_waiting_on_a_lock_is_written_when_the_grace_period_ends(
        db_url: str, conn: asyncpg.Connection, stub: Stub, one_slot: Scheduler) -> None:
    """The generator accepted (202); the outcome waits because an admin transaction holds the row. The lock
    goes just before the grace period ends. drain() cancels the task, which cancels the verdict's future,
    and Recorder.close() re-queues only waiting outcomes whose future is not done: the 202 is never written
    (with asyncio.shield the future stayed pending and close() wrote it). The row stays leased and is sent
    again when the lease runs out: a delivery the generator already accepted, sent twice."""
    answer_now = asyncio.Event()

    async def accept_later(_request: web.Request) -> web.StreamResponse:
        await answer_now.wait()
        return web.json_response({"accepted": True}, status=202)

    stub.behaviours["generate-website"] = accept_later
    row_id = await make_generation(conn, due=True)
    assert (await one_slot.run_once()).claimed == 1
    await stub.wait_for(1)
    admin = await asyncpg.connect(db_url)
    lock = admin.transaction()
    await lock.start()
    await admin.fetch("SELECT id FROM generation_history WHERE id = $1 FOR UPDATE", row_id)
    answer_now.set()  # the 202 comes back while the row is locked
    recorder = one_slot.recorder

    async def waiting_long() -> bool:  # a few retries: the next one is far off
        loop = asyncio.get_running_loop()
        return recorder.waiting() == 1 and any(h.when() - loop.time() > 0.4 for h in recorder._retries.values())

    await wait_until(waiting_long, within_s=10)
    await lock.commit()  # the admin is done: the outcome can be written now
    await admin.close()
    finished = await one_slot.drain(0.01)  # the grace period ends before the next retry
    assert not finished
    r = await row(conn, row_id)
    events = [e["event"] for e in await conn.fetch(
        "SELECT event FROM genretry.events WHERE generation_id = $1 ORDER BY id", row_id)]
    assert r["lease_id"] is None and r["retry_count"] == 1, (dict(r), events)


async def test_a_delivery_cancelled_mid_send_still_gives_its_row_back(
        conn: asyncpg.Connection, stub: Stub, one_slot: Scheduler) -> None:
    stub.behaviours["generate-website"] = answer_after(3)  # past the grace; short for clean-up
    row_id = await make_generation(conn, due=True)
    assert (await one_slot.run_once()).claimed == 1
    await stub.wait_for(1)
    started = time.monotonic()
    assert not await one_slot.drain(0.1)
    assert time.monotonic() - started < 5
    r = await row(conn, row_id)
    assert r["lease_id"] is None and r["retry_count"] == 0
    assert await conn.fetchval("SELECT count(*) FROM genretry.events WHERE generation_id = $1 AND event = 'released'",
                               row_id) == 1


# --- (3, continued) ready rows: their wait counts against the lease; shutdown gives every one back ----------


async def test_a_ready_row_that_waited_past_its_lease_budget_is_given_back_not_sent(
        db_url: str, conn: asyncpg.Connection, stub: Stub) -> None:
    """lease 4 s, connect 1 s + response 2 s: a row may be sent only within 0.8 s of its claim. The ready row
    waits 1.5 s for the only slot: it must be released unsent (same attempt), never sent on a thin lease."""
    stub.behaviours["generate-website"] = answer_after(1.5)
    settings = dataclasses.replace(
        settings_for(db_url, stub.url, PROCESSOR_MAX_IN_FLIGHT="1", PROCESSOR_BATCH_SIZE="4"), lease_s=4.0)
    pool = await db.create_pool(as_daemon(db_url), min_size=1, max_size=4)
    client = delivery.make_client(max_connections=2, connect_timeout_s=1, response_timeout_s=2)
    scheduler = Scheduler(pool, client, settings, claim_ahead=1)
    try:
        ids = [await make_generation(conn, due=True) for _ in range(2)]
        assert (await scheduler.run_once()).claimed == 2 and len(scheduler.ready) == 1
        waiting = scheduler.ready[0][0]

        async def released() -> bool:
            return bool(await conn.fetchval(
                "SELECT count(*) FROM genretry.events WHERE generation_id = $1 AND event = 'released'", waiting.id))

        await wait_until(released, within_s=10)
        assert await scheduler.drain(10)
    finally:
        await client.aclose()
        await pool.close()
    assert [s.body["retryHistoryId"] for s in stub.seen] == [str(i) for i in ids if i != waiting.id]
    r = await row(conn, waiting.id)
    assert (r["lease_id"], r["retry_count"], r["attempt"]) == (None, 0, waiting.attempt)


async def test_stop_past_the_grace_period_gives_back_in_flight_and_ready_rows(
        db_url: str, conn: asyncpg.Connection, stub: Stub, start_daemon: StartDaemon) -> None:
    stub.behaviours["generate-website"] = answer_after(3)  # past the grace; short for clean-up
    ids = [await make_generation(conn, due=True) for _ in range(8)]
    running = await start_daemon(settings_for(db_url, stub.url, PROCESSOR_MAX_IN_FLIGHT="4",
                                              PROCESSOR_BATCH_SIZE="8", PROCESSOR_GRACE="0.3",
                                              PROCESSOR_RESPONSE_TIMEOUT="20"))
    await stub.wait_for(4)
    scheduler = running.daemon.scheduler
    assert scheduler is not None and len(scheduler.ready) == 2  # min(8, 4) // 2 claimed ahead
    await running.stop()
    rows = [await row(conn, i) for i in ids]
    assert len(stub.seen) == 4
    assert [(r["lease_id"], r["retry_count"]) for r in rows] == [(None, 0)] * 8
    released = await conn.fetchval("SELECT count(DISTINCT generation_id) FROM genretry.events WHERE event = 'released'")
    assert released == 6


async def test_two_daemons_claiming_ahead_one_stopped_midway_send_each_row_once(
        db_url: str, conn: asyncpg.Connection, stub: Stub, start_daemon: StartDaemon) -> None:
    stub.behaviours["generate-website"] = answer_after(0.05)
    ids = [await make_generation(conn, due=True) for _ in range(60)]
    env = dict(PROCESSOR_MAX_IN_FLIGHT="4", PROCESSOR_BATCH_SIZE="8", PROCESSOR_TICK="0.5")
    first = await start_daemon(dataclasses.replace(settings_for(db_url, stub.url, **env), worker_id="a"))
    await start_daemon(dataclasses.replace(settings_for(db_url, stub.url, **env), worker_id="b"))
    await stub.wait_for(15)
    scheduler = first.daemon.scheduler
    assert scheduler is not None
    await wait_until(lambda: _true(bool(scheduler.ready)), within_s=10)  # rows claimed ahead: stop now
    await first.stop()  # its ready rows are given back: the other daemon sends them, once

    async def all_done() -> bool:
        return bool(await conn.fetchval("SELECT count(*) FROM generation_history WHERE retry_count = 1") == len(ids))

    await wait_until(all_done, within_s=30)
    assert max(stub.keys().values()) == 1, [k for k, n in stub.keys().items() if n > 1]
    assert {s.body["retryHistoryId"] for s in stub.seen} == {str(i) for i in ids}


async def _true(value: bool) -> bool:
    return value

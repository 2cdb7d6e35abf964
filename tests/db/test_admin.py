"""The admin API of SPEC 3.6: effects, events with actor, unknown ids, the live-lease guard, fencing."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import asyncpg
import pytest

from tests.support.factories import SEED_ID, events, make_generation, row


async def test_reset_is_the_seeds_manual_fix(conn: asyncpg.Connection) -> None:
    await make_generation(conn, id=SEED_ID, status="failed", admin_note="retry:2", retry_count=2)
    await conn.execute(
        "UPDATE generation_history SET error_message = 'retries exhausted', dispatch_failures = 3 WHERE id = $1",
        SEED_ID)
    message = await conn.fetchval("SELECT genretry.reset($1)", SEED_ID)
    assert message == f"{SEED_ID}: reset to pending and due now (was failed after 2 automatic retries)"
    r = await row(conn, SEED_ID)
    assert (r["status"], r["retry_count"], r["dispatch_failures"], r["error_message"], r["admin_note"]) == (
        "pending", 0, 0, None, "retry:0")
    assert await conn.fetchval("SELECT deadline_at <= now() FROM generation_history WHERE id = $1", SEED_ID)
    claimed = await conn.fetch("SELECT * FROM genretry.claim('w', 10, '1 minute')")
    assert [(c["id"], c["action"]) for c in claimed] == [(SEED_ID, "deliver")]
    assert await events(conn, SEED_ID) == ["reset", "claimed"]


async def test_retry_now_keeps_the_counter(conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, retry_count=1)
    message = await conn.fetchval("SELECT genretry.retry_now($1)", row_id)
    assert message.endswith("due now (1 of 2 automatic retries used)")
    r = await row(conn, row_id)
    assert r["retry_count"] == 1 and r["retry_phase"] == "requested"
    # a fresh heartbeat does not hide the admin's request
    await conn.execute("UPDATE generation_history SET heartbeat_at = now() WHERE id = $1", row_id)
    claimed = await conn.fetch("SELECT * FROM genretry.claim('w', 10, '1 minute')")
    assert [c["attempt"] for c in claimed] == [1]


async def test_retry_now_on_spent_retries_says_what_will_happen(conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, retry_count=2)
    assert "use genretry.reset" in await conn.fetchval("SELECT genretry.retry_now($1)", row_id)


async def test_retry_now_refuses_a_finished_row(conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, status="completed")
    with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError, match=r"use genretry\.reset"):
        await conn.fetchval("SELECT genretry.retry_now($1)", row_id)


async def test_give_up_fails_with_the_reason(conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn)
    assert await conn.fetchval("SELECT genretry.give_up($1, 'user cancelled')", row_id) == (
        f"{row_id}: failed (user cancelled)")
    r = await row(conn, row_id)
    assert (r["status"], r["error_message"], r["deadline_at"]) == ("failed", "user cancelled", None)
    with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError, match="already failed"):
        await conn.fetchval("SELECT genretry.give_up($1, 'again')", row_id)
    with pytest.raises(asyncpg.InvalidParameterValueError, match="needs a reason"):
        await conn.fetchval("SELECT genretry.give_up($1, '  ')", row_id)


@pytest.mark.parametrize("call", [
    "SELECT genretry.reset($1)", "SELECT genretry.retry_now($1)", "SELECT genretry.give_up($1, 'r')",
    "SELECT * FROM genretry.history($1)", "SELECT genretry.finish($1, 0, 'completed')",
])
async def test_unknown_ids_raise_a_clear_error(conn: asyncpg.Connection, call: str) -> None:
    with pytest.raises(asyncpg.NoDataFoundError, match=r"generation 00000000-0000-0000-0000-000000000001 not found"):
        await conn.fetch(call, "00000000-0000-0000-0000-000000000001")


@pytest.mark.parametrize("call", [
    "SELECT genretry.reset($1{})", "SELECT genretry.retry_now($1{})", "SELECT genretry.give_up($1, 'r'{})",
])
async def test_a_live_lease_is_refused_unless_forced(conn: asyncpg.Connection, call: str) -> None:
    row_id = await make_generation(conn, due=True)
    lease = (await conn.fetch("SELECT * FROM genretry.claim('w', 10, '1 minute')"))[0]["lease_id"]
    with pytest.raises(asyncpg.ObjectInUseError, match=r"(?s)delivery in flight .* force => true"):
        await conn.fetchval(call.format(""), row_id)
    await conn.fetchval(call.format(", force => true"), row_id)
    assert (await row(conn, row_id))["lease_id"] is None
    # the in-flight delivery's outcome no longer applies
    assert await conn.fetchval(
        "SELECT result FROM genretry.record_delivery($1, $2, 'accepted', 202)", row_id, lease) == "stale"


async def test_admin_calls_record_the_actor(conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn)
    async with conn.transaction():
        await conn.execute("SET LOCAL ROLE genretry_admin")
        await conn.fetchval("SELECT genretry.retry_now($1)", row_id)
    actor = await conn.fetchval(
        "SELECT actor FROM genretry.events WHERE generation_id = $1 AND event = 'retry_now'", row_id)
    assert actor == "genretry_admin"


async def test_history_is_oldest_first(conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, due=True)
    await conn.fetch("SELECT * FROM genretry.claim('w', 10, '1 minute')")
    await conn.fetchval("SELECT genretry.give_up($1, 'done', force => true)", row_id)
    history = await conn.fetch("SELECT * FROM genretry.history($1)", row_id)
    assert [h["event"] for h in history] == ["claimed", "given_up"]
    assert history[1]["actor"] == "postgres" and history[1]["detail"] is not None


async def test_finish_is_fenced_on_the_attempt(conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, due=True)
    # the original run (attempt 0) may finish while nothing replaced it
    other = await make_generation(conn)
    assert await conn.fetchval("SELECT genretry.finish($1, 0, 'completed')", other) is True
    assert (await row(conn, other))["status"] == "completed"
    # once a retry (attempt 1) is claimed, the slow original is fenced
    await conn.fetch("SELECT * FROM genretry.claim('w', 10, '1 minute')")
    assert await conn.fetchval("SELECT genretry.finish($1, 0, 'failed', 'timeout')", row_id) is False
    assert (await row(conn, row_id))["status"] == "generating"
    fenced = await conn.fetchrow(
        "SELECT attempt, detail FROM genretry.events WHERE generation_id = $1 AND event = 'fenced'", row_id)
    assert fenced["attempt"] == 0
    assert await conn.fetchval("SELECT genretry.finish($1, 1, 'failed', 'model overloaded')", row_id) is True
    r = await row(conn, row_id)
    assert (r["status"], r["error_message"]) == ("failed", "model overloaded")
    with pytest.raises(asyncpg.InvalidParameterValueError):
        await conn.fetchval("SELECT genretry.finish($1, 1, 'generating')", row_id)


async def test_stuck_explains_each_row(conn: asyncpg.Connection) -> None:
    backoff = await make_generation(conn, due=True)
    lease = await conn.fetch("SELECT * FROM genretry.claim('w', 10, '1 minute')")
    await conn.execute(
        "SELECT genretry.record_delivery($1, $2, 'unreachable', 503, '{}', interval '40 seconds')",
        backoff, lease[0]["lease_id"])
    silent = await make_generation(conn, age=timedelta(minutes=9))
    await conn.execute("UPDATE generation_history SET deadline_at = now() - interval '2 minutes' WHERE id = $1", silent)
    await make_generation(conn)  # healthy: not listed
    reasons = {r["id"]: r["reason"] for r in await conn.fetch("SELECT * FROM genretry.stuck")}
    assert reasons.keys() == {silent, backoff}
    assert reasons[silent] == "no heartbeat for 9 min (stale after 7 min)"
    assert reasons[backoff] in ("waiting 40 s of backoff after 503", "waiting 39 s of backoff after 503")


async def test_overview_counts_live_rows_and_the_last_hour(conn: asyncpg.Connection) -> None:
    await make_generation(conn, due=True)
    await make_generation(conn)
    await make_generation(conn, status="pending")
    await make_generation(conn, due=True, retry_count=2)
    await conn.fetch("SELECT * FROM genretry.claim('w', 10, '1 minute')")
    rows = {(r["generator"], r["status"]): r for r in await conn.fetch("SELECT * FROM genretry.overview")}
    generating = rows[("generate-website", "generating")]
    assert generating["rows"] == 2 and generating["failures_1h"] == 1
    assert rows[("generate-website", "pending")]["rows"] == 1


async def test_the_seeds_runbook_still_works_after_adoption(conn: asyncpg.Connection) -> None:
    # exhausted after an earlier reset: the note still says retry:0, the counter says 2
    row_id = await make_generation(conn, status="failed", retry_count=2, admin_note="retry:0")
    app = f"genretry_test_runbook_{uuid.uuid4().hex[:8]}"
    await conn.execute(f"CREATE ROLE {app}")
    await conn.execute(f"GRANT SELECT, UPDATE ON generation_history TO {app}")
    try:
        async with conn.transaction():  # an application role with no rights in schema genretry
            await conn.execute(f"SET LOCAL ROLE {app}")
            await conn.execute("""UPDATE generation_history SET status = 'pending', admin_note = 'retry:0',
                                      error_message = NULL WHERE id = $1""", row_id)
    finally:
        await conn.execute(f"REVOKE ALL ON generation_history FROM {app}")
        await conn.execute(f"DROP ROLE {app}")
    assert (await row(conn, row_id))["retry_count"] == 0
    event = await conn.fetchrow(
        "SELECT detail, actor FROM genretry.events WHERE generation_id = $1 AND event = 'retry_count_set'", row_id)
    assert json.loads(event["detail"]) == {"retry_count": 0, "previous_retry_count": 2, "via": "admin_note"}
    claimed = await conn.fetch("SELECT * FROM genretry.claim('w', 10, '1 minute', now() + interval '1 hour')")
    assert [(c["id"], c["action"]) for c in claimed] == [(row_id, "deliver")]  # retried, not failed again
    # an UPDATE that sets retry_count itself wins; other notes are free text
    await conn.execute("UPDATE generation_history SET admin_note = 'retry:1', retry_count = 2 WHERE id = $1", row_id)
    await conn.execute("UPDATE generation_history SET admin_note = 'retry: later please' WHERE id = $1", row_id)
    assert (await row(conn, row_id))["retry_count"] == 2


async def test_overview_counts_a_rejected_row_once(conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, due=True)
    lease = (await conn.fetchrow("SELECT * FROM genretry.claim('w', 10, '1 minute')"))["lease_id"]
    await conn.fetchval("SELECT result FROM genretry.record_delivery($1, $2, 'rejected', 422)", row_id, lease)
    assert (await row(conn, row_id))["status"] == "failed"
    overview = await conn.fetch("SELECT failures_1h FROM genretry.overview WHERE generator = 'generate-website'")
    assert [r["failures_1h"] for r in overview] == [1]

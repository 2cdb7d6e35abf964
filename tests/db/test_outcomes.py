"""genretry.record_delivery: every row of the SPEC section 4 outcome table."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from tests.support.factories import events, make_generation, one, row

RECORD = """SELECT * FROM genretry.record_delivery($1, $2, $3, $4, $5::jsonb, $6::interval, 'w1', now(), 0.5)"""


async def delivered(conn: asyncpg.Connection, outcome: str, status: int | None = None, *,
                    detail: str = "{}", retry_after: timedelta | None = None, retry_count: int = 0,
                    dispatch_failures: int = 0) -> tuple[asyncpg.Record, asyncpg.Record]:
    row_id = await make_generation(conn, due=True, retry_count=retry_count)
    await conn.execute("UPDATE generation_history SET dispatch_failures = $2 WHERE id = $1", row_id, dispatch_failures)
    claimed = (await conn.fetch("SELECT * FROM genretry.claim('w1', 10, '3 minutes')"))[0]
    result = await one(conn, RECORD, row_id, claimed["lease_id"], outcome, status, detail, retry_after)
    return result, await row(conn, row_id)


async def _due_in(conn: asyncpg.Connection, r: asyncpg.Record) -> float:
    seconds: float = await conn.fetchval(
        "SELECT extract(epoch FROM $1::timestamptz - now())::float8", r["deadline_at"])
    return seconds


@pytest.mark.parametrize(("outcome", "event"), [("accepted", "delivered"), ("timeout", "delivery_timeout")])
async def test_accepted_and_timeout_count_and_hand_the_row_back(conn: asyncpg.Connection, outcome: str,
                                                                event: str) -> None:
    result, r = await delivered(conn, outcome, 202 if outcome == "accepted" else None, dispatch_failures=3)
    assert result["result"] == "recorded"
    assert (r["retry_count"], r["dispatch_failures"]) == (1, 0)
    assert (r["retry_phase"], r["status"]) == ("delivered", "generating")
    assert r["lease_id"] is None and r["lease_until"] is None
    assert 419 < await _due_in(conn, r) <= 420  # now + stale_after
    assert (await events(conn, r["id"]))[-1] == event


async def test_500_counts_and_backs_off(conn: asyncpg.Connection) -> None:
    _, r = await delivered(conn, "server_error", 500, retry_count=1)
    assert (r["retry_count"], r["retry_phase"], r["last_outcome"]) == (2, "backoff", "500")
    assert 9 < await _due_in(conn, r) <= 10  # base 5 s * 2^(2-1), jitter pinned to the middle


async def test_unreachable_does_not_count_and_honours_retry_after(conn: asyncpg.Connection) -> None:
    _, r = await delivered(conn, "unreachable", 503, retry_after=timedelta(seconds=40))
    assert (r["retry_count"], r["dispatch_failures"], r["retry_phase"], r["attempt"]) == (0, 1, "unsent", 1)
    assert 39 < await _due_in(conn, r) <= 40
    # the next delivery of the same retry reuses the attempt, so the Idempotency-Key is the same
    await conn.execute("UPDATE generation_history SET deadline_at = now() WHERE id = $1", r["id"])
    again = (await conn.fetch("SELECT * FROM genretry.claim('w1', 10, '3 minutes')"))[0]
    assert again["attempt"] == 1


async def test_unreachable_backoff_without_retry_after(conn: asyncpg.Connection) -> None:
    _, r = await delivered(conn, "unreachable", None, detail='{"label": "connection refused"}', dispatch_failures=2)
    assert r["dispatch_failures"] == 3 and r["last_outcome"] == "connection refused"
    assert 19 < await _due_in(conn, r) <= 20  # 5 s * 2^(3-1)


async def test_too_many_dispatch_failures_fail_the_row(conn: asyncpg.Connection) -> None:
    result, r = await delivered(conn, "unreachable", None, dispatch_failures=7,
                                detail='{"label": "connection refused", "message": "connection refused"}')
    assert r["status"] == "failed" and r["retry_count"] == 0
    assert r["error_message"] == (
        "generator unreachable: connection refused (8 failed deliveries to generate-website)")
    assert result["failed_with"] == r["error_message"]
    assert (await events(conn, r["id"]))[-2:] == ["delivery_failed", "unreachable"]


@pytest.mark.parametrize("status", [401, 403])
async def test_credentials_refused_pause_the_generator_and_fail_nothing(conn: asyncpg.Connection,
                                                                        status: int) -> None:
    result, r = await delivered(conn, "unauthorized", status)
    assert result["circuit"] == "opened"
    assert (r["status"], r["retry_count"], r["dispatch_failures"]) == ("generating", 0, 0)
    state = await conn.fetchrow("SELECT * FROM genretry.generator_state WHERE generator = 'generate-website'")
    assert state["state"] == "open" and state["reason"] == f"{status} from generate-website"
    assert "generator_paused" in await events(conn, r["id"])


@pytest.mark.parametrize("status", [400, 404, 410, 422])
async def test_permanent_rejections_fail_the_row_with_the_generators_message(conn: asyncpg.Connection,
                                                                             status: int) -> None:
    _, r = await delivered(conn, "rejected", status, detail='{"message": "prompt is empty"}')
    assert r["status"] == "failed" and r["retry_count"] == 0
    assert r["error_message"] == f"generator generate-website rejected the retry ({status}): prompt is empty"


async def test_released_rows_are_due_again_now_with_the_same_attempt(conn: asyncpg.Connection) -> None:
    _, r = await delivered(conn, "released")
    assert (r["retry_count"], r["dispatch_failures"], r["retry_phase"]) == (0, 0, "unsent")
    assert await _due_in(conn, r) <= 0
    again = (await conn.fetch("SELECT * FROM genretry.claim('w2', 10, '3 minutes')"))[0]
    assert again["attempt"] == 1


async def test_a_row_finished_during_delivery_still_counts_its_retry(conn: asyncpg.Connection) -> None:
    row_id = await make_generation(conn, due=True)
    claimed = (await conn.fetch("SELECT * FROM genretry.claim('w1', 10, '3 minutes')"))[0]
    # the generator answers fast and reports before the daemon records: not fenced (attempt set at claim)
    assert await conn.fetchval("SELECT genretry.finish($1, $2, 'completed')", row_id, claimed["attempt"])
    result = await conn.fetchrow(RECORD, row_id, claimed["lease_id"], "accepted", 202, "{}", None)
    r = await row(conn, row_id)
    assert result["result"] == "recorded"
    assert (r["status"], r["retry_count"], r["deadline_at"]) == ("completed", 1, None)


async def test_unknown_outcomes_are_refused(conn: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.InvalidParameterValueError):
        await conn.fetch(RECORD, await make_generation(conn), None, "maybe", None, "{}", None)


@pytest.mark.parametrize(("n", "low", "high"), [(1, 4, 6), (2, 8, 12), (3, 16, 24), (10, 240, 360), (40, 240, 360)])
async def test_backoff_formula(conn: asyncpg.Connection, n: int, low: float, high: float) -> None:
    values = [await conn.fetchval(
        "SELECT extract(epoch FROM genretry.backoff_delay(genretry.effective_policy('x'), $1, $2))::float8", n, j)
        for j in (0.0, 0.5, 0.999999)]
    assert values[0] == pytest.approx(low) and values[2] == pytest.approx(high, rel=1e-4)
    assert low < values[1] < high

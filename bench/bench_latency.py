"""Detection lag (deadline -> request at the generator) against a timer+POST floor and the seed's
fixed-interval poll, and the NOTIFY path (genretry.retry_now -> request) against an ideal listener (asyncpg
LISTEN -> one kept-alive aiohttp POST to the same stub), in one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable

import asyncpg
import httpx

from bench.common import Result, Row, daemon_process, fresh_db, ms, pct, stub_arrivals, stub_process, stub_reset

SEED_QUERY = """SELECT id, generator FROM generation_history
                WHERE status = 'generating' AND updated_at < now() - interval '2 seconds'"""


async def _insert_spread(conn: asyncpg.Connection, n: int, spacing_s: float) -> dict[str, float]:
    """n generating rows whose deadlines are spread spacing_s apart from now + 2 s.

    The policy stays at its 7 minutes; the status change is backdated instead, so that a delivered row's
    next deadline is 7 minutes away and no second wave of deliveries disturbs the measurement.
    """
    rows = await conn.fetch(
        """INSERT INTO generation_history (user_id, status, status_changed_at)
           SELECT gen_random_uuid(), 'generating',
                  clock_timestamp() + i * $2::float8 * interval '1 second' - interval '7 minutes 2 seconds'
                  + interval '4 seconds'
           FROM generate_series(0, $1 - 1) i
           RETURNING id::text, extract(epoch FROM deadline_at)::float8 AS deadline""", n, spacing_s)
    return {r["id"]: r["deadline"] for r in rows}


async def _wait_count(url: str, n: int, within_s: float, quiet_s: float = 0.0) -> list[tuple[str, str, float]]:
    """The first arrival of each generation (a row delivered again later is not a second sample).

    quiet_s: how long to leave the stub alone first, so polling it does not disturb the measurement.
    """
    await asyncio.sleep(quiet_s)
    deadline = time.monotonic() + within_s
    while True:
        first: dict[str, tuple[str, str, float]] = {}
        for arrival in await stub_arrivals(url):
            first.setdefault(arrival[1], arrival)
        if len(first) >= n or time.monotonic() > deadline:
            return list(first.values())
        await asyncio.sleep(0.25)


async def _seed_poller(db_url: str, stub_url: str, stop: asyncio.Event, interval_s: float) -> None:
    """The seed's design: every interval, find stale rows without an index and POST each one."""
    conn = await asyncpg.connect(db_url)
    async with httpx.AsyncClient() as client:
        while not stop.is_set():
            for row in await conn.fetch(SEED_QUERY):
                await conn.execute("UPDATE generation_history SET status = 'pending' WHERE id = $1", row["id"])
                await client.post(f"{stub_url}/{row['generator']}", json={"retryHistoryId": str(row["id"])})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
    await conn.close()


async def _retry_now_each(conn: asyncpg.Connection, ids: list[str],
                          arm: Callable[[str], None] = lambda _rid: None) -> tuple[dict[str, float], dict[str, float]]:
    """genretry.retry_now on each row, 20 ms apart: (time called, time its commit was acknowledged) by id.

    The path starts when the commit is acknowledged to the caller. The NOTIFY and that acknowledgement leave
    the server together at commit; the call's own work before its commit is not the path.
    """
    called: dict[str, float] = {}
    committed: dict[str, float] = {}
    for rid in ids:
        arm(rid)
        called[rid] = time.time()
        await conn.execute("SELECT genretry.retry_now($1::uuid)", rid)
        committed[rid] = time.time()
        await asyncio.sleep(0.02)
    return called, committed


async def _not_due(conn: asyncpg.Connection, n: int) -> list[str]:
    await conn.execute("UPDATE generation_history SET status = 'completed' WHERE status = 'generating'")
    return [r["id"] for r in await conn.fetch(
        "INSERT INTO generation_history (user_id, status) SELECT gen_random_uuid(), 'generating' "
        "FROM generate_series(1, $1) RETURNING id::text", n)]


async def notify_path(conn: asyncpg.Connection, stub_url: str, n: int) -> tuple[list[float], list[float]]:
    """With a daemon running: retry_now on n rows that are not due; (commit -> request, call -> request)."""
    await stub_reset(stub_url)
    ids = await _not_due(conn, n)
    await asyncio.sleep(0.5)
    called, committed = await _retry_now_each(conn, ids)
    arrivals = await _wait_count(stub_url, n, 30, quiet_s=0.2)
    return ([t - committed[rid] for _key, rid, t in arrivals if rid in committed],
            [t - called[rid] for _key, rid, t in arrivals if rid in called])


# The least a claim can be: one statement that leases the row and logs its event, committed (durably, at the
# server's default) on the LISTEN connection itself, before the request.
MINIMAL_CLAIM = """WITH u AS (
    UPDATE generation_history SET lease_id = gen_random_uuid(), lease_until = now() + interval '1 minute',
           deadline_at = now() + interval '1 minute', retry_phase = 'leased', attempt = attempt + 1
    WHERE id = $1::uuid RETURNING id, generator, attempt)
INSERT INTO genretry.events (generation_id, generator, attempt, event, worker)
SELECT id, generator, attempt, 'claimed', 'ideal' FROM u"""


async def ideal_listener(db_url: str, conn: asyncpg.Connection, stub_url: str, n: int, *,
                         claim: bool = False) -> list[float]:
    """The NOTIFY path's floor, with no daemon running: an asyncpg LISTEN genretry connection that POSTs each
    notified row at once through one kept-alive aiohttp session to the same stub. Same calls, same clock.

    claim=True: it first claims the row with MINIMAL_CLAIM on its own connection (a reference that includes
    the one durable write a rescue needs before its request; the goal's floor is the listener without it)."""
    import aiohttp

    await stub_reset(stub_url)
    ids = await _not_due(conn, n)
    armed: set[str] = set()
    pending: set[asyncio.Task[None]] = set()
    listener = await asyncpg.connect(db_url)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8)) as session:

        async def post(rid: str, claim_first: bool = False) -> None:
            if claim_first:
                await listener.execute(MINIMAL_CLAIM, rid)
            async with session.post(f"{stub_url}/ideal", json={"retryHistoryId": rid}) as response:
                await response.read()

        def on(_c: object, _p: int, _ch: str, payload: object) -> None:
            rid = json.loads(str(payload)).get("id", "")
            if rid in armed:
                armed.discard(rid)
                task = asyncio.create_task(post(rid, claim))
                pending.add(task)
                task.add_done_callback(pending.discard)

        await listener.add_listener("genretry", on)
        await post("warm-up")
        await asyncio.sleep(0.5)  # the inserts' notifications pass before any row is armed
        _called, committed = await _retry_now_each(conn, ids, armed.add)
        arrivals = await _wait_count(stub_url, n, 30, quiet_s=0.2)
    await listener.close()
    return [t - committed[rid] for _key, rid, t in arrivals if rid in committed]


async def run(admin_url: str, quick: bool) -> Result:
    n = 100 if quick else 300
    result = Result("latency")
    async with fresh_db(admin_url) as db_url, stub_process() as stub_url:
        conn = await asyncpg.connect(db_url)

        # 1. the daemon, woken by deadlines, from its start: the first delivery after start is a sample too
        #    (a process's first delivery opens connections and may import lazily; reported on its own as well)
        async with daemon_process(db_url, stub_url, PROCESSOR_TICK="60"):
            deadlines = await _insert_spread(conn, n, 0.02)
            arrivals = await _wait_count(stub_url, n, 30, quiet_s=2.2 + n * 0.02)
            lags = [t - deadlines[rid] for _key, rid, t in arrivals if rid in deadlines]
            first_id = min(deadlines, key=deadlines.__getitem__)
            cold = next((t - deadlines[rid] for _k, rid, t in arrivals if rid == first_id), float("nan"))
            slow = sorted(((t - deadlines[rid], rid) for _k, rid, t in arrivals if rid in deadlines), reverse=True)
            result.data["slowest"] = slow[:5]

            # 2. the NOTIFY path: retry_now on rows that are not due
            notify, from_call = await notify_path(conn, stub_url, n)
            result.data["notify_from_call_s"] = from_call

        # floors, same server, same stub, same run, no daemon running
        ideal = await ideal_listener(db_url, conn, stub_url, n)
        claiming = await ideal_listener(db_url, conn, stub_url, n, claim=True)
        floor = await _raw_notify(db_url, n)
        await stub_reset(stub_url)
        timer_floor = await _timer_floor(stub_url, n)

        # 3. the seed's design at a 1 s interval (its cron ran far less often)
        await conn.execute("UPDATE genretry.policy SET enabled = false")  # nothing else touches the rows
        await conn.execute("UPDATE generation_history SET status = 'completed'")
        await stub_reset(stub_url)
        stop = asyncio.Event()
        poller = asyncio.create_task(_seed_poller(db_url, stub_url, stop, 1.0))
        rows = await conn.fetch(
            """INSERT INTO generation_history (user_id, status, status_changed_at, updated_at)
               SELECT gen_random_uuid(), 'generating', clock_timestamp() + i * 0.02 * interval '1 second',
                      clock_timestamp() + i * 0.02 * interval '1 second'
               FROM generate_series(0, $1 - 1) i
               RETURNING id::text, extract(epoch FROM updated_at + interval '2 seconds')::float8 AS due""", n)
        seed_due = {r["id"]: r["due"] for r in rows}
        arrivals = await _wait_count(stub_url, n, 30)
        stop.set()
        await poller
        seed_lags = [t - seed_due[rid] for _key, rid, t in arrivals if rid in seed_due]
        await conn.close()

    lag_goal = pct(timer_floor, 99) + 0.005
    p50_goal, p99_goal = pct(ideal, 50) + 0.0015, pct(ideal, 99) + 0.005
    result.rows = [
        Row("detection lag p50 (deadline -> request)", ms(pct(lags, 50)),
            f"timer+POST floor: {ms(pct(timer_floor, 50))}; seed poll 1 s: {ms(pct(seed_lags, 50))}"),
        Row(f"detection lag p99, first delivery after start included ({len(lags)} rows)", ms(pct(lags, 99)),
            f"timer+POST floor p99: {ms(pct(timer_floor, 99))}; seed poll 1 s: {ms(pct(seed_lags, 99))}",
            f"<= floor + 5 ms = {ms(lag_goal)}", pct(lags, 99) <= lag_goal),
        Row("detection lag, cold start (first delivery after start)", ms(cold),
            f"timer+POST floor p99: {ms(pct(timer_floor, 99))}", f"<= {ms(lag_goal)}", cold <= lag_goal),
        Row("NOTIFY path p50 (retry_now commit -> request)", ms(pct(notify, 50)),
            f"ideal listener: {ms(pct(ideal, 50))} (raw NOTIFY->LISTEN {ms(pct(floor, 50))})",
            f"<= floor + 1.5 ms = {ms(p50_goal)}", pct(notify, 50) <= p50_goal),
        Row("NOTIFY path p50 over an ideal listener that claims (reference, no goal)",
            ms(pct(notify, 50) - pct(claiming, 50)),
            f"ideal listener with one durable claim statement: p50 {ms(pct(claiming, 50))}, "
            f"{ms(pct(claiming, 50) - pct(ideal, 50))} over the one without"),
        Row("NOTIFY path p99", ms(pct(notify, 99)),
            f"ideal listener: {ms(pct(ideal, 99))} (raw NOTIFY->LISTEN {ms(pct(floor, 99))})",
            f"<= floor + 5 ms = {ms(p99_goal)}", pct(notify, 99) <= p99_goal),
    ]
    result.data |= {"samples": n, "lag_s": lags, "cold_start_lag_s": cold, "seed_lag_s": seed_lags,
                    "notify_s": notify, "ideal_listener_s": ideal, "claiming_listener_s": claiming,
                    "raw_notify_s": floor, "timer_floor_s": timer_floor}
    return result


async def _raw_notify(db_url: str, n: int) -> list[float]:
    listener, sender = await asyncpg.connect(db_url), await asyncpg.connect(db_url)
    got: dict[str, float] = {}
    arrived = asyncio.Event()

    def on(_c: object, _p: int, _ch: str, payload: object) -> None:
        got[str(payload)] = time.time()
        arrived.set()

    await listener.add_listener("bench_floor", on)
    samples = []
    for _ in range(n):
        token = uuid.uuid4().hex
        arrived.clear()
        await sender.execute("SELECT pg_notify('bench_floor', $1)", token)
        t0 = time.time()  # measured like the NOTIFY path: from the commit's acknowledgement
        while token not in got:
            await asyncio.wait_for(arrived.wait(), 5)
            arrived.clear()
        samples.append(max(0.0, got[token] - t0))
        await asyncio.sleep(0.005)
    await listener.close()
    await sender.close()
    return samples


async def _timer_floor(stub_url: str, n: int) -> list[float]:
    """Sleep until each deadline (20 ms apart), then POST with raw aiohttp: the least any design could do."""
    import aiohttp

    samples = []
    async with aiohttp.ClientSession() as session:
        await session.post(f"{stub_url}/warm-up", json={})
        start = time.time() + 0.5
        for i in range(n):
            due = start + i * 0.02
            await asyncio.sleep(max(0.0, due - time.time()))
            async with session.post(f"{stub_url}/floor", json={"retryHistoryId": str(i)}) as response:
                await response.read()
        arrivals = await _wait_count(stub_url, n + 1, 30)
    by_id = {rid: t for _k, rid, t in arrivals}
    for i in range(n):
        if str(i) in by_id:
            samples.append(by_id[str(i)] - (start + i * 0.02))
    return samples

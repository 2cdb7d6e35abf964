"""The platform's own alternative as a peer: a cron-style sweep that posts due rows through the pg_net extension
(a background worker inside PostgreSQL), against the same stub, beside the daemon on the same server.

pg_net must be preloaded, so this runs on a temporary PostgreSQL 15 cluster of its own (bench/cluster.py) with
shared_preload_libraries = 'pg_net'; the machine's main cluster is never touched. Without pg_net installed the
peer is skipped with the reason (docs/BENCHMARKS.md says how to build it).
Figures: throughput for N requests at pg_net's default batch (200) and a tuned one (2000), requests lost,
the lag of an isolated request (commit -> request at the stub); the daemon's recovery and NOTIFY path on the
same cluster.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg

from bench import cluster
from bench.bare_client import BODY
from bench.bench_latency import notify_path
from bench.bench_recovery import recover
from bench.common import Result, Row, daemon_process, fresh_db, ms, pct, stub_arrivals, stub_process, stub_reset

SWEEP = """SELECT count(net.http_post(url := $1, body := $2::jsonb || jsonb_build_object('retryHistoryId', id),
                                       headers := '{"Content-Type": "application/json"}'::jsonb,
                                       timeout_milliseconds := 30000))
           FROM bench_due"""


async def _arrived(stub_url: str, ids: set[str], settle_s: float, within_s: float) -> tuple[int, float]:
    """(how many of ids reached the stub, time of the last one) once no new one came for settle_s."""
    deadline, seen, last_change = time.monotonic() + within_s, -1, time.monotonic()
    while time.monotonic() < deadline:
        arrivals = [a for a in await stub_arrivals(stub_url) if a[1] in ids]
        count = len({a[1] for a in arrivals})
        if count != seen:
            seen, last_change = count, time.monotonic()
        if count >= len(ids) or time.monotonic() - last_change > settle_s:
            break
        await asyncio.sleep(0.5)
    arrivals = [a for a in await stub_arrivals(stub_url) if a[1] in ids]
    return len({a[1] for a in arrivals}), max((a[2] for a in arrivals), default=float("nan"))


async def _batch(conn: asyncpg.Connection, size: int) -> None:
    await conn.execute(f"ALTER SYSTEM SET pg_net.batch_size = {int(size)}")
    await conn.execute("SELECT pg_reload_conf()")
    await asyncio.sleep(2.0)  # the worker reads its configuration between iterations


async def throughput(conn: asyncpg.Connection, stub_url: str, n: int, batch: int) -> dict[str, float]:
    """One sweep posts n due rows through pg_net in one transaction; requests/s from its commit to the last."""
    await _batch(conn, batch)
    await conn.execute("TRUNCATE bench_due")
    ids = {r["id"] for r in await conn.fetch(
        "INSERT INTO bench_due SELECT gen_random_uuid()::text FROM generate_series(1, $1) RETURNING id", n)}
    await stub_reset(stub_url)
    await conn.execute(SWEEP, f"{stub_url}/pg-net", BODY)
    committed = time.time()
    arrived, last = await _arrived(stub_url, ids, settle_s=20.0, within_s=600.0)
    failed = await conn.fetchval("SELECT count(*) FROM net._http_response WHERE error_msg IS NOT NULL")
    errors = await conn.fetch("SELECT error_msg, count(*) FROM net._http_response WHERE error_msg IS NOT NULL "
                              "GROUP BY 1 ORDER BY 2 DESC LIMIT 3")
    await conn.execute("TRUNCATE net._http_response")
    return {"per_s": arrived / (last - committed), "arrived": arrived, "lost": n - arrived, "failed": failed,
            "seconds": last - committed, "batch": batch, "n": n,
            "errors": [f"{r['error_msg']}: {r['count']}" for r in errors]}


async def isolated(conn: asyncpg.Connection, stub_url: str, n: int, apart_s: float) -> list[float]:
    """Lag of single requests: net.http_post committed -> request at the stub, apart_s apart.

    pg_net's worker is woken at commit when it waits for work; after a batch it sleeps a second, and a commit
    during that second wakes it only if nothing has woken it since it last went idle: requests that trickle
    in faster than one a second mostly wait for the end of that second.
    """
    await _batch(conn, 200)
    await stub_reset(stub_url)
    committed: dict[str, float] = {}
    for _ in range(n):
        rid = uuid.uuid4().hex
        await conn.execute("SELECT net.http_post(url := $1, body := $2::jsonb)", f"{stub_url}/pg-net",
                           f'{{"retryHistoryId": "{rid}"}}')
        committed[rid] = time.time()
        await asyncio.sleep(apart_s)
    await _arrived(stub_url, set(committed), settle_s=5.0, within_s=60.0)
    return [t - committed[rid] for _k, rid, t in await stub_arrivals(stub_url) if rid in committed]


async def run(admin_url: str, quick: bool) -> Result:
    result = Result("pgnet")
    reason = cluster.why_not(libraries=("pg_net",))
    if reason is not None:
        result.rows.append(Row("pg_net peer", "skipped", reason))
        result.data = {"skipped": reason}
        return result
    n_default = 2_000 if quick else 10_000
    n, samples = 10_000, 20 if quick else 60
    with cluster.temp_cluster({"shared_preload_libraries": "pg_net"}) as (url, _tmp):
        async with stub_process() as stub_url:
            conn = await asyncpg.connect(url)
            await conn.execute("CREATE EXTENSION pg_net")
            await conn.execute("CREATE TABLE bench_due (id text PRIMARY KEY)")
            version = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'pg_net'")
            default = await throughput(conn, stub_url, n_default, 200)
            tuned = await throughput(conn, stub_url, n, 2000)
            lags = await isolated(conn, stub_url, samples // 2, 1.6)
            trickle = await isolated(conn, stub_url, samples, 0.1)
            await conn.close()
            async with fresh_db(url) as db_url:
                daemon = await recover(db_url, stub_url, n, 1)
                db = await asyncpg.connect(db_url)
                async with daemon_process(db_url, stub_url, PROCESSOR_TICK="60"):
                    notify, _from_call = await notify_path(db, stub_url, samples)
                await db.close()
    where = f"temporary PG15 cluster, pg_net {version}"
    for r in (default, tuned):
        result.rows.append(Row(
            f"pg_net sweep, {r['n']:,} requests, batch_size {r['batch']}{' (default)' if r['batch'] == 200 else ''}",
            f"{r['per_s']:,.0f}/s, {r['lost']:,.0f} lost",
            f"daemon, same cluster, {n:,} rows: {daemon['per_s']:,.0f}/s, {n - daemon['delivered']:,} lost ({where})"))
    result.rows.append(Row(f"daemon recovery of {n:,} due rows, same cluster", f"{daemon['per_s']:,.0f}/s",
                           f"pg_net batch_size 2000: {tuned['per_s']:,.0f}/s", ">= tuned pg_net",
                           daemon["per_s"] >= tuned["per_s"]))
    result.rows.append(Row("single request, commit -> request at the stub (daemon: NOTIFY path, 20 ms apart)",
                           f"daemon p50 {ms(pct(notify, 50))}, p99 {ms(pct(notify, 99))}",
                           f"pg_net, 1.6 s apart: p50 {ms(pct(lags, 50))}, max {ms(max(lags, default=float('nan')))} "
                           f"({len(lags)} of {samples // 2}); 0.1 s apart: p50 {ms(pct(trickle, 50))}, "
                           f"p99 {ms(pct(trickle, 99))} ({len(trickle)} of {samples})"))
    result.data = {"pg_net_version": version, "pg_net_default": default, "pg_net_tuned": tuned,
                   "pg_net_isolated_s": lags, "pg_net_trickle_s": trickle,
                   "daemon_recovery": daemon, "daemon_notify_s": notify}
    return result

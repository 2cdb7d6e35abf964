"""Mass recovery: N rows due at once, delivered to a 202 stub; deliveries/s beside three bare clients
(httpx default transport, httpx with the httpx-aiohttp transport, raw aiohttp; each in a process of its own)
posting to the same stub, and with 1, 2 and 3 daemons on the same database. CPU seconds per delivery of the
daemon processes and of their PostgreSQL backends, beside the bare clients' CPU seconds per request.

The rows fall due by time passing, as in an outage: their deadline is moved to two seconds ahead while the
daemon runs (its notifications arrive then), and the clock starts when that moment comes. (Moving every
deadline to "now" instead sent 10,000 notifications inside the measured window, which no outage does.)
The bare httpx + httpx-aiohttp client and one daemon run in alternating pairs (3 quick, 5 full) and the
goal is judged on the median of the pairs' ratios: on a shared machine the speed drifts by a third within a
minute, and a single bare run followed by a single daemon run measured that drift as much as the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from typing import Any

import asyncpg

from bench.bare_client import BODY, IN_FLIGHT, NAMES
from bench.common import (
    ROOT,
    Result,
    Row,
    cpu_seconds,
    daemon_process,
    fresh_db,
    machine_busy,
    stub_arrivals,
    stub_process,
    stub_reset,
)


async def bare_client(name: str, url: str, n: int) -> dict[str, float]:
    """python -m bench.bare_client in its own process: {"per_s", "cpu_s", "n"}."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.bare_client", name, url, str(n),
                                                cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    data: dict[str, float] = json.loads(out)
    return data


async def _backends(conn: asyncpg.Connection) -> list[int]:
    return [r["pid"] for r in await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]


async def recover(db_url: str, stub_url: str, n: int, daemons: int) -> dict[str, Any]:
    """Deliveries/s from the moment n rows become due to the last request at the stub, and CPU seconds."""
    conn = await asyncpg.connect(db_url)
    await conn.execute("TRUNCATE generation_history")
    # n generating rows, stale but not yet due (their deadline is in an hour)
    await conn.execute(
        """INSERT INTO generation_history (user_id, status, request, status_changed_at, deadline_at)
           SELECT gen_random_uuid(), 'generating', $2::jsonb, now() - interval '1 hour', now() + interval '1 hour'
           FROM generate_series(1, $1)""", n, BODY)
    await conn.execute("VACUUM ANALYZE generation_history")
    await stub_reset(stub_url)
    async with contextlib.AsyncExitStack() as stack:
        procs = [await stack.enter_async_context(daemon_process(
            db_url, stub_url, PROCESSOR_MAX_IN_FLIGHT=str(IN_FLIGHT), PROCESSOR_GENERATOR_IN_FLIGHT=str(IN_FLIGHT),
            PROCESSOR_BATCH_SIZE="100", PROCESSOR_TICK="60")) for _ in range(daemons)]
        await asyncio.sleep(0.5)
        due_at = await conn.fetchval(
            f"UPDATE generation_history SET deadline_at = statement_timestamp() + interval '{LEAD_S} s' "
            f"RETURNING extract(epoch FROM statement_timestamp() + interval '{LEAD_S} s')::float8")
        await asyncio.sleep(max(0.0, due_at - time.time() - 0.05))  # the notifications are handled by now
        backends = await _backends(conn)
        cpu0 = {pid: cpu_seconds(pid) for pid in [p.pid for p in procs] + backends}
        busy0, total0 = machine_busy()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            count = await conn.fetchval("SELECT count(*) FROM generation_history WHERE retry_count >= 1")
            if count >= n:
                break
        busy1, total1 = machine_busy()
        backends = await _backends(conn)  # the pools may have opened more connections meanwhile
        daemon_cpu = sum(cpu_seconds(p.pid) - cpu0[p.pid] for p in procs)
        pg_cpu = sum(cpu_seconds(pid) - cpu0.get(pid, 0.0) for pid in backends)
        arrivals = await stub_arrivals(stub_url)
    await conn.close()
    last = max(t for _k, _r, t in arrivals)
    delivered = len({k for k, _r, _t in arrivals})
    wall = last - due_at
    return {"per_s": delivered / wall, "delivered": delivered, "seconds": wall, "daemon_cpu_s": daemon_cpu,
            "pg_cpu_s": pg_cpu, "daemons": daemons,
            "machine_cores_busy": (busy1 - busy0) / (total1 - total0) * (os.cpu_count() or 1)}


LEAD_S = 2


def _us(cpu_s: float, count: float) -> str:
    return f"{cpu_s / count * 1e6:,.0f} µs"


async def run(admin_url: str, quick: bool) -> Result:
    sizes = [10_000] if quick else [10_000, 100_000]
    pairs = 3 if quick else 5
    result = Result("recovery")
    async with fresh_db(admin_url) as db_url, stub_process() as stub_url:
        bare = {name: await bare_client(name, stub_url, 10_000) for name in NAMES if name != HX}
        paired = [(await bare_client(HX, stub_url, 10_000), await recover(db_url, stub_url, 10_000, 1))
                  for _ in range(pairs)]
        one = {n: await recover(db_url, stub_url, n, 1) for n in sizes if n != 10_000}
        curve = {d: await recover(db_url, stub_url, 10_000, d) for d in (2, 3)}
    ratios = sorted(r["per_s"] / b["per_s"] for b, r in paired)
    share = statistics.median(ratios)
    hx = _median_run([b for b, _ in paired])
    r1 = _median_run([r for _, r in paired])
    bare[HX] = hx
    one = {10_000: r1} | one
    raw = bare["raw aiohttp"]
    floor = ", ".join(f"{k}: {v['per_s']:,.0f}/s" for k, v in bare.items())
    result.rows.append(Row(
        f"recovery of 10,000 due rows, 1 daemon (median of {pairs} runs)", f"{r1['per_s']:,.0f}/s",
        f"{floor} (median of {pairs}, each run just before a daemon run)"))
    result.rows.append(Row(
        "  share of the bare httpx + httpx-aiohttp client, pair by pair", f"{share:.0%} (median)",
        "pairs: " + ", ".join(f"{x:.0%}" for x in ratios) + f"; raw aiohttp: {r1['per_s'] / raw['per_s']:.0%}",
        ">= 60 %", share >= 0.6))
    for n, r in one.items():
        if n == 10_000:
            continue
        rate = r["per_s"]
        result.rows.append(Row(f"recovery of {n:,} due rows, 1 daemon", f"{rate:,.0f}/s",
                               f"{rate / hx['per_s']:.0%} of the median bare httpx + httpx-aiohttp run",
                               ">= 60 %", rate >= 0.6 * hx["per_s"]))
    result.rows.append(Row("CPU per delivery, 1 daemon process (10,000)", _us(r1["daemon_cpu_s"], r1["delivered"]),
                           f"bare httpx + httpx-aiohttp: {_us(hx['cpu_s'], hx['n'])}/request; raw aiohttp: "
                           f"{_us(raw['cpu_s'], raw['n'])}/request"))
    result.rows.append(Row("CPU per delivery, its PostgreSQL backends", _us(r1["pg_cpu_s"], r1["delivered"]),
                           "claim + outcome record, server side"))
    curve = {1: r1} | curve
    for d, r in curve.items():
        cores = (r["daemon_cpu_s"] + r["pg_cpu_s"]) / r["seconds"]
        result.rows.append(Row(
            f"curve: 10,000 due rows, {d} daemon{'s' if d > 1 else ''}", f"{r['per_s']:,.0f}/s",
            f"daemons {_us(r['daemon_cpu_s'], r['delivered'])}/delivery; cores busy: daemons + backends "
            f"{cores:.2f}, whole machine {r['machine_cores_busy']:.2f} of {os.cpu_count()}",
            "scales until the cores are spent"))
    result.data = {"bare_clients": bare, "pairs": [{"bare": b, "daemon": r} for b, r in paired],
                   "share_median": share, "one_daemon": one, "daemons_curve": curve, "in_flight": IN_FLIGHT}
    return result


HX = "httpx + httpx-aiohttp"


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rate (its CPU figures belong to it)."""
    return sorted(runs, key=lambda r: r["per_s"])[len(runs) // 2]

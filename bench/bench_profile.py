"""Where a delivery's CPU goes: the daemon runs under py-spy (sampling, --nonblocking) while it recovers N due
rows; samples are grouped by what they were doing: claim, token minting, HTTP, logging, recording, metrics,
the database driver's protocol (claim or record, not attributable), start-up and the rest (event loop).

py-spy is not a project dependency: `make bench-profile` installs it into .venv; without it this is skipped.
Writes bench/results/profile.md (the table for docs/BENCHMARKS.md); the raw stacks stay in a temporary file
(its path is in profile.json) for a flame graph.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import asyncpg

from bench.bare_client import BODY, IN_FLIGHT
from bench.common import ROOT, Result, Row, daemon_process, fresh_db, stub_arrivals, stub_process, stub_reset

RATE_HZ = 250
# (category, substrings of a frame "function (file:line)"); a sample belongs to the first category that one
# of its frames matches, reading from the innermost frame outwards
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("start-up", ("importlib._bootstrap", "(processor/migrate.py", "check_schema")),
    ("token minting", ("processor/credentials.py", "/jwt/", "cryptography")),
    ("logging", ("structlog", "processor/logs.py", "processor/log_lines.py", "/logging/")),
    ("metrics", ("prometheus_client", "processor/metrics.py")),
    ("recording", ("processor/recorder.py", "Scheduler._record (")),
    ("claim", ("Scheduler.run_once (", "Scheduler._start (")),
    ("HTTP", ("httpx", "aiohttp", "h11", "yarl", "multidict", "processor/delivery.py", "Scheduler._send (")),
)
DRIVER = "asyncpg"


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def classify(frames: list[str]) -> str:
    for frame in reversed(frames):
        for category, needles in RULES:
            if any(needle in frame for needle in needles):
                return category
    if any(DRIVER in frame for frame in frames):
        return "database driver (claim or record)"
    return "event loop, scheduling, other"


def parse(text: str) -> tuple[Counter[str], Counter[tuple[str, str]], int]:
    """(samples by category, samples by (leaf function, category), total) from py-spy's raw output."""
    categories: Counter[str] = Counter()
    leaves: Counter[tuple[str, str]] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        category = classify(frames)
        categories[category] += int(count)
        leaves[(_short(frames[-1]), category)] += int(count)
        total += int(count)
    return categories, leaves, total


def _short(frame: str) -> str:
    """'send (httpx/_client.py:1629)' -> 'send (httpx/_client.py)', site-packages prefixes cut."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3."):
        if marker in where:
            where = where.split(marker, 1)[1]
            where = where.split("/", 1)[1] if marker.startswith("/lib") and "/" in where else where
    return f"{name} ({where})"


def _child(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return int(children[0]) if children else None
    return None


async def run(admin_url: str, quick: bool) -> Result:
    result = Result("profile")
    spy = py_spy()
    if spy is None:
        result.rows.append(Row("profile", "skipped", "py-spy is not installed (make bench-profile installs it)"))
        return result
    n = 10_000 if quick else 30_000
    out = Path(tempfile.mkdtemp(prefix="genretry-profile-")) / "stacks.txt"
    async with fresh_db(admin_url) as db_url, stub_process() as stub_url:
        conn = await asyncpg.connect(db_url)
        await conn.execute(
            """INSERT INTO generation_history (user_id, status, request, status_changed_at, deadline_at)
               SELECT gen_random_uuid(), 'generating', $2::jsonb, now() - interval '1 hour', now() + interval '1 hour'
               FROM generate_series(1, $1)""", n, BODY)
        await conn.execute("VACUUM ANALYZE generation_history")
        await stub_reset(stub_url)
        prefix = (spy, "record", "--nonblocking", "-r", str(RATE_HZ), "-f", "raw", "-o", str(out), "--")
        async with daemon_process(db_url, stub_url, prefix=prefix, PROCESSOR_MAX_IN_FLIGHT=str(IN_FLIGHT),
                                  PROCESSOR_GENERATOR_IN_FLIGHT=str(IN_FLIGHT), PROCESSOR_BATCH_SIZE="100",
                                  PROCESSOR_TICK="60") as proc:
            await asyncio.sleep(0.5)
            await conn.execute("UPDATE generation_history SET deadline_at = clock_timestamp()")
            started = time.monotonic()
            while time.monotonic() - started < 600:
                await asyncio.sleep(0.5)
                if await conn.fetchval("SELECT count(*) FROM generation_history WHERE retry_count >= 1") >= n:
                    break
            delivered = len({a[0] for a in await stub_arrivals(stub_url)})
            daemon = _child(proc.pid)
            if daemon is not None:
                with contextlib.suppress(ProcessLookupError):
                    import os

                    os.kill(daemon, signal.SIGTERM)  # py-spy writes its file when its target exits
            await asyncio.wait_for(proc.wait(), 60)
        await conn.close()
    text = out.read_text() if out.exists() else ""  # kept for a flame graph (flamegraph.pl takes it as is)
    categories, leaves, total = parse(text)
    per_delivery = total - categories["start-up"]
    for category, count in categories.most_common():
        share = count / total
        cost = "" if category == "start-up" else f"{count / RATE_HZ / delivered * 1e6:,.0f} µs/delivery"
        result.rows.append(Row(f"profile: {category}", f"{share:.0%} of samples", cost))
    result.rows.append(Row(f"profile: all but start-up, {delivered:,} deliveries",
                           f"{per_delivery / RATE_HZ / delivered * 1e6:,.0f} µs CPU/delivery",
                           f"{total:,} samples at {RATE_HZ} Hz"))
    top = leaves.most_common(25)
    lines = ["| function (self time) | category | share of samples |", "| --- | --- | --- |"]
    lines += [f"| `{fn}` | {cat} | {count / total:.1%} |" for (fn, cat), count in top]
    lines += ["", "| category | share of samples | CPU per delivery |", "| --- | --- | --- |"]
    lines += [f"| {cat} | {count / total:.0%} | "
              f"{'' if cat == 'start-up' else f'{count / RATE_HZ / delivered * 1e6:,.0f} µs'} |"
              for cat, count in categories.most_common()]
    (ROOT / "bench" / "results" / "profile.md").write_text("\n".join(lines) + "\n")
    result.data = {"delivered": delivered, "samples": total, "rate_hz": RATE_HZ, "categories": dict(categories),
                   "top_self": [[fn, cat, count] for (fn, cat), count in top], "stacks": str(out)}
    return result

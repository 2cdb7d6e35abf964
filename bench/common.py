"""What every benchmark shares: a PostgreSQL server, fresh migrated databases, the stub, the daemon."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from processor import migrate
from tests.support.pg import server, with_database

ROOT = Path(__file__).resolve().parent.parent
JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"


@dataclass
class Row:
    """One line of the results table: a figure beside its baseline or floor, and the goal."""

    name: str
    value: str
    baseline: str = ""
    goal: str = ""
    met: bool | None = None


@dataclass
class Result:
    name: str
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def ms(value: float) -> str:
    return f"{value * 1000:.2f} ms"


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    mem = ""
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": mem, "python": platform.python_version(),
            "platform": platform.platform()}


@contextlib.contextmanager
def pg_server() -> Iterator[str]:
    """BENCH_DATABASE_URL / TEST_DATABASE_URL, else the embedded PostgreSQL."""
    url = os.environ.get("BENCH_DATABASE_URL", "").strip()
    if url:
        yield url
        return
    with server() as (admin_url, _source):
        yield admin_url


@contextlib.asynccontextmanager
async def fresh_db(admin_url: str) -> AsyncIterator[str]:
    """A new, migrated database for one benchmark; dropped afterwards."""
    name = f"genretry_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = with_database(admin_url, name)
    conn = await asyncpg.connect(url)
    await migrate.migrate(conn)
    await conn.close()
    try:
        yield url
    finally:
        admin = await asyncpg.connect(admin_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@contextlib.asynccontextmanager
async def stub_process() -> AsyncIterator[str]:
    """The 202 stub in a process of its own; yields its base URL."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.stub_server", str(port), cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    await asyncio.wait_for(proc.stdout.readline(), 15)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        await proc.wait()


async def stub_arrivals(url: str) -> list[tuple[str, str, float]]:
    async with httpx.AsyncClient(timeout=60) as client:
        data = (await client.get(f"{url}/_stats")).json()
    return [(str(a[0]), str(a[1]), float(a[2])) for a in data["arrivals"]]


async def stub_reset(url: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        await client.post(f"{url}/_reset")


def daemon_env(db_url: str, functions_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROCESSOR_", "SUPABASE_"))}
    env.update({"DATABASE_URL": db_url, "FUNCTIONS_URL": functions_url, "PROCESSOR_JWT_SECRET": JWT_SECRET,
                "PROCESSOR_LOG_FORMAT": "json", "PROCESSOR_LOG_LEVEL": "warning", **extra})
    return env


@contextlib.asynccontextmanager
async def daemon_process(db_url: str, functions_url: str, *, prefix: tuple[str, ...] = (),
                         **extra: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """`processor run` in its own process, ready (its first sweep done) when yielded.

    prefix: argv to run it under (a profiler); the process yielded is then the prefix's.
    """
    env = daemon_env(db_url, functions_url, **{"PROCESSOR_LOG_LEVEL": "info", **extra})
    proc = await asyncio.create_subprocess_exec(*prefix, sys.executable, "-m", "processor", "run", env=env, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    # BENCH_DAEMON_LOG=path keeps the daemon's log lines, for looking into a slow sample
    keep = open(os.environ["BENCH_DAEMON_LOG"], "ab") if os.environ.get("BENCH_DAEMON_LOG") else None  # noqa: ASYNC230, SIM115
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if b'"daemon_ready"' in line or not line:
            break
    drain = asyncio.create_task(_discard(proc.stdout, keep))
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
        drain.cancel()


async def _discard(stream: asyncio.StreamReader, keep: Any = None) -> None:
    while line := await stream.readline():
        if keep is not None:
            keep.write(line)
            keep.flush()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (/proc/<pid>/stat), nan when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores (/proc/stat): differences of two readings
    give how many cores were busy, whoever used them."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError):
        return float("nan"), float("nan")
    idle = fields[3] + fields[4]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / tick, sum(fields) / tick


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return ""


def summary(values: list[float]) -> str:
    return f"p50 {ms(pct(values, 50))}, p99 {ms(pct(values, 99))}" if values else "no samples"


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                              check=False).stdout.strip()
    except OSError:
        return ""

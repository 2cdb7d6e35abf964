"""64 hostile answers in flight at once (512 MB bodies, endless chunks, gzip bombs): the daemon's memory stays
under 80 MB and every row's outcome is recorded. Issue 10, class 2, measured as an outcome: the peak resident
set (VmHWM) of the daemon process."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import asyncpg
import pytest

from tests.support import cli
from tests.support.hostile_peers import RawPeer, endless, fixed, gzip_bomb, raw_peer

pytestmark = [pytest.mark.reliability, pytest.mark.hostile]
ROWS = 64
MB = 2**20


def vm_hwm_mb(pid: int) -> float:
    """Peak resident set size of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def all_at_once(n: int, timeout_s: float = 30.0) -> tuple[asyncio.Event, object]:
    """Hold every answer until n requests are in, so that n hostile answers are in flight together."""
    everyone = asyncio.Event()
    kinds = [
        endless(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (512 * MB), b"x" * 65536, chunked=False),
        endless(b"HTTP/1.1 503 X\r\nTransfer-Encoding: chunked\r\n\r\n", b"y" * 16384),
        fixed(gzip_bomb(500, 256)),
    ]

    async def answer(peer: RawPeer, writer: asyncio.StreamWriter) -> None:
        turn = peer.requests - 1  # counted before its answer
        if peer.requests >= n:
            everyone.set()
        await asyncio.wait_for(everyone.wait(), timeout_s)
        await kinds[turn % len(kinds)](peer, writer)

    return everyone, answer


async def test_64_hostile_answers_in_flight_stay_under_80_mb(db_url: str, conn: asyncpg.Connection,
                                                              tmp_path: Path) -> None:
    await conn.execute(
        """INSERT INTO generation_history (user_id, status, status_changed_at, deadline_at)
           SELECT gen_random_uuid(), 'generating', now() - interval '1 hour', now() - interval '1 second'
           FROM generate_series(1, $1)""", ROWS)
    everyone, answer = all_at_once(ROWS)
    async with raw_peer(answer) as peer:  # type: ignore[arg-type]
        env = cli.daemon_env_for(db_url, peer.url, PROCESSOR_MAX_IN_FLIGHT=str(ROWS),
                                 PROCESSOR_GENERATOR_IN_FLIGHT=str(ROWS), PROCESSOR_RESPONSE_TIMEOUT="10s",
                                 PROCESSOR_TICK="1s")
        proc = await cli.start("run", env=env, log=tmp_path / "daemon.log")
        try:
            deadline = time.monotonic() + 60
            while not everyone.is_set():
                assert time.monotonic() < deadline, f"only {peer.requests} of {ROWS} requests arrived"
                await asyncio.sleep(0.05)
            before = vm_hwm_mb(proc.pid)
            while await conn.fetchval("SELECT count(*) FROM generation_history "
                                      "WHERE lease_id IS NULL AND last_outcome IS NOT NULL") < ROWS:
                assert time.monotonic() < deadline, "not every outcome was recorded"
                await asyncio.sleep(0.1)
            peak = vm_hwm_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 30)
    counted = await conn.fetch("SELECT last_outcome, count(*) FROM generation_history GROUP BY 1")
    outcomes = {r[0]: r[1] for r in counted}
    print(f"\nhostile answers: VmHWM {before:.1f} MB with {ROWS} requests in, {peak:.1f} MB after "
          f"{ROWS} hostile answers; outcomes {outcomes}")
    assert code == 0
    assert outcomes == {"200": 22, "503": 21, "500": 21}
    assert await conn.fetchval("SELECT sum(retry_count) FROM generation_history") == 22 + 21  # 200s and 500s
    assert peak < 80, f"the daemon's resident set peaked at {peak:.1f} MB"

"""Metrics and health endpoints; systemd: the unit verifies, and READY/WATCHDOG/STOPPING arrive."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx

from tests.support import cli
from tests.support.factories import make_generation
from tests.support.http import StartDaemon, Stub, free_port, settings_for

ROOT = Path(__file__).resolve().parents[2]

async def test_metrics_and_healthz(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                   start_daemon: StartDaemon) -> None:
    port = free_port()
    await make_generation(conn, due=True)
    await make_generation(conn, due=True, retry_count=2)
    running = await start_daemon(settings_for(db_url, stub.url, PROCESSOR_METRICS_ADDR=f"127.0.0.1:{port}"))
    await stub.wait_for(1)
    await conn.execute("UPDATE genretry.policy SET enabled = false")  # keep the next row overdue for the gauge
    await make_generation(conn, age=timedelta(minutes=9))  # overdue, not claimed
    async with httpx.AsyncClient() as client:
        health = await client.get(f"http://127.0.0.1:{port}/healthz")
        assert health.status_code == 200 and health.json()["healthy"] is True
        await asyncio.sleep(0.2)
        page = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        for line in ("genretry_claims_total 1.0", 'genretry_deliveries_total{generator="generate-website",'
                     'outcome="accepted"} 1.0', "genretry_exhaustions_total 1.0", "genretry_due_rows 1.0",
                     "genretry_paused_generators 0.0"):
            assert line in page, line
        assert "genretry_detection_lag_seconds_bucket" in page
        assert 'genretry_delivery_seconds_count{generator="generate-website"} 1.0' in page
        # what an operator alerts on: process collectors, build info, failure counters, no _created twins
        for name in ("process_resident_memory_bytes", "process_start_time_seconds", "python_gc_collections_total",
                     "genretry_build_info{", "genretry_database_errors_total 0.0",
                     "genretry_record_failures_total 0.0", "genretry_listener_reconnects_total 0.0",
                     "genretry_bad_notifications_total 0.0", "genretry_events_pruned_total 0.0"):
            assert name in page, name
        assert "_created" not in page
        overdue = next(float(x.split()[1]) for x in page.splitlines()
                       if x.startswith("genretry_oldest_overdue_seconds "))
        assert overdue > 60
        running.daemon.healthy = False  # what the loop sets when the database stops answering
        assert (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 503


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: .ci/run installs Debian's systemd package"
    unit = (ROOT / "deploy" / "processor.service").read_text()
    unit = unit.replace("/opt/generation-processor/venv/bin/processor", str(ROOT / ".venv" / "bin" / "processor"))
    unit = unit.replace("/etc/generation-processor/processor.env", str(tmp_path / "processor.env"))
    (tmp_path / "processor.env").write_text((ROOT / "deploy" / "processor.env.example").read_text())
    (tmp_path / "generation-processor.service").write_text(unit)
    ok = subprocess.run([analyze, "verify", str(tmp_path / "generation-processor.service")],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stderr.strip() == "", ok.stderr  # not even a warning
    for directive in ("Type=notify", "WatchdogSec=", "RestartPreventExitStatus=2", "LoadCredential=",
                      "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "DynamicUser=yes",
                      "Environment=DATABASE_URL_FILE=%d/database_url"):
        assert directive in unit, directive
    env_example = (ROOT / "deploy" / "processor.env.example").read_text()
    assert not any(line.startswith("DATABASE_URL=") for line in env_example.splitlines())  # a secret: a file
    timeout_stop = int(next(x for x in unit.splitlines() if x.startswith("TimeoutStopSec=")).split("=")[1])
    assert timeout_stop > 20 + 30  # grace + a response time-out
    # the check can fail: a misspelt directive is reported
    (tmp_path / "broken.service").write_text(unit.replace("Restart=on-failure", "Restart=sometimes"))
    bad = subprocess.run([analyze, "verify", str(tmp_path / "broken.service")], capture_output=True, text=True)
    assert "sometimes" in bad.stderr


async def test_ready_watchdog_and_stopping_reach_notify_socket(db_url: str, stub: Stub, tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    env = cli.daemon_env_for(db_url, stub.url, NOTIFY_SOCKET=path, WATCHDOG_USEC="1000000")
    proc = await cli.start("run", env=env)
    received: list[str] = []
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(20):
            while "WATCHDOG=1" not in received:
                received.append((await loop.sock_recv(sock, 256)).decode())
        assert received[0].splitlines()[0] == "READY=1" and received[0].splitlines()[1].startswith("STATUS=")
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            while not any(m.startswith("STOPPING=1") for m in received):
                received.append((await loop.sock_recv(sock, 256)).decode())
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
        sock.close()

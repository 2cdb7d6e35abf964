"""Run the processor CLI as a subprocess, as an operator or systemd would."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.keys import processor_env
from tests.support.pg import as_daemon


@dataclass
class Result:
    code: int
    out: str
    err: str


def env_for(db_url: str, functions_url: str = "http://127.0.0.1:9", **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROCESSOR_", "SUPABASE_"))}
    env.update({"DATABASE_URL": db_url, "FUNCTIONS_URL": functions_url, **processor_env(),
                "PROCESSOR_LOG_FORMAT": "json", **extra})
    return env


def daemon_env_for(db_url: str, functions_url: str = "http://127.0.0.1:9", **extra: str) -> dict[str, str]:
    """env_for, connecting as a role that holds only genretry_processor: how the daemon runs in production."""
    return env_for(as_daemon(db_url), functions_url, **extra)


async def start(*args: str, env: dict[str, str], log: Path | None = None) -> asyncio.subprocess.Process:
    """Start the CLI. With `log`, output goes to that file (a pipe nobody reads would fill and block it)."""
    if log is None:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "processor", *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    with log.open("ab") as sink:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "processor", *args, env=env, stdout=sink, stderr=asyncio.subprocess.STDOUT)


async def run(*args: str, env: dict[str, str], timeout_s: float = 60) -> Result:
    proc = await start(*args, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def wait_for_line(log: Path, text: str, within_s: float = 30) -> None:
    """Wait until a subprocess has written `text` to its log file."""
    deadline = time.monotonic() + within_s
    while text not in log.read_text():  # noqa: ASYNC240 (a small local file)
        assert time.monotonic() < deadline, f"{text} not logged within {within_s} s"
        await asyncio.sleep(0.1)  # polling a file: there is no event to wait on

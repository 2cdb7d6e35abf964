"""Hostile configuration through the CLI (issue 10, classes 7 and 13): one line naming the setting, exit 2,
before anything connects; `processor check` never prints a database password, whatever it holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.support import cli

pytestmark = pytest.mark.hostile


@pytest.fixture
async def listener() -> AsyncIterator[tuple[int, list[int]]]:
    """A loopback port that counts the connections it gets (and closes them): the 'database'."""
    seen: list[int] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(1)
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], seen
    server.close()
    await server.wait_closed()


def config_file(tmp_path: Path, content: bytes) -> str:
    path = tmp_path / "processor.toml"
    path.write_bytes(content)
    return str(path)


CASES: dict[str, Callable[[Path], dict[str, str]]] = {
    "SUPABASE_JWKS": lambda _p: {"SUPABASE_JWKS": "[" * 100_000},
    "SUPABASE_SECRET_KEYS": lambda _p: {"SUPABASE_SECRET_KEYS": "{" + '"k":{' * 20_000},
    "PROCESSOR_CONFIG": lambda p: {"PROCESSOR_CONFIG": config_file(p, b'functions_url = "http://caf\xe9.example"\n')},
    "PROCESSOR_METRICS_ADDR": lambda _p: {"PROCESSOR_METRICS_ADDR": "no-such-host.invalid:9100"},
    "PROCESSOR_ROUTES": lambda _p: {"PROCESSOR_ROUTES": '{"../../auth/v1/admin/users": "http://127.0.0.1:9/x"}'},
}


@pytest.mark.parametrize("command", ["run", "check", "status"])
@pytest.mark.parametrize("setting", list(CASES))
async def test_bad_settings_are_one_line_and_exit_2_before_connecting(
        setting: str, command: str, tmp_path: Path, listener: tuple[int, list[int]]) -> None:
    port, connections = listener
    env = cli.env_for(f"postgresql://app@127.0.0.1:{port}/app", **CASES[setting](tmp_path))
    result = await cli.run(command, env=env)
    assert result.code == 2, result.err
    assert result.err.splitlines() == [result.err.strip()], result.err  # one line
    assert result.err.startswith(f"processor: config: {setting}: ")
    assert "Traceback" not in result.err + result.out
    assert connections == []


async def test_metrics_address_from_the_flag_is_checked_too(listener: tuple[int, list[int]]) -> None:
    port, connections = listener
    env = cli.env_for(f"postgresql://app@127.0.0.1:{port}/app")
    result = await cli.run("run", "--metrics-addr", "no-such-host.invalid:9100", env=env)
    assert (result.code, result.err.count("\n"), connections) == (2, 1, [])
    assert result.err.startswith("processor: config: PROCESSOR_METRICS_ADDR: ")


@pytest.mark.parametrize("password", ["pa/ss#w0rd-Zq9", "1234/5678#90", "s3cr#t-Kq7v-X", "p@ss/w#rd?x-Y", "a:b/c#d@e"])
async def test_a_password_that_breaks_the_url_is_refused_unshown(password: str,
                                                                 listener: tuple[int, list[int]]) -> None:
    port, connections = listener
    for command in ("check", "run"):
        result = await cli.run(command, env=cli.env_for(f"postgresql://app:{password}@127.0.0.1:{port}/app"))
        assert result.code == 2, result.err
        assert result.err.startswith("processor: config: DATABASE_URL: cannot be parsed")
        assert not [password[i:i + 3] for i in range(len(password) - 2) if password[i:i + 3] in result.err]
        assert result.out == "" and connections == []


async def test_check_shows_a_percent_encoded_password_as_stars(listener: tuple[int, list[int]]) -> None:
    port, connections = listener
    password = "pa/ss#w0rd-Zq9"
    encoded = quote(password, safe="")
    result = await cli.run("check", env=cli.env_for(f"postgresql://app:{encoded}@127.0.0.1:{port}/app"))
    assert result.code == 1 and connections  # printed, then tried to connect (and failed)
    assert f"postgresql://app:***@127.0.0.1:{port}/app" in result.out
    shown = result.out + result.err
    assert password not in shown and encoded not in shown
    assert not [password[i:i + 7] for i in range(len(password) - 6) if password[i:i + 7] in shown]

"""Every code block of docs/generator-authority.md is a file the tests run, or a command run here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "generator-authority.md"
BLOCK = re.compile(r"(?:<!-- snippet: (?P<marker>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S)


def snippets() -> list[tuple[str, str, str]]:
    return [(m["marker"] or "", m["lang"], m["body"]) for m in BLOCK.finditer(GUIDE.read_text())]


def test_every_block_is_marked_and_files_match() -> None:
    found = snippets()
    assert len(found) >= 6
    for marker, lang, body in found:
        assert marker, f"a ```{lang} block without a snippet marker: {body[:60]!r}"
        if marker.startswith("file "):
            assert body == (ROOT / marker.removeprefix("file ")).read_text(), marker


def test_toml_blocks_turn_verify_jwt_off() -> None:
    for marker, _lang, body in snippets():
        if marker == "toml":
            functions = tomllib.loads(body)["functions"]
            assert functions and all(f["verify_jwt"] is False for f in functions.values())


def test_shell_blocks_run(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    ran = 0
    for marker, _lang, body in snippets():
        if marker == "sh":
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            ran += 1
    assert ran == 2
    assert '"kid"' in (tmp_path / "processor-jwks-next.json").read_text()


async def test_sql_blocks_run(conn: asyncpg.Connection) -> None:
    ran = 0
    for marker, _lang, body in snippets():
        if marker == "sql":
            transaction = conn.transaction()  # roles are cluster-wide: made and checked, then rolled back
            await transaction.start()
            try:
                await conn.execute(body)
                role = re.search(r"CREATE ROLE (\w+)", body)
                assert role is not None
                assert await conn.fetchval("SELECT pg_has_role($1, 'genretry_generator', 'MEMBER')", role[1])
                assert not await conn.fetchval(
                    "SELECT has_table_privilege($1, 'generation_history', 'UPDATE')", role[1])
            finally:
                await transaction.rollback()
            ran += 1
    assert ran == 1

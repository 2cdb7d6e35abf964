"""Command line: argparse sub-commands, each a thin layer; errors become one line and an exit code."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from processor import __version__
from processor.config import Settings
from processor.errors import EXIT_FAILURE, EXIT_USAGE, ConfigError, ProcessorError

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="processor", description="Rescue stuck generations and retry them with service authority."
    )
    parser.add_argument("--version", action="version", version=f"processor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("migrate", help="apply sql/ migrations (once each, under an advisory lock)")
    p.add_argument("--dry-run", action="store_true", help="list what would be applied, change nothing")
    p.set_defaults(handler=cmd_migrate)
    return parser


async def cmd_migrate(args: argparse.Namespace) -> int:
    from processor import db, migrate

    settings = Settings.from_env()
    conn = await db.connect(settings.database_url)
    try:
        report = await migrate.migrate(conn, dry_run=args.dry_run)
    finally:
        await conn.close()
    if args.dry_run:
        for name in report.pending:
            print(f"would apply {name}")
        if report.code_pending:
            print(f"would re-apply {len(migrate.code_files())} function/view files")
        if not report.pending and not report.code_pending:
            print(f"up to date (schema version {report.version})")
        return 0
    for name in report.applied:
        print(f"applied {name}")
    if report.code_applied:
        print(f"applied {len(migrate.code_files())} function/view files")
    print(f"schema version {report.version}" + ("" if report.applied or report.code_applied else ", up to date"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `processor` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Command = args.handler
    try:
        return asyncio.run(handler(args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"processor: config: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except ProcessorError as exc:
        print(f"processor: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_FAILURE

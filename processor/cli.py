"""Command line: argparse sub-commands, each a thin layer; errors become one line and an exit code."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NoReturn

from processor import __version__, cli_admin
from processor.config import Settings
from processor.errors import EXIT_FAILURE, EXIT_USAGE, ConfigError, ProcessorError, UsageError
from processor.output import printable

# optional dependencies (pyproject extras): the daemon never imports them
EXTRAS = {"uvicorn": "generator", "pgserver": "demo"}

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


class Parser(argparse.ArgumentParser):
    """argparse, with a bad argument reported in one line (naming the option) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {printable(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="processor", description="Rescue stuck generations and retry them with service authority."
    )
    parser.add_argument("--version", action="version", version=f"processor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("migrate", help="apply sql/ migrations (once each, under an advisory lock)")
    p.add_argument("--dry-run", action="store_true", help="list what would be applied, change nothing")
    p.add_argument("--sql", action="store_true",
                   help="print the SQL that would be applied (for your own migration tool), change nothing")
    p.add_argument("--all", action="store_true", help="with --sql: the whole schema, without connecting")
    p.set_defaults(handler=cmd_migrate)
    p = sub.add_parser("run", help="the daemon: rescue due generations as they become due")
    p.add_argument("--once", action="store_true", help="sweep once, wait for the deliveries, exit (for cron)")
    p.add_argument("--dry-run", action="store_true", help="log what one sweep would claim and send; change nothing")
    p.add_argument("--no-listen", action="store_true", help="no LISTEN (behind a transaction pooler): poll at the tick")
    p.add_argument("--log-format", choices=("auto", "json", "console"), default=None)
    p.add_argument("--metrics-addr", metavar="HOST:PORT", help="serve /metrics and /healthz (PROCESSOR_METRICS_ADDR)")
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("check", help="check configuration, database, schema, LISTEN and keys")
    p.add_argument("--probe-routes", action="store_true",
                   help="also POST an empty body without credentials to each generator (each logs a 401)")
    p.set_defaults(handler=cmd_check)

    cli_admin.add_commands(sub)
    p = sub.add_parser("keygen", help="make the processor's ES256 signing key; print the public JWKS for generators")
    p.add_argument("--out", required=True, help="where to write the private key (PEM, mode 0600; must not exist)")
    p.add_argument("--previous-jwks", metavar="FILE", help="the JWKS published so far: its first key stays in the set")
    p.set_defaults(handler=cmd_keygen)


    p = sub.add_parser("demo", help="the whole story on an embedded PostgreSQL, in under a minute")
    p.add_argument("--force", action="store_true", help="use DATABASE_URL even if it already has generations")
    p.add_argument("--log-format", choices=("auto", "json", "console"), default="console")
    p.set_defaults(handler=cmd_demo)

    p = sub.add_parser("serve-generator", help="run the reference generator (verifies requests, plays generations)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8787)
    p.add_argument("--work-seconds", type=float, default=2.0, help="how long each generation takes")
    p.add_argument("--fail-rate", type=_rate, default=0.0, help="share of requests answered 500, 0..1")
    p.add_argument("--hang-rate", type=_rate, default=0.0, help="share of accepted generations that never finish")
    p.add_argument("--log-format", choices=("auto", "json", "console"), default=None)
    p.set_defaults(handler=cmd_serve_generator)
    return parser


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


async def cmd_demo(args: argparse.Namespace) -> int:
    from processor import demo

    return await demo.run(force=args.force, log_format=args.log_format)


async def cmd_run(args: argparse.Namespace) -> int:
    from processor import logs
    from processor.daemon import Daemon

    env = dict(os.environ)
    if args.metrics_addr:
        env["PROCESSOR_METRICS_ADDR"] = args.metrics_addr
    settings = Settings.from_env(env, need=("database",) if args.dry_run else ("database", "dispatch"))
    logs.configure(args.log_format or settings.log_format, settings.log_level)
    daemon = Daemon(settings, listen=not args.no_listen)
    await daemon.run(once=args.once, dry_run=args.dry_run)
    return 0


async def cmd_check(args: argparse.Namespace) -> int:
    from processor.check import run_checks

    return await run_checks(Settings.from_env(need=("database", "dispatch")), probe_routes=args.probe_routes)


async def cmd_serve_generator(args: argparse.Namespace) -> int:
    from processor import db, logs, reference_generator

    settings = Settings.from_env(need=("database", "verify"))
    logs.configure(args.log_format or settings.log_format, settings.log_level)
    # a requested stop is a clean exit (0), whenever it comes: the handlers are in place before the port opens
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    pool = await db.create_pool(settings.database_url, min_size=1, max_size=8)
    try:
        served = await reference_generator.start(
            pool, settings.generators, reference_generator.keys_from(settings), host=args.host, port=args.port,
            behaviour=reference_generator.Behaviour(args.work_seconds, args.fail_rate, args.hang_rate))
        logs.get_logger().info("generator_listening", url=served.url, generators=list(settings.generators))
        stop = asyncio.create_task(stopping.wait())
        await asyncio.wait([served.task, stop], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        served.server.should_exit = True
        await served.task
    finally:
        await pool.close()
    return 0


async def cmd_keygen(args: argparse.Namespace) -> int:
    from processor import keygen_cli

    return keygen_cli.run(args.out, args.previous_jwks)


async def cmd_migrate(args: argparse.Namespace) -> int:
    from processor import db, migrate

    if args.all and not args.sql:
        raise UsageError("--all goes with --sql")
    if args.sql and args.all:
        print(migrate.script(migrate.migrations(), code=True))
        return 0
    settings = Settings.from_env()
    conn = await db.connect(settings.database_url)
    try:
        report = await migrate.migrate(conn, dry_run=args.dry_run or args.sql)
    finally:
        await conn.close()
    if args.sql:
        pending = [m for m in migrate.migrations() if m.name in report.pending]
        print(migrate.script(pending, code=report.code_pending))
        return 0
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
            print(f"processor: config: {printable(problem)}", file=sys.stderr)
        return EXIT_USAGE
    except ProcessorError as exc:
        print(f"processor: {printable(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        if exc.name not in EXTRAS:
            raise
        print(f"processor: {args.command} needs {exc.name}: pip install "
              f"'generation-processor[{EXTRAS[exc.name]}]'", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_FAILURE

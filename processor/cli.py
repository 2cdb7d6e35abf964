"""Command line: argparse sub-commands, each a thin layer; errors become one line and an exit code."""

from __future__ import annotations

import argparse
import asyncio
import os
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
    p = sub.add_parser("run", help="the daemon: rescue due generations as they become due")
    p.add_argument("--once", action="store_true", help="sweep once, wait for the deliveries, exit (for cron)")
    p.add_argument("--dry-run", action="store_true", help="log what one sweep would claim and send; change nothing")
    p.add_argument("--no-listen", action="store_true", help="no LISTEN (behind a transaction pooler): poll at the tick")
    p.add_argument("--log-format", choices=("auto", "json", "console"), default=None)
    p.add_argument("--metrics-addr", metavar="HOST:PORT", help="serve /metrics and /healthz (PROCESSOR_METRICS_ADDR)")
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("check", help="check configuration, database, schema, LISTEN, routes and keys")
    p.set_defaults(handler=cmd_check)

    p = sub.add_parser("keygen", help="make the processor's ES256 signing key; print the public JWKS for generators")
    p.add_argument("--out", required=True, help="where to write the private key (PEM, mode 0600; must not exist)")
    p.add_argument("--previous-jwks", metavar="FILE", help="the JWKS published so far: its first key stays in the set")
    p.set_defaults(handler=cmd_keygen)

    p = sub.add_parser("status", help="the overview and the stuck generations, with the reason for each")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p.add_argument("--limit", type=int, default=50, help="at most this many stuck rows (default 50)")
    p.set_defaults(handler=cmd_status)
    for name, helptext in (("reset", "start a generation over: pending, counters zeroed, due now"),
                           ("retry-now", "make a live generation due now, keeping its retry count"),
                           ("give-up", "mark a live generation failed with a reason")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("id", metavar="ID")
        if name == "give-up":
            p.add_argument("--reason", required=True)
        p.add_argument("--force", action="store_true", help="even while a delivery is in flight")
        p.set_defaults(handler=cmd_admin, admin=name)
    p = sub.add_parser("history", help="the event log of one generation, oldest first")
    p.add_argument("id", metavar="ID")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_history)

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


async def cmd_status(args: argparse.Namespace) -> int:
    from processor import admin

    return await admin.status(Settings.from_env(), as_json=args.json, limit=args.limit)


ADMIN_SQL = {
    "reset": "SELECT genretry.reset($1, force => $2)",
    "retry-now": "SELECT genretry.retry_now($1, force => $2)",
    "give-up": "SELECT genretry.give_up($1, $3, force => $2)",
}


async def cmd_admin(args: argparse.Namespace) -> int:
    from processor import admin

    generation_id = admin.parse_id(args.id)
    settings = Settings.from_env()
    extra = (args.reason,) if args.admin == "give-up" else ()
    return await admin.call(settings, ADMIN_SQL[args.admin], generation_id, args.force, *extra)


async def cmd_history(args: argparse.Namespace) -> int:
    from processor import admin

    generation_id = admin.parse_id(args.id)
    return await admin.history(Settings.from_env(), generation_id, as_json=args.json)


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

    return await run_checks(Settings.from_env(need=("database", "dispatch")))


async def cmd_serve_generator(args: argparse.Namespace) -> int:
    from processor import db, logs, reference_generator

    settings = Settings.from_env(need=("database", "verify"))
    logs.configure(args.log_format or settings.log_format, settings.log_level)
    pool = await db.create_pool(settings.database_url, min_size=1, max_size=8)
    try:
        served = await reference_generator.start(
            pool, settings.generators, reference_generator.keys_from(settings), host=args.host, port=args.port,
            behaviour=reference_generator.Behaviour(args.work_seconds, args.fail_rate, args.hang_rate))
        logs.get_logger().info("generator_listening", url=served.url, generators=list(settings.generators))
        await served.task
    finally:
        await pool.close()
    return 0


async def cmd_keygen(args: argparse.Namespace) -> int:
    from processor import keygen_cli

    return keygen_cli.run(args.out, args.previous_jwks)


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

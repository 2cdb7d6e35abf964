"""The admin sub-commands (status, failed, reset, retry-now, give-up, history): arguments and handlers.

Every one takes --json; every argument is checked before anything connects (one line, exit 2).
"""

from __future__ import annotations

import argparse
import datetime
import re
from typing import Any

from processor.config import Settings

MAX_LIMIT = 10_000
_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def limit(text: str) -> int:
    """--limit: a whole number 1..10000."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be 1..{MAX_LIMIT} (got {value})")
    return value


def since(text: str) -> datetime.datetime:
    """--since: an age (30m, 2h, 7d) or an ISO 8601 time (UTC when it names no zone)."""
    match = _AGO.match(text.strip().lower())
    if match:
        try:
            return datetime.datetime.now(datetime.UTC) - datetime.timedelta(
                seconds=float(match.group(1)) * _UNIT_S[match.group(2)])
        except (OverflowError, ValueError):
            raise argparse.ArgumentTypeError(f"{text[:40]!r} reaches before year 1") from None
    try:
        value = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is neither an age (30m, 2h, 7d) nor an ISO time") from None
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


def add_commands(sub: Any) -> None:
    """Register the admin sub-commands on the CLI's sub-parsers."""
    p = sub.add_parser("status", help="the overview and the stuck generations, with the reason for each")
    _json(p)
    p.add_argument("--limit", type=limit, default=50, help="at most this many stuck rows (1..10000, default 50)")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("failed", help="failed and exhausted generations, newest first; --reset resets them")
    _filters(p)
    p.add_argument("--reset", action="store_true", help="reset every listed generation (see --dry-run)")
    p.add_argument("--dry-run", action="store_true", help="with --reset: list what would be reset, change nothing")
    p.add_argument("--force", action="store_true", help="with --reset: even while a delivery is in flight")
    _json(p)
    p.set_defaults(handler=cmd_failed)

    p = sub.add_parser("reset", help="start generations over: pending, counters zeroed, due now")
    p.add_argument("ids", metavar="ID", nargs="+")
    p.add_argument("--dry-run", action="store_true", help="list what would be reset, change nothing")
    p.add_argument("--force", action="store_true", help="even while a delivery is in flight")
    _json(p)
    p.set_defaults(handler=cmd_reset)
    for name, helptext in (("retry-now", "make a live generation due now, keeping its retry count"),
                           ("give-up", "mark a live generation failed with a reason")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("id", metavar="ID")
        if name == "give-up":
            p.add_argument("--reason", required=True)
        p.add_argument("--force", action="store_true", help="even while a delivery is in flight")
        _json(p)
        p.set_defaults(handler=cmd_sentence, admin=name)

    p = sub.add_parser("history", help="the event log of one generation, oldest first")
    p.add_argument("id", metavar="ID")
    _json(p)
    p.set_defaults(handler=cmd_history)


def _json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="JSON for scripts (one line, ASCII)")


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generator", help="only this generator")
    p.add_argument("--since", type=since, help="failed at most this long ago (30m, 2h, 7d) or since an ISO time")
    p.add_argument("--reason", help="error message contains this text (case-insensitive)")
    p.add_argument("--limit", type=limit, default=50, help="at most this many rows (1..10000, default 50)")


def _where(args: argparse.Namespace) -> Any:
    from processor.admin import FailedFilter

    return FailedFilter(args.generator, args.since, args.reason, args.limit)


async def cmd_status(args: argparse.Namespace) -> int:
    from processor import admin

    return await admin.status(Settings.from_env(), as_json=args.json, limit=args.limit)


async def cmd_failed(args: argparse.Namespace) -> int:
    from processor import admin
    from processor.errors import UsageError

    if (args.dry_run or args.force) and not args.reset:
        raise UsageError("--dry-run and --force go with --reset")
    if args.reset:
        return await admin.reset_many(Settings.from_env(), None, _where(args), force=args.force,
                                      dry_run=args.dry_run, as_json=args.json)
    return await admin.failed(Settings.from_env(), _where(args), as_json=args.json)


async def cmd_reset(args: argparse.Namespace) -> int:
    from processor import admin

    ids = list(dict.fromkeys(admin.parse_id(text) for text in args.ids))
    settings = Settings.from_env()
    if len(ids) == 1 and not args.dry_run:
        return await admin.call(settings, "reset", ids[0], args.force, as_json=args.json)
    return await admin.reset_many(settings, ids, None, force=args.force, dry_run=args.dry_run, as_json=args.json)


async def cmd_sentence(args: argparse.Namespace) -> int:
    from processor import admin

    generation_id = admin.parse_id(args.id)
    extra = (args.reason,) if args.admin == "give-up" else ()
    return await admin.call(Settings.from_env(), args.admin, generation_id, args.force, *extra, as_json=args.json)


async def cmd_history(args: argparse.Namespace) -> int:
    from processor import admin

    return await admin.history(Settings.from_env(), admin.parse_id(args.id), as_json=args.json)

"""structlog set-up: JSON lines off a terminal, readable lines on one; secrets redacted in one processor."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from processor import scrub

# Keys whose values are credentials wherever they appear in an event, at any depth.
_SECRET_KEY = re.compile(
    r"(authorization|apikey|api[-_]?key|token|secret|password|passwd|credential|cookie|jwt|private[-_]?key"
    r"|service[-_]?role|bearer)",
    re.IGNORECASE,
)
# Values that are credentials whatever their key: JWTs, platform API keys, passwords in URLs.
_SECRET_VALUE = re.compile(
    r"(eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"  # a JWT (header starts with {")
    r"|sb_(?:secret|publishable)_[A-Za-z0-9_-]+"  # a platform API key
    r"|(?<=://)[^/@\s:]+:[^/@\s]+(?=@))"  # user:password@ in a URL
)
PREFIX = 6


def redact(value: str) -> str:
    """Keep at most a 6-character prefix of a secret."""
    return value[:PREFIX] + "…" if len(value) > PREFIX else "…"


def _scrub(value: Any, *, secret: bool) -> Any:
    if isinstance(value, str):
        if secret and value:
            return redact(value)
        return _SECRET_VALUE.sub(lambda m: redact(m.group(0)), scrub.scrub(value))  # + configured secrets
    if isinstance(value, Mapping):
        return {k: _scrub(v, secret=secret or (isinstance(k, str) and bool(_SECRET_KEY.search(k))))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v, secret=secret) for v in value]
    if isinstance(value, bytes):
        return _scrub(value.decode("utf-8", "replace"), secret=secret)
    return value


def redact_secrets(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: redact credentials by key name and by shape, at any depth."""
    for key in list(event):
        event[key] = _scrub(event[key], secret=bool(_SECRET_KEY.search(key)) and key != "event")
    return event


def configure(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog once for the process. fmt: auto (JSON unless a terminal), json, console."""
    stream = stream or sys.stdout
    as_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    # Libraries log through the standard library (asyncpg's pool, uvicorn): the same lines, the same redaction.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared[:2]],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *shared[2:], renderer]))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(logging.WARNING, getattr(logging, level.upper())))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *shared,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "processor") -> Any:
    return structlog.get_logger(name)

"""structlog set-up: JSON lines off a terminal, readable lines on one; secrets redacted in one processor."""

from __future__ import annotations

import atexit
import functools
import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from processor import scrub
from processor.log_lines import Lines, factory

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
# The only characters of a secret ever shown: a prefix that names its kind and is the same for every key of
# that kind. Before, the first 6 characters of any secret were kept, which for a random secret (an HS256
# key, a password) are 6 characters of the secret itself.
PUBLIC_PREFIXES = ("sb_secret_", "sb_publishable_", "eyJ", "-----BEGIN ")


def redact(value: str) -> str:
    """A secret as its kind at most (sb_secret_…, eyJ… for a JWT), never characters of its own."""
    return next((p for p in PUBLIC_PREFIXES if value.startswith(p) and len(value) > len(p)), "") + "…"


def _clean(value: str) -> str:
    return _SECRET_VALUE.sub(lambda m: redact(m.group(0)), scrub.scrub(value))  # + configured secrets


# Most string values of log lines repeat (names, outcome kinds, labels, the worker): a short one is cleaned
# once and remembered until the remembered secrets change. A per-delivery line cost 65 µs of redaction
# before (a fifth of a delivery's CPU), about 10 µs now (its generation id is new every time).
_CACHED_CHARS = 256
_CACHE_ENTRIES = 4096
_cache: dict[str, str] = {}
_cache_epoch = -1


def _clean_cached(value: str) -> str:
    global _cache_epoch
    if len(value) > _CACHED_CHARS:
        return _clean(value)
    if _cache_epoch != scrub.epoch():
        _cache.clear()
        _cache_epoch = scrub.epoch()
    cleaned = _cache.get(value)
    if cleaned is None:
        if len(_cache) >= _CACHE_ENTRIES:
            _cache.clear()  # bounded: unique values (ids) must not grow it
        cleaned = _cache[value] = _clean(value)
    return cleaned


@functools.lru_cache(maxsize=1024)
def _secret_key(key: str) -> bool:
    return _SECRET_KEY.search(key) is not None


def _scrub(value: Any, *, secret: bool) -> Any:
    if isinstance(value, str):
        if secret and value:
            return redact(value)
        return _clean_cached(value)
    if isinstance(value, Mapping):  # keys too: a peer's header names are its words as much as the values
        return {_scrub(k, secret=False) if isinstance(k, (str, bytes)) else k:
                _scrub(v, secret=secret or (isinstance(k, str) and _secret_key(k))) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_scrub(v, secret=secret) for v in value]
    if isinstance(value, bytes):
        return _scrub(value.decode("utf-8", "replace"), secret=secret)
    return value


def redact_secrets(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: redact credentials by key name and by shape, at any depth."""
    for key, value in event.items():
        if not isinstance(value, (int, float, type(None))):  # numbers and None cannot hold a credential
            event[key] = _scrub(value, secret=key != "event" and _secret_key(key))
    return event


def configure(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog once for the process. fmt: auto (JSON unless a terminal), json, console."""
    global _lines
    stream = stream or sys.stdout
    if _lines is not None:
        _lines.drain()
    lines = _lines = Lines(stream)
    as_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    # what the caller gave (its exception's text included) is cleaned; level and time, ours, are added after
    clean: list[Any] = [structlog.processors.format_exc_info, redact_secrets]
    stamp: list[Any] = [structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True)]
    # Libraries log through the standard library (asyncpg's pool, uvicorn): the same lines, the same redaction.
    handler = logging.StreamHandler(lines)  # a text stream in all that the handler uses
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *stamp],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *clean, renderer]))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(logging.WARNING, getattr(logging, level.upper())))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *clean,
            *stamp,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=factory(lines),
        cache_logger_on_first_use=False,
    )


_lines: Lines | None = None


@atexit.register
def _drain_at_exit() -> None:
    if _lines is not None:
        _lines.drain()


def batch_lines(on: bool) -> None:
    """While on, lines logged in one turn of the event loop are written together at its end (the daemon's
    hot path logs a line per delivery); turning it off writes what is pending."""
    if _lines is not None:
        _lines.batching = on
        if not on:
            _lines.drain()


def get_logger(name: str = "processor") -> Any:
    return structlog.get_logger(name)

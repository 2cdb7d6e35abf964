"""Database edge: connections and pools. asyncpg's connection errors become ours here, once."""

from __future__ import annotations

import socket
import ssl
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from processor.errors import DatabaseError

CONNECT_TIMEOUT_S = 10.0

# A connection of our own or one borrowed from a pool.
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


def redact_url(url: str) -> str:
    """Return the URL with its password replaced, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable database URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def describe_target(url: str) -> str:
    """Host, port and database of a URL, for a one-line error."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "local socket"
        port = parts.port or 5432
    except ValueError:
        return "<unparsable database URL>"
    return f"{host}:{port}/{parts.path.lstrip('/') or '(default)'}"


_CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    socket.gaierror,
    ssl.SSLError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.ClientConfigurationError,
    ValueError,
)


async def connect(url: str, *, connect_timeout_s: float = CONNECT_TIMEOUT_S, **kwargs: Any) -> asyncpg.Connection:
    """Open one connection, or raise DatabaseError naming the target and the reason."""
    try:
        return await asyncpg.connect(url, timeout=connect_timeout_s, **kwargs)
    except _CONNECT_ERRORS as exc:
        raise DatabaseError(f"cannot connect to the database at {describe_target(url)}: {_reason(exc)}") from exc


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Pool reset that sends nothing: our calls leave no session state (set_config is transaction-local)."""


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 4, **kwargs: Any) -> asyncpg.Pool:
    """Open a pool, or raise DatabaseError naming the target and the reason.

    Connections are not reset on release (asyncpg's default sends a reset query each time, doubling the
    statements of an idle daemon).
    """
    kwargs.setdefault("reset", _keep_session)
    try:
        pool = await asyncpg.create_pool(
            url, min_size=min_size, max_size=max_size, timeout=CONNECT_TIMEOUT_S, **kwargs
        )
    except _CONNECT_ERRORS as exc:
        raise DatabaseError(f"cannot connect to the database at {describe_target(url)}: {_reason(exc)}") from exc
    assert pool is not None
    return pool


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, TimeoutError):
        text = "timed out"
    return text


async def admin_call(conn: Conn, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Run an admin API call; the database's refusals become ProcessorErrors carrying its message."""
    from processor.errors import NotFoundError

    try:
        return list(await conn.fetch(sql, *args))
    except asyncpg.NoDataFoundError as exc:
        raise NotFoundError(exc.message) from exc
    except (asyncpg.ObjectInUseError, asyncpg.ObjectNotInPrerequisiteStateError,
            asyncpg.InvalidParameterValueError) as exc:
        hint = f" ({exc.hint})" if getattr(exc, "hint", None) else ""
        raise DatabaseError(f"{exc.message}{hint}") from exc
    except asyncpg.InsufficientPrivilegeError as exc:
        raise DatabaseError(f"permission denied: {exc.message} (connect as a role granted genretry_admin)") from exc

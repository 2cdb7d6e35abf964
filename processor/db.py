"""Database edge: connections and pools. asyncpg's connection errors become ours here, once."""

from __future__ import annotations

import os
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolAcquireContext

from processor.errors import DatabaseError

CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 30.0  # a statement on a half-open connection must not hang a task forever
# The daemon never waits long for a lock another transaction holds (an admin's open transaction): its
# claims skip locked rows, its records come back 'locked', and anything else times out and is retried.
LOCK_TIMEOUT_MS = "2000"

# Everything the database layer raises when the database, the network or the driver fails. The daemon
# backs off from these and goes on; it never exits because of one (SPEC 7, issue 10 class 14).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
    DatabaseError,
)

# SQLSTATE classes after which the session itself is in doubt: connection exceptions, operator
# intervention (shutdown, termination), insufficient resources, system errors, internal errors.
_SESSION_CLASSES = ("08", "57", "53", "58", "XX")
_ASYNCPG_DIR = os.path.dirname(asyncpg.__file__)

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


# SQLSTATEs that no wait cures: bad password or role, no such database, no right to connect.
_PERMANENT_AT_START = {"28P01", "28000", "3D000", "42501"}


def transient_at_start(exc: BaseException) -> bool:
    """Whether a failure while the daemon starts is worth waiting out (the database restarting, refusing
    connections, cancelling statements) rather than a mistake to report (credentials, schema, pooler)."""
    from processor.errors import ListenUnavailable, SchemaError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (SchemaError, ListenUnavailable)):
            return False
        if isinstance(seen, asyncpg.PostgresError) and getattr(seen, "sqlstate", None) in _PERMANENT_AT_START:
            return False
        seen = seen.__cause__
    return isinstance(exc, TRANSIENT_ERRORS)


def raised_by_driver(exc: BaseException) -> bool:
    """True when the innermost frame of the exception's traceback is inside asyncpg."""
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last is not None and last.tb_frame.f_code.co_filename.startswith(_ASYNCPG_DIR)


def driver_failure(exc: BaseException) -> DatabaseError | None:
    """A failure inside the driver that is none of the transient errors (an asyncpg bug, a protocol state it
    did not expect), as the DatabaseError the daemon backs off from; None for anything else."""
    if not isinstance(exc, TRANSIENT_ERRORS) and isinstance(exc, Exception) and raised_by_driver(exc):
        return DatabaseError(f"database driver failed: {type(exc).__name__}: {_reason(exc)}")
    return None


def connection_suspect(exc: BaseException) -> bool:
    """Whether the connection that raised exc may be in an unknown state and must not be reused.

    An error the server reported about a statement leaves the session usable; anything else (a driver
    state error, a broken socket, a time-out, a cancelled call, a shutdown) does not.
    """
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = str(getattr(exc, "sqlstate", "") or "")
        # 57014: the server cancelled the statement (statement_timeout, pg_cancel_backend) and said so; the
        # session goes on. The rest of class 57 ends the session (shutdown, termination).
        return sqlstate != "57014" and sqlstate[:2] in _SESSION_CLASSES
    return True


class _DiscardingAcquire(PoolAcquireContext):
    """pool.acquire() that terminates a connection which saw a suspect error instead of pooling it again,
    and turns any other failure raised inside the driver into a DatabaseError."""

    __slots__ = ()

    async def __aexit__(self, *exc_info: object) -> None:
        exc = exc_info[1] if len(exc_info) > 1 and isinstance(exc_info[1], BaseException) else None
        con = self.connection
        if exc is not None and con is not None and connection_suspect(exc):
            con.terminate()
        try:
            await super().__aexit__(*exc_info)
        except Exception as release_error:  # a broken pipe while giving the connection back
            if con is not None and not con.is_closed():
                con.terminate()
            if exc is None:
                raise DatabaseError(f"database connection failed: {_reason(release_error)}") from release_error
        failure = driver_failure(exc) if exc is not None else None
        if failure is not None:
            raise failure from exc


class Pool(asyncpg.Pool):
    """asyncpg's pool whose connections are discarded after a suspect error (see _DiscardingAcquire)."""

    def acquire(self, *, timeout: float | None = None) -> PoolAcquireContext:
        return _DiscardingAcquire(self, timeout)


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Pool reset that sends nothing: our calls leave no session state (set_config is transaction-local)."""


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 4, **kwargs: Any) -> asyncpg.Pool:
    """Open a pool, or raise DatabaseError naming the target and the reason.

    Connections are not reset on release (asyncpg's default sends a reset query each time, doubling the
    statements of an idle daemon); a connection that saw a suspect error is terminated instead of reused.
    """
    kwargs.setdefault("reset", _keep_session)
    pool = Pool(url, min_size=min_size, max_size=max_size, max_queries=50000,
                max_inactive_connection_lifetime=300.0, loop=None, connection_class=asyncpg.Connection,
                record_class=asyncpg.Record, timeout=CONNECT_TIMEOUT_S, **kwargs)
    try:
        await pool
    except _CONNECT_ERRORS as exc:
        pool.terminate()
        raise DatabaseError(f"cannot connect to the database at {describe_target(url)}: {_reason(exc)}") from exc
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

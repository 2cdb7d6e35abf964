"""LISTEN genretry on a dedicated connection: payloads become wake-up hints; the connection is probed and
reconnected with capped, jittered backoff. A notification is only a hint: rows in the table decide.

The connection is also lent, one statement at a time, for the daemon's claims (lend()): a claim on it skips
the pool's acquire and release, and its server process is the one that just sent the notification (0.1 ms
of the NOTIFY path, docs/design.md). Only while idle and healthy; otherwise claims use the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from processor import db
from processor.backoff import Backoff
from processor.errors import DatabaseError, ListenUnavailable
from processor.logs import get_logger

CHANNEL = "genretry"
LIVE = ("pending", "generating")
# How long the self-test waits for its ping, one wait per ping: a transaction-mode pooler never delivers it,
# a slow or busy database delivers it late. Before, one wait of 3 s decided, and a database slower than that at
# start was reported as a pooler: exit 2, which systemd does not restart.
SELF_TEST_WAITS_S = (3.0, 6.0, 12.0)


def parse_hint(payload: str) -> tuple[bool, float | None]:
    """(valid, deadline as epoch seconds or None). Untrusted input: anything odd is (False, None)."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return False, None
    if not isinstance(data, dict):
        return False, None
    status, deadline = data.get("status"), data.get("deadline_at")
    if not isinstance(status, str) or not isinstance(data.get("id"), str):
        return False, None
    if status not in LIVE or deadline is None:
        return True, None  # finished: nothing to wake for
    if not isinstance(deadline, str) or len(deadline) > 64:
        return False, None
    try:
        when = datetime.fromisoformat(deadline)
    except ValueError:
        return False, None
    if when.tzinfo is None:
        return False, None
    return True, when.timestamp()


def looks_like_transaction_pooler(url: str) -> bool:
    try:
        return urlsplit(url).port == 6543
    except ValueError:
        return False


class Listener:
    """Owns the LISTEN connection. on_hint(deadline) for each valid payload; on_reconnect() after a gap."""

    def __init__(self, url: str, on_hint: Callable[[float], None], on_reconnect: Callable[[], None], *,
                 probe_interval_s: float = 15.0, probe_timeout_s: float = 5.0, max_backoff_s: float = 30.0) -> None:
        self.url, self.on_hint, self.on_reconnect = url, on_hint, on_reconnect
        self.probe_interval_s, self.probe_timeout_s = probe_interval_s, probe_timeout_s
        self.max_backoff_s = max_backoff_s
        self.conn: asyncpg.Connection | None = None
        self.lost = asyncio.Event()
        self.healthy = False
        self.reconnects = 0
        self.bad_payloads = 0
        self._last_bad_log = 0.0
        self.log = get_logger("listener")
        self._use = asyncio.Lock()  # one statement at a time on the connection: a lent claim or the probe
        self._probe_waits = False  # the probe waits for the connection: lend() gives it nothing meanwhile
        self.lent = 0  # statements run on the connection for others (lend())
        # run on each new connection before it is lent (the daemon prepares its claim there); may raise
        self.warm: Callable[[asyncpg.Connection], Awaitable[None]] | None = None

    async def start(self, pool: asyncpg.Pool) -> None:
        """Connect, LISTEN, and prove that notifications arrive (they do not through a transaction pooler)."""
        await self._connect()
        await self._self_test(pool)

    async def _connect(self) -> None:
        # the pool's session settings: a lent claim must not wait longer for a lock than a pooled one
        conn = await db.connect(self.url, command_timeout=db.COMMAND_TIMEOUT_S,
                                server_settings={"lock_timeout": db.LOCK_TIMEOUT_MS})
        try:
            conn.add_termination_listener(lambda _c: self.lost.set())
            await conn.add_listener(CHANNEL, self._on_notification)
            if self.warm is not None:
                await self._warm(conn)
        except BaseException as exc:  # a cancellation (shutdown) included: the new connection is not kept open
            conn.terminate()
            if isinstance(exc, db.TRANSIENT_ERRORS):
                raise DatabaseError(f"cannot LISTEN on {db.describe_target(self.url)}: {type(exc).__name__}") from exc
            raise
        self.conn, self.healthy = conn, True
        self.lost.clear()

    async def _warm(self, conn: asyncpg.Connection) -> None:
        """The daemon's warm-up on a new connection. A warm-up that fails (a lock held, a statement time-out,
        a right missing) leaves a cold connection, which is slower, not broken: it is kept and lent. Only a
        connection that closed meanwhile, or is left inside a transaction, is given up (and retried)."""
        assert self.warm is not None
        try:
            await self.warm(conn)
        except Exception as exc:
            self.log.info("listener_warm_up_failed", error=f"{type(exc).__name__}: {str(exc)[:200]}")
            if conn.is_closed() or conn.is_in_transaction():
                raise DatabaseError(f"LISTEN connection failed while warming up: {type(exc).__name__}") from exc

    @contextlib.asynccontextmanager
    async def lend(self) -> AsyncIterator[asyncpg.Connection | None]:
        """The LISTEN connection for one statement, or None when it is in use, wanted by the probe, unhealthy or
        gone: the caller then uses the pool, at once. A claim never waits for the connection.

        Notifications wait at the server while the statement runs, and arrive when it ends. An error that
        leaves the session in doubt (db.connection_suspect: a broken socket, a time-out, a cancellation)
        makes the listener reconnect, as a lost connection does; its notifications may be lost with it.
        """
        conn = self.conn
        if (conn is None or not self.healthy or self.lost.is_set() or self._use.locked() or self._probe_waits
                or conn.is_closed()):
            yield None
            return
        async with self._use:  # free, and nobody waits for it: taken at once
            try:
                self.lent += 1
                yield conn
            except BaseException as exc:
                if db.connection_suspect(exc):
                    self.healthy = False
                    self.lost.set()
                    failure = db.driver_failure(exc)
                    if failure is not None:
                        raise failure from exc
                raise

    async def _self_test(self, pool: asyncpg.Pool) -> None:
        assert self.conn is not None
        channel = f"genretry_selftest_{secrets.token_hex(4)}"
        arrived = asyncio.Event()

        def on_ping(*_args: Any) -> None:
            arrived.set()

        started = time.monotonic()
        try:
            await self.conn.add_listener(channel, on_ping)
            for wait_s in SELF_TEST_WAITS_S:
                await pool.execute("SELECT pg_notify($1, 'ping')", channel)
                waiters = [asyncio.ensure_future(arrived.wait()), asyncio.ensure_future(self.lost.wait())]
                await asyncio.wait(waiters, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
                for w in waiters:
                    w.cancel()
                if arrived.is_set() or self.lost.is_set():
                    break
                self.log.warning("listen_self_test_waiting", waited_s=round(time.monotonic() - started, 1),
                                 hint="no notification yet: a transaction-mode pooler never delivers one")
        except db.TRANSIENT_ERRORS as exc:  # the connection went away meanwhile: try again, it says nothing
            await self._close_quietly()
            raise DatabaseError(f"LISTEN self-test interrupted: {type(exc).__name__}") from exc
        if self.lost.is_set() or self.conn is None or self.conn.is_closed():
            await self._close_quietly()
            raise DatabaseError("LISTEN self-test interrupted: the connection was lost")
        with contextlib.suppress(*db.TRANSIENT_ERRORS):
            await self.conn.remove_listener(channel, on_ping)
        if arrived.is_set():
            if time.monotonic() - started > SELF_TEST_WAITS_S[0]:
                self.log.warning("listen_slow", self_test_s=round(time.monotonic() - started, 1))
        else:
            hint = " (port 6543 is the platform's transaction-mode pooler)" if looks_like_transaction_pooler(
                self.url) else ""
            raise ListenUnavailable(
                f"LISTEN receives no notifications on {db.describe_target(self.url)} within "
                f"{sum(SELF_TEST_WAITS_S):g} s{hint}: a transaction-mode "
                "pooler cannot LISTEN. Use a direct or session-mode connection (port 5432), or run with --no-listen"
            )

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        payload = str(payload)
        valid, deadline = parse_hint(payload)
        if not valid:
            self.bad_payloads += 1
            now = time.monotonic()
            if now - self._last_bad_log > 10:
                self._last_bad_log = now
                self.log.warning("bad_notification", count=self.bad_payloads, sample=payload[:120])
            return
        if deadline is not None:
            self.on_hint(deadline)

    async def run(self, stop: asyncio.Event) -> None:
        """Probe the connection; reconnect after a loss. Returns when stop is set."""
        while not stop.is_set():
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.lost.wait())]
            await asyncio.wait(waiters, timeout=self.probe_interval_s, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
            if stop.is_set():
                return
            try:
                if self.lost.is_set() or not await self._probe():
                    await self._reconnect(stop)
            except Exception as exc:  # never die: a listener that stops would stop the daemon
                self.healthy = False
                self.log.error("listener_error", error=f"{type(exc).__name__}: {str(exc)[:200]}")
                await self._close_quietly()
                self.lost.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)

    async def _probe(self) -> bool:
        try:
            assert self.conn is not None
            # after a lent statement, never beside it (asyncpg runs one at a time), and before the next one
            self._probe_waits = True
            try:
                await self._use.acquire()
            finally:
                self._probe_waits = False
            try:
                listening = await asyncio.wait_for(
                    self.conn.fetchval("SELECT $1 = ANY (ARRAY(SELECT pg_listening_channels()))", CHANNEL),
                    self.probe_timeout_s)
            finally:
                self._use.release()
            return bool(listening)
        except Exception:  # whatever it was, this connection cannot be trusted to deliver notifications
            return False

    async def _reconnect(self, stop: asyncio.Event) -> None:
        self.healthy = False
        self.log.warning("listener_lost")
        await self._close_quietly()
        backoff = Backoff(first_s=0.25, cap_s=self.max_backoff_s)
        while not stop.is_set():
            try:
                await self._connect()
            except db.TRANSIENT_ERRORS as exc:
                delay = backoff.next()
                self.log.warning("listener_reconnect_failed", error=str(exc), retry_in_s=round(delay, 2))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                continue
            self.reconnects += 1
            self.log.info("listener_reconnected", reconnects=self.reconnects)
            self.on_reconnect()  # notifications sent while away are lost: sweep
            return

    async def _close_quietly(self) -> None:
        if self.conn is not None:
            try:
                await asyncio.wait_for(self.conn.close(), 2)
            except Exception:  # closing a broken connection: terminating it is all that is left
                self.conn.terminate()
            self.conn = None

    async def close(self) -> None:
        await self._close_quietly()

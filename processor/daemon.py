"""The daemon: wires the pool, the listener and the scheduler; sleeps until the earliest of (deadline,
notification, tick, stop); shuts down gracefully; speaks to systemd.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from typing import Any

import asyncpg

from processor import db, delivery, migrate, retention, systemd
from processor.config import Settings
from processor.errors import DatabaseError
from processor.listener import Listener
from processor.logs import get_logger
from processor.metrics import Metrics
from processor.scheduler import Scheduler, SweepResult

DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, DatabaseError, TimeoutError)


class Daemon:
    """One processor instance. run() returns on stop; it raises when a part fails for good."""

    def __init__(self, settings: Settings, *, listen: bool = True, metrics: Metrics | None = None) -> None:
        self.settings, self.listen = settings, listen and settings.listen
        self.metrics = metrics or Metrics(known=(*settings.generators, *settings.routes))
        self.log = get_logger("daemon").bind(worker=settings.worker_id)
        self.stop = asyncio.Event()
        self.wake = asyncio.Event()
        self.wake_at = 0.0  # monotonic time the loop plans to wake
        self.healthy = False
        self.ready = asyncio.Event()
        self.scheduler: Scheduler | None = None
        self.listener: Listener | None = None
        self._idle_s = 0.0
        self._for_deadline = True  # the planned wake-up is a deadline (claim), not the safety tick (look)
        self._tasks: list[asyncio.Task[Any]] = []

    # --- hints from the listener -----------------------------------------------------------------

    def hint(self, deadline_epoch: float) -> None:
        """A row's deadline from a notification: wake earlier if it comes before the planned wake-up."""
        at = time.monotonic() + (deadline_epoch - time.time())
        if at < self.wake_at:
            self.wake_at = at
            self.wake.set()

    def wake_now(self) -> None:
        self.wake_at = time.monotonic()
        self.wake.set()

    # --- the loop ----------------------------------------------------------------------------------

    async def run(self, *, once: bool = False, dry_run: bool = False, signals: bool = True) -> None:
        s = self.settings
        if signals:  # first of all: a SIGTERM during start-up ends the daemon cleanly too
            self._install_signals()
        pool = await db.create_pool(s.database_url, min_size=1, max_size=min(s.max_in_flight, 8) + 2,
                                    **({} if self.listen else {"statement_cache_size": 0}))
        client = delivery.make_client(max_connections=s.max_in_flight, connect_timeout_s=s.connect_timeout_s,
                                      response_timeout_s=s.response_timeout_s)
        tasks = self._tasks = []
        metrics_runner: Any = None
        try:
            async with pool.acquire() as conn:
                version, current = await migrate.check_schema(conn)
            if not current:
                self.log.warning("schema_code_differs", hint="database functions are from another processor "
                                 "version; run `processor migrate` with this version")
            self.scheduler = Scheduler(pool, client, s, self.metrics)
            if dry_run:
                await self.scheduler.dry_run()
                return
            if self.listen:
                self.listener = Listener(s.database_url, self.hint, self.wake_now, probe_interval_s=s.tick_s)
                await self.listener.start(pool)
                tasks.append(asyncio.create_task(self.listener.run(self.stop), name="listener"))
            tasks.append(retention.start(pool, s.events_retention_s, self.metrics, self.stop))
            if s.metrics_addr:
                from processor import health
                from processor.config import parse_host_port

                host, port = parse_host_port("PROCESSOR_METRICS_ADDR", s.metrics_addr, [])
                metrics_runner = await health.serve(self, self.metrics, pool, host, port)
            self.log.info("daemon_started", schema_version=version, listen=self.listen, authority=s.auth_mode,
                          max_in_flight=s.max_in_flight, tick_s=s.tick_s)
            if not self.stop.is_set():
                await self._loop(once)
        finally:
            if metrics_runner is not None:
                await metrics_runner.cleanup()
            await self._shutdown(tasks, client, pool)

    async def _loop(self, once: bool) -> None:
        assert self.scheduler is not None
        result = SweepResult()
        db_backoff = 0.5
        look_first = False  # woken by the safety tick alone: ask when work is due before claiming
        while not self.stop.is_set():
            self.wake.clear()
            try:
                if look_first:
                    seconds = await self.scheduler.seconds_to_next_deadline()
                    if seconds is None or seconds > 0:
                        delay = self._until(seconds)
                        self.healthy, db_backoff = True, 0.5
                        look_first = await self._sleep(delay, result) and not self._for_deadline
                        continue
                result = await self.scheduler.run_once(stopping=self.stop)
                delay = await self._next_delay(result)
                self.healthy, db_backoff = True, 0.5
            except DB_ERRORS as exc:
                self.healthy = False
                self.metrics.database_errors.inc()
                self.log.error("database_error", error=str(exc)[:300], retry_in_s=round(db_backoff, 2))
                delay, db_backoff = db_backoff * random.uniform(0.8, 1.2), min(db_backoff * 2, 30.0)
                self._for_deadline = True  # after an error, sweep rather than only look
            self._check_parts()
            if not self.ready.is_set() and self.healthy and not self.stop.is_set():
                self.ready.set()
                systemd.notify("READY=1\nSTATUS=ready: rescuing stuck generations")
                self.log.info("daemon_ready")
            if once:
                await self.scheduler.drain(self.settings.grace_s + self.settings.response_timeout_s)
                return
            look_first = await self._sleep(delay, result) and not self._for_deadline

    async def _next_delay(self, result: SweepResult) -> float:
        assert self.scheduler is not None
        if result.capacity_limited:
            self._for_deadline = True
            return self.settings.tick_s  # a freed slot wakes the loop
        seconds = await self.scheduler.seconds_to_next_deadline()
        if seconds is not None and seconds <= 0:
            # due rows that the last sweep could not take (locked by another transaction): do not spin
            self._for_deadline = True
            self._idle_s = 0.05 if result.claimed else min(1.0, max(0.05, self._idle_s * 2))
            return self._idle_s if not result.claimed else 0.0
        self._idle_s = 0.0
        return self._until(seconds)

    def _until(self, seconds: float | None) -> float:
        """Sleep until the deadline, or the safety tick when it comes first (then only look, not claim).

        No margin is added: epoll rounds its time-out up to the next millisecond, so we never wake early.
        """
        self._for_deadline = seconds is not None and seconds <= self.settings.tick_s
        return self.settings.tick_s if seconds is None else min(seconds, self.settings.tick_s)

    async def _sleep(self, delay: float, result: SweepResult) -> bool:
        """Sleep until the planned time, a notification, a freed slot or stop. True when the time came."""
        assert self.scheduler is not None
        self.wake_at = time.monotonic() + delay
        ping_every = systemd.watchdog_interval_s()
        while not self.stop.is_set() and not self.wake.is_set():
            remaining = self.wake_at - time.monotonic()
            if remaining <= 0:
                return True
            step = min(remaining, ping_every) if ping_every else remaining
            events = [self.stop.wait(), self.wake.wait()]
            if result.capacity_limited:
                self.scheduler.slot_freed.clear()
                events.append(self.scheduler.slot_freed.wait())
            waiters = [asyncio.ensure_future(e) for e in events]
            done, _ = await asyncio.wait(waiters, timeout=step, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
            if ping_every and self.healthy:
                systemd.notify("WATCHDOG=1")
            if done and result.capacity_limited and self.scheduler.slot_freed.is_set():
                return False
        return False

    def _check_parts(self) -> None:
        """A part that died stops the daemon (systemd restarts it): never a half-alive process."""
        for task in self._tasks:
            if task.done() and not self.stop.is_set():
                error = None if task.cancelled() else task.exception()
                raise RuntimeError(f"the {task.get_name()} stopped unexpectedly") from error
        if self.listener is not None and not self.listener.healthy:
            self.healthy = False

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)

    def request_stop(self) -> None:
        if not self.stop.is_set():
            self.log.info("daemon_stopping")
            self.stop.set()

    async def _shutdown(self, tasks: list[asyncio.Task[Any]], client: Any, pool: asyncpg.Pool) -> None:
        systemd.notify("STOPPING=1\nSTATUS=stopping: finishing in-flight deliveries")
        self.stop.set()
        if self.scheduler is not None:
            finished = await self.scheduler.drain(self.settings.grace_s)
            if not finished:
                self.log.warning("grace_period_over", hint="unfinished deliveries were released")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.listener is not None:
            await self.listener.close()
        await client.aclose()
        await pool.close()
        self.log.info("daemon_stopped", outcomes=dict(self.scheduler.outcomes) if self.scheduler else {})

"""The daemon: wires the pool, the listener and the scheduler; sleeps until the earliest of (deadline,
notification, tick, stop); shuts down gracefully; speaks to systemd.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from processor import db, delivery, logs, migrate, retention, systemd, warmup
from processor import dry_run as dry_runs
from processor.backoff import Backoff
from processor.config import Settings
from processor.contracts import CLAIM, NEXT
from processor.listener import Listener
from processor.logs import get_logger
from processor.metrics import Metrics
from processor.nap import Nap, PokingEvent
from processor.scheduler import Scheduler
from processor.shutdown import shut_down
from processor.wakeup import Do, Sleep, WakeUp, Woke

DB_ERRORS = db.TRANSIENT_ERRORS
LOOK_AFTER_S = 0.002  # after a sweep that sent: how long the next look may wait for the first answer
T = TypeVar("T")


class Daemon:
    """One processor instance. run() returns on stop; it raises when a part fails for good."""

    def __init__(self, settings: Settings, *, listen: bool = True, metrics: Metrics | None = None) -> None:
        self.settings, self.listen = settings, listen and settings.listen
        self.metrics = metrics or Metrics(known=(*settings.generators, *settings.routes))
        self.log = get_logger("daemon").bind(worker=settings.worker_id)
        self.nap = Nap()  # the loop's sleep: ended early by stop, wake and (while capacity is full) a freed slot
        self.stop = PokingEvent(self.nap.end)
        self.wake = PokingEvent(self.nap.end)  # something changed while sleeping: re-evaluate
        self.wakeup = WakeUp(settings.tick_s)
        self.sleeping: Sleep | None = None  # the plan while the loop sleeps; None while it works
        self._woke: Woke | None = None  # why to end the next sleep early, noted while sleeping or working
        self._planned = float("inf")  # earliest own deadline recorded since the loop last read the database
        self.healthy = False
        self.ready = asyncio.Event()
        self.scheduler: Scheduler | None = None
        self.listener: Listener | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    # --- hints from the listener -----------------------------------------------------------------

    def hint(self, deadline_epoch: float) -> None:
        """A row's deadline from a notification (the database's clock, as epoch seconds)."""
        now = time.monotonic()
        woke = self.wakeup.hinted(now, now + (deadline_epoch - self._db_now()), self.sleeping)
        if woke is not None:
            self._note(woke)

    def plan(self, deadline_epoch: float) -> None:
        """A deadline the daemon set itself (a backoff it recorded, which sends no NOTIFY): wake at that
        time, idle or busy. Unlike a hint, nothing is claimed before it comes."""
        at = time.monotonic() + (deadline_epoch - self._db_now())
        if self.sleeping is None:
            self._planned = min(self._planned, at)  # the loop is working: used by its next sleep
        elif at < self.sleeping.at:
            self.sleeping = self.wakeup.earlier(self.sleeping, at)
            self.wake.set()

    def _db_now(self) -> float:
        """The database's clock now, as epoch seconds: deadlines in notifications and records are on it, and
        the host's wall clock may be skewed from it. Read at each look (processor.scheduler), carried forward
        on the monotonic clock; the host's wall clock is not used once the database has been asked."""
        clock = self.scheduler.db_clock if self.scheduler is not None else None
        if clock is None:
            return time.time()
        epoch, read_at = clock
        return epoch + (time.monotonic() - read_at)

    def wake_now(self) -> None:
        """The listener reconnected: notifications sent while it was away are lost, so sweep."""
        self._note(Woke.DUE)

    def _note(self, woke: Woke) -> None:
        if self._woke is None or (self._woke is Woke.SOONER and woke is not Woke.SOONER):
            self._woke = woke
        self.wake.set()

    # --- the loop ----------------------------------------------------------------------------------

    async def run(self, *, once: bool = False, dry_run: bool = False, signals: bool = True) -> None:
        if signals:  # first of all: a SIGTERM during start-up ends the daemon cleanly too
            self._install_signals()
        logs.batch_lines(True)  # a line per delivery: written once per turn of the loop (processor.log_lines)
        try:
            await self._run(once=once, dry_run=dry_run)
        finally:
            logs.batch_lines(False)

    async def _run(self, *, once: bool, dry_run: bool) -> None:
        s = self.settings
        # A long-running daemon waits for its database (restarting, refusing connections, cancelling); a
        # cron run (--once) or a --dry-run reports and exits. Mistakes (password, schema) never wait.
        patient = not (once or dry_run)
        opened = await self._until_up("database", self._open_database, patient)
        if opened is None:
            return  # stopped while waiting
        pool, version, current = opened
        client = delivery.make_client(max_connections=s.max_in_flight, connect_timeout_s=s.connect_timeout_s,
                                      response_timeout_s=s.response_timeout_s)
        tasks = self._tasks = []
        metrics_runner: Any = None
        try:
            if not current:
                self.log.warning("schema_code_differs", hint="database functions are from another processor "
                                 "version; run `processor migrate` with this version")
            # a single sweep (--once) claims only what it sends: nothing is claimed ahead to give back
            self.scheduler = Scheduler(pool, client, s, self.metrics, claim_ahead=0 if once else None)
            self.scheduler.on_deadline = self.plan
            self.scheduler.on_slot_freed = self._slot_freed
            self.scheduler.on_fatal = self.wake_now  # a key that cannot sign: the next sweep raises it at once
            if not dry_run:
                # no prepared statements without LISTEN: that mode is for transaction poolers
                timings = await warmup.warm_up(authority=self.scheduler.authority, pool=pool,
                                               generators=[*s.generators, *s.routes],
                                               statements=[NEXT] if self.listen else [],
                                               route=self.scheduler.urls.get, client=client, metrics=self.metrics)
                self.log.debug("warmed_up", **{k.replace(" ", "_"): v for k, v in timings.items()})
            if dry_run:
                await dry_runs.dry_run(self.scheduler)
                return
            if self.listen:
                listener = self.listener = Listener(s.database_url, self.hint, self.wake_now,
                                                    probe_interval_s=s.tick_s)
                listener.warm = lambda conn: warmup.warm_statements(conn, [self._warm_claim()])

                async def start_listener() -> bool:
                    await listener.start(pool)
                    return True

                if await self._until_up("listener", start_listener, patient) is None:
                    return
                self.scheduler.lend = listener.lend  # claims ride the connection that was just woken
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
            await shut_down(self, tasks, client, pool)

    def _warm_claim(self) -> warmup.Statement:
        """The claim with the daemon's own arguments, for the LISTEN connection's warm-up (rolled back there).
        The pool's warm-up runs only the next-deadline look: claims are lent the LISTEN connection."""
        return (CLAIM, (self.settings.worker_id, 1, self.settings.lease_s))

    async def _open_database(self) -> tuple[asyncpg.Pool, int, bool]:
        s = self.settings
        pool = await db.create_pool(s.database_url, min_size=1, max_size=min(s.max_in_flight, 8) + 2,
                                    command_timeout=db.COMMAND_TIMEOUT_S,
                                    server_settings={"lock_timeout": db.LOCK_TIMEOUT_MS},
                                    **({} if self.listen else {"statement_cache_size": 0}))
        try:
            async with pool.acquire() as conn:
                version, current = await migrate.check_schema(conn)
        except BaseException:
            pool.terminate()
            raise
        return pool, version, current

    async def _until_up(self, step: str, attempt: Callable[[], Awaitable[T]], patient: bool) -> T | None:
        """attempt() until it succeeds; a transient database failure is waited out with backoff (telling
        systemd the start takes longer). None when stopped while waiting."""
        backoff = Backoff(first_s=0.5, cap_s=30.0)
        while not self.stop.is_set():
            try:
                return await attempt()
            except Exception as exc:
                if not patient or not db.transient_at_start(exc):
                    raise
                delay = backoff.next()
                self.log.warning("database_unavailable", step=step, error=f"{type(exc).__name__}: {str(exc)[:200]}",
                                 retry_in_s=round(delay, 2))
                systemd.notify(f"EXTEND_TIMEOUT_USEC={int((delay + 30) * 1e6)}\nSTATUS=waiting for the database")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), delay)
        return None

    async def _loop(self, once: bool) -> None:
        """Execute the wake-up's decisions (processor.wakeup): work, then sleep until the next turn."""
        assert self.scheduler is not None
        do = Do.CLAIM
        while do is not Do.STOP and not self.stop.is_set():
            self._check_parts()
            self._woke, self._planned = None, float("inf")  # what the queries below read, they know
            try:
                sleep = await self._work(do)
                self.healthy = True
            except DB_ERRORS as exc:
                self.healthy = False
                sleep = self.wakeup.after_error(time.monotonic())
                self.metrics.database_errors.inc()
                self.log.error("database_error", error=str(exc)[:300],
                               retry_in_s=round(sleep.at - time.monotonic(), 2))
            self._check_parts()
            if not self.ready.is_set() and self.healthy and not self.stop.is_set():
                self.ready.set()
                systemd.notify("READY=1\nSTATUS=ready: rescuing stuck generations")
                self.log.info("daemon_ready")
            if once:
                await self.scheduler.drain(self.settings.grace_s + self.settings.response_timeout_s)
                return
            do = await self._sleep(self.wakeup.earlier(sleep, self._planned))

    async def _work(self, do: Do) -> Sleep:
        assert self.scheduler is not None
        if do is Do.LOOK:
            seconds = await self.scheduler.seconds_to_next_deadline()
            return self.wakeup.after_look(time.monotonic(), seconds)
        result = await self.scheduler.run_once(stopping=self.stop)
        if result.claimed and not result.capacity_limited:
            # The look below waits for the first answer, briefly: on two cores its query competed with the
            # request just sent (measured: 0.1 ms of the NOTIFY path's p50, 0.3 ms of its p90). A row falling
            # due meanwhile is at most LOOK_AFTER_S late, and one notified is not late at all.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.scheduler.answered.wait(), LOOK_AFTER_S)
        seconds = None if result.capacity_limited else await self.scheduler.seconds_to_next_deadline()
        return self.wakeup.after_sweep(time.monotonic(), claimed=result.claimed,
                                       capacity_limited=result.capacity_limited, next_deadline_s=seconds)

    async def _sleep(self, sleep: Sleep) -> Do:
        """Sleep as planned; the plan may move earlier meanwhile (plan()). Returns what to do next."""
        assert self.scheduler is not None
        self.sleeping = sleep
        ping_every = systemd.watchdog_interval_s()
        try:
            while True:
                if self.stop.is_set():
                    return Do.STOP
                if self._woke is not None:
                    return self.wakeup.on_wake(self._woke, self.sleeping)
                # a slot freed since the sweep began ends the sleep (run_once clears the flag as it starts, not
                # this sleep: a slot freed between the sweep's end and this line is not lost)
                if self.sleeping.slot_ends_it and self.scheduler.slot_freed.is_set():
                    return self.wakeup.on_wake(Woke.SLOT, self.sleeping)
                remaining = self.sleeping.at - time.monotonic()
                if remaining <= 0:
                    return self.wakeup.on_wake(Woke.TIME, self.sleeping)
                self.wake.clear()
                await self.nap.sleep(min(remaining, ping_every) if ping_every else remaining)
                if ping_every:  # the loop turns: a database outage is backed off from, not a hang to kill
                    systemd.notify("WATCHDOG=1")
        finally:
            self.sleeping = None

    def _slot_freed(self) -> None:
        if self.sleeping is not None and self.sleeping.slot_ends_it:
            self.nap.end()

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

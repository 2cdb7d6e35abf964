"""The core cycle: claim due rows, deliver them concurrently, record each outcome; know the next deadline.

run_once() claims in batches while there is capacity and starts one task per row; each task delivers and
records in its own short transaction, so no transaction is open across HTTP. drain() waits for the tasks.
Claiming ahead (docs/design.md): a sweep claims up to `claim_ahead` rows beyond the free slots into `ready`;
a freed slot starts the next one at once. drain() and a generator's pause give them back unsent (`released`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

import asyncpg
import httpx

from processor import delivery, verdicts
from processor.config import Settings
from processor.contracts import CLAIM, NEXT, ClaimAction, ClaimedRow
from processor.credentials import Authority, Delivery
from processor.errors import ConfigError
from processor.limits import GeneratorLimits
from processor.logs import get_logger
from processor.metrics import Metrics
from processor.nap import PokingEvent
from processor.pauses import Pauses
from processor.recorder import Recorder
from processor.routing import Urls


@dataclass
class SweepResult:
    claimed: int = 0
    exhausted: int = 0
    capacity_limited: bool = False
    outcomes: Counter[str] = field(default_factory=Counter)


class Scheduler:
    """Claims, delivers and records. One per daemon; shares one HTTP client and one pool."""

    def __init__(self, pool: asyncpg.Pool, client: delivery.Client, settings: Settings,
                 metrics: Metrics | None = None, *, claim_ahead: int | None = None) -> None:
        self.pool, self.client, self.settings = pool, client, settings
        # rows claimed beyond the free slots, started as slots free up (0: claim only for free slots)
        self.claim_ahead = (max(1, min(settings.batch_size, settings.max_in_flight) // 2)
                            if claim_ahead is None else claim_ahead)
        self.ready: deque[tuple[ClaimedRow, float]] = deque()  # (row, claimed at, monotonic)
        self._draining = False
        self.urls = Urls(lambda name: self.settings.resolve(name))  # settings may be replaced (tests)
        self.authority = Authority(settings)
        self.metrics = metrics or Metrics()
        self.log = get_logger("scheduler").bind(worker=settings.worker_id)
        self.tasks: set[asyncio.Task[None]] = set()
        self.in_flight = 0  # HTTP deliveries under way (bounded by max_in_flight)
        self.recording = 0  # outcomes not yet written (bounded by 4 x max_in_flight: backpressure)
        self.slot_freed = PokingEvent(lambda: self.on_slot_freed())  # set: the daemon's sleep may end
        self.answered = asyncio.Event()  # a delivery got its outcome since the last sweep began
        self.db_clock: tuple[float, float] | None = None  # (database epoch, our monotonic) at the last look
        # told the new deadline of each recorded row: a backoff the daemon set itself sends no NOTIFY
        self.on_deadline: Callable[[float], None] = lambda _epoch: None
        self.on_slot_freed: Callable[[], None] = lambda: None
        # a connection for the next claim instead of the pool's, or None (the daemon lends the listener's)
        self.lend: Callable[[], AbstractAsyncContextManager[asyncpg.Connection | None]] = _nothing_lent
        self.outcomes: Counter[str] = Counter()
        self._per_generator = GeneratorLimits(settings.generator_in_flight)
        self.pauses = Pauses(max_age_s=settings.lease_s)
        self.recorder = Recorder(pool, settings.worker_id, lease_s=settings.lease_s,
                                 on_give_up=self.metrics.record_failures.inc)
        # Our own fault (a key that cannot sign): every claim would fail the same way, so the daemon stops
        # rather than burn rows. run_once() raises it; on_fatal lets the daemon wake up to do so at once.
        self.fatal: ConfigError | None = None
        self.on_fatal: Callable[[], None] | None = None

    # --- one sweep ---------------------------------------------------------------------------------

    async def run_once(self, *, stopping: asyncio.Event | None = None) -> SweepResult:
        """Claim until nothing due is left or capacity is full; start a delivery task per row."""
        result = SweepResult()
        self.slot_freed.clear()  # what frees a slot from now on asks for the next sweep
        self.answered.clear()
        while stopping is None or not stopping.is_set():
            if self.fatal is not None:
                raise self.fatal
            free = self._room()
            if free <= 0 or self.recording >= 4 * self.settings.max_in_flight:
                result.capacity_limited = True
                break
            want = min(self.settings.batch_size, free)
            claimed_at = time.monotonic()  # before: a pause marked while the claim comes back is after it
            async with self.lend() as conn:
                records = await (self.pool if conn is None else conn).fetch(
                    CLAIM, self.settings.worker_id, want, self.settings.lease_s)
            rows = [ClaimedRow.of(r) for r in records]
            for row in rows:
                self._take(row, claimed_at, result)
            if len(rows) < want:
                break
        if result.claimed:
            await asyncio.sleep(0)  # the deliveries just started send their requests before anything else
        if result.claimed or result.exhausted:
            self.log.info("sweep", claimed=result.claimed, exhausted=result.exhausted, in_flight=self.in_flight)
        return result

    async def drain(self, timeout_s: float | None = None) -> bool:
        """Give the ready rows back unsent and wait for in-flight deliveries; on time-out cancel them (their
        rows are released), then write the outcomes still queued. True if every delivery ended by itself."""
        pending: set[asyncio.Task[None]] = set()
        self._draining = True
        self._release_ready(lambda _row: True, "released at shutdown")
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        await self.recorder.close()
        self._draining = False
        return not pending

    async def seconds_to_next_deadline(self) -> float | None:
        """Seconds until the next claimable deadline, by the database's clock (None: nothing scheduled)."""
        row = await self.pool.fetchrow(NEXT)
        assert row is not None
        self.db_clock = (row[1], time.monotonic())  # the database's clock, and when we read it (within a trip)
        value: float | None = row[0]
        return value

    # --- one row ---------------------------------------------------------------------------------

    def _room(self) -> int:
        """Rows a claim may take now: free slots, and room in the ready queue."""
        return self.settings.max_in_flight - self.in_flight + self.claim_ahead - len(self.ready)

    def _take(self, row: ClaimedRow, claimed_at: float, result: SweepResult) -> None:
        if row.action is ClaimAction.EXHAUSTED:
            result.exhausted += 1
            self.metrics.exhaustions.inc()
            self.log.warning("generation_exhausted", generation_id=str(row.id), generator=verdicts.shown(row.generator),
                             retries=row.retry_count, error_message=row.error_message)
            return
        result.claimed += 1
        self.metrics.claims.inc()
        if self.in_flight < self.settings.max_in_flight and not self.ready:
            self._start(row, claimed_at)
        else:
            self.ready.append((row, claimed_at))

    def _start(self, row: ClaimedRow, claimed_at: float) -> None:
        due_at = row.due_at
        if due_at is not None:
            self.metrics.detection_lag.observe(max(0.0, time.time() - due_at.timestamp()))
        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)
        task = asyncio.create_task(self._deliver(row, claimed_at))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _slot_done(self) -> None:
        self.in_flight -= 1
        if self.ready and not self._draining and self.fatal is None:
            self._start(*self.ready.popleft())  # the freed slot goes to the next claimed row at once
        self.metrics.in_flight.set(self.in_flight)
        self._maybe_signal()

    def _maybe_signal(self) -> None:
        # Refill in chunks: waking for every freed slot would claim one row per transaction.
        refill = max(1, min(self.settings.batch_size, self.settings.max_in_flight) // 4)
        if (self._room() >= refill or (self.in_flight == 0 and not self.ready)) and \
                self.recording < 4 * self.settings.max_in_flight:
            self.slot_freed.set()

    def _release_ready(self, which: Callable[[ClaimedRow], bool], label: str) -> None:
        """Give ready rows back unsent (`released`: due again at once, the same attempt)."""
        keep: deque[tuple[ClaimedRow, float]] = deque()
        while self.ready:
            row, claimed_at = self.ready.popleft()
            if not which(row):
                keep.append((row, claimed_at))
                continue
            self.recording += 1
            task = asyncio.create_task(self._record(row, delivery.Outcome(delivery.RELEASED, label=label),
                                                    claimed_at))
            self.tasks.add(task)
            task.add_done_callback(self._done)
        self.ready = keep

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("delivery_task_failed", error=repr(task.exception()))

    async def _deliver(self, row: ClaimedRow, claimed_at: float) -> None:
        """Send one claimed row, free its slot when the answer comes, then record the outcome."""
        self.recording += 1
        outcome = delivery.Outcome(delivery.RELEASED, label="released at shutdown")  # when cancelled
        try:
            outcome = await self._send_within_lease(row, claimed_at)
            self.answered.set()
        except ConfigError as exc:
            self._stop_for(exc)  # the row is given back unsent, as at shutdown: it is not its fault
        except Exception as exc:
            # A bug of ours, not the row's: never "try again now" (that loops at the sweep rate), but an
            # outcome that backs off and ends after max_dispatch_failures.
            self.log.exception("delivery_error", generation_id=str(row.id), generator=verdicts.shown(row.generator))
            outcome = delivery.Outcome(delivery.UNREACHABLE, None, "delivery failed",
                                       f"internal error: {type(exc).__name__}")
        finally:
            self._slot_done()
            # Written even when this task is cancelled: Recorder.record() queues the outcome before its first
            # await, and the recorder keeps it until written (a row locked meanwhile included), whether or not
            # anyone still waits for its verdict. Only the retries below after a database error end with it.
            await self._record(row, outcome, claimed_at)

    async def _send_within_lease(self, row: ClaimedRow, claimed_at: float) -> delivery.Outcome:
        route = self.urls.get(row.generator)  # a name that is not a routing key is never sent
        if isinstance(route, str):
            return delivery.Outcome(delivery.UNSENDABLE, None, "never sent", route)
        async with self._per_generator.slot(row.generator):
            # A row that waited too long for a slot is given back rather than sent on a lease that could run
            # out during the delivery: sent only while connect + response time-out still fit, with a margin.
            budget = self.settings.lease_s - self.settings.connect_timeout_s - self.settings.response_timeout_s
            if time.monotonic() - claimed_at >= budget * 0.8:
                return delivery.Outcome(delivery.RELEASED, label="released before sending")
            if self.pauses.since(row.generator, claimed_at):  # paused while this row waited for its slot
                return delivery.Outcome(delivery.RELEASED, label="released: generator paused")
            if self._draining:  # shutting down while this row waited for its slot: given back, as ready rows
                return delivery.Outcome(delivery.RELEASED, label="released at shutdown")
            return await self._send(row, route)

    async def _send(self, row: ClaimedRow, url: httpx.URL) -> delivery.Outcome:
        d = Delivery(row.generator, str(row.user_id), str(row.id), row.attempt)
        try:
            body = delivery.request_body(row.request, d.retry_history_id, d.attempt)
        except delivery.Unsendable as exc:
            self.log.warning("request_unsendable", generation_id=d.retry_history_id, generator=d.generator,
                             reason=str(exc))
            return delivery.Outcome(delivery.UNSENDABLE, None, "request not sent", str(exc))
        headers = {**self._credentials(d), "Idempotency-Key": f"{d.retry_history_id}:{d.attempt}"}
        outcome = await delivery.deliver(self.client, url, headers, body,
                                         connect_timeout_s=self.settings.connect_timeout_s,
                                         response_timeout_s=self.settings.response_timeout_s)
        if outcome.kind == delivery.UNAUTHORIZED:
            self.pauses.mark(d.generator)  # it opens the circuit: no row claimed before goes out after it
        self.metrics.deliveries.labels(d.generator, outcome.kind).inc()
        self.metrics.delivery_latency.labels(d.generator).observe(outcome.duration_ms / 1000)
        self.outcomes[outcome.kind] += 1
        self.log.info("auto_retry", generation_id=d.retry_history_id, generator=d.generator, attempt=d.attempt,
                      authority=self.authority.mode, outcome=outcome.kind, status=outcome.http_status,
                      label=outcome.label, duration_ms=outcome.duration_ms)
        return outcome

    def _credentials(self, d: Delivery) -> dict[str, str]:
        try:
            return self.authority.headers(d)
        except Exception as exc:
            setting = "PROCESSOR_JWT_PRIVATE_KEY" if self.settings.jwt_private_key else "SUPABASE_JWT_SECRET"
            raise ConfigError([f"{setting}: the key cannot sign a token ({type(exc).__name__})"]) from exc

    def _stop_for(self, error: ConfigError) -> None:
        if self.fatal is None:
            self.fatal = error
            self.log.error("cannot_sign", error=str(error))
            if self.on_fatal is not None:
                self.on_fatal()
        self.slot_freed.set()

    async def _record(self, row: ClaimedRow, outcome: delivery.Outcome, claimed_at: float) -> None:
        try:
            rec = await self.recorder.record_until(row.id, row.lease_id, outcome,
                                                   give_up_at=claimed_at + self.settings.lease_s * 0.9)
        finally:
            self.recording -= 1
            self._maybe_signal()
        if rec is None:
            return
        if rec.deadline_at is not None:
            self.on_deadline(rec.deadline_at.timestamp())
        if rec.circuit == "opened":
            self.pauses.mark(row.generator)
            self._release_ready(lambda r: r.generator == row.generator, "released: generator paused")
        elif rec.circuit == "closed":
            self.pauses.clear(row.generator, claimed_before=claimed_at)
        verdicts.report(rec, row, outcome, metrics=self.metrics, log=self.log, authority=self.authority.mode)


@contextlib.asynccontextmanager
async def _nothing_lent() -> AsyncIterator[None]:
    yield None

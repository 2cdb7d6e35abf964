"""Records delivery outcomes in small batches: one transaction per batch instead of one per delivery.

An outcome waits at most `linger_s` (2 ms) for company; a batch holds at most `max_batch` outcomes; at most
`parallel` batches are in flight. record() returns the database's verdict for that one outcome.

Locks never stall it (issue 10, class 5): a row locked by another transaction comes back as 'locked' (the
rest of its batch is recorded at once) and is recorded again after a short backoff; a batch that runs into
a lock time-out (the daemon's sessions have lock_timeout) is split and only the locked outcome waits. While
outcomes wait, their leases are kept alive, and once the oldest has waited `stall_after_s` the recorder is
`stalled`: /healthz answers 503, a gauge shows the wait and one log line says which rows.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from processor.backoff import Backoff
from processor.contracts import RecordResult, Verdict
from processor.db import TRANSIENT_ERRORS
from processor.delivery import Outcome
from processor.errors import DatabaseError
from processor.logs import get_logger

RECORD_MANY = "SELECT * FROM genretry.record_deliveries($1::jsonb, $2)"
EXTEND = "SELECT genretry.extend_leases($1::jsonb, $2::float8 * interval '1 second')"
DB_ERRORS = TRANSIENT_ERRORS


@dataclass
class _Pending:
    element: dict[str, Any]
    future: asyncio.Future[Verdict | None]
    since: float = field(default_factory=time.monotonic)
    backoff: Backoff | None = None
    # The recorder keeps an outcome until it is written or given up, whoever still waits for its verdict:
    # a delivery task cancelled at the end of the grace period cancels its future, not the outcome.
    settled: bool = False


class Recorder:
    def __init__(self, pool: asyncpg.Pool, worker: str, *, linger_s: float = 0.002, max_batch: int = 200,
                 parallel: int = 2, lease_s: float = 60.0, stall_after_s: float | None = None,
                 on_give_up: Callable[[], None] = lambda: None) -> None:
        self.pool, self.worker = pool, worker
        self.on_give_up = on_give_up  # record_until() gave an outcome up (a metric counts them)
        self.linger_s, self.max_batch = linger_s, max_batch
        self.lease_s = lease_s
        self.stall_after_s = stall_after_s if stall_after_s is not None else max(5.0, min(30.0, lease_s / 4))
        self._queue: list[_Pending] = []
        self._slots = asyncio.Semaphore(parallel)
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._waiting: dict[int, _Pending] = {}  # recorded again later: locked rows
        self._retries: dict[int, asyncio.TimerHandle] = {}
        self._watch: asyncio.Task[None] | None = None
        self.stalled = False
        self.log = get_logger("recorder").bind(worker=worker)

    # --- waiting outcomes: locked rows ----------------------------------------------------------------

    def oldest_wait_s(self) -> float:
        """How long the oldest outcome that could not be recorded yet has waited (0 when none)."""
        if not self._waiting:
            return 0.0
        return time.monotonic() - min(p.since for p in self._waiting.values())

    def waiting(self) -> int:
        return len(self._waiting)

    def _again_later(self, p: _Pending) -> None:
        """The row was locked by another transaction: record this outcome again after a short backoff."""
        if p.backoff is None:
            p.backoff = Backoff(first_s=0.01, cap_s=2.0)  # most locks are a generator's own brief update
        self._waiting[id(p)] = p
        self._retries[id(p)] = asyncio.get_running_loop().call_later(p.backoff.next(), self._retry, p)
        if self._watch is None or self._watch.done():
            self._watch = asyncio.create_task(self._watch_waiting(), name="recorder-watch")

    def _retry(self, p: _Pending) -> None:
        self._retries.pop(id(p), None)
        if p.settled:
            return
        self._queue.append(p)
        self._flush_now()

    def _resolved(self, p: _Pending) -> None:
        self._waiting.pop(id(p), None)

    async def _watch_waiting(self) -> None:
        """While outcomes wait: keep their leases alive, and say so when the recorder is stalled."""
        extend_every = max(1.0, self.lease_s / 3)
        last_extend = time.monotonic()
        while self._waiting:
            await asyncio.sleep(min(1.0, self.stall_after_s / 5))
            oldest = self.oldest_wait_s()
            if oldest >= self.stall_after_s and not self.stalled:
                self.stalled = True
                self.log.error("recorder_stalled", waiting=len(self._waiting), oldest_s=round(oldest, 1),
                               generation_ids=[p.element["id"] for p in list(self._waiting.values())[:10]],
                               hint="rows locked by another transaction (an open admin transaction?): "
                                    "see pg_locks / pg_stat_activity")
            if time.monotonic() - last_extend >= extend_every:
                last_extend = time.monotonic()
                await self._extend_leases()
        if self.stalled:
            self.stalled = False
            self.log.info("recorder_recovered")

    async def _extend_leases(self) -> None:
        items = [{"id": p.element["id"], "lease_id": p.element["lease_id"]} for p in self._waiting.values()]
        try:
            await self.pool.fetch(EXTEND, json.dumps(items), self.lease_s)
        except DB_ERRORS as exc:  # next round; a lease that runs out costs a redelivery, never the outcome
            self.log.warning("lease_extension_failed", error=str(exc)[:200])

    async def record(self, row_id: Any, lease_id: Any, outcome: Outcome) -> Verdict | None:
        """Queue one outcome and wait for its verdict. Raises what the database raised for its batch."""
        element = {
            "id": str(row_id), "lease_id": str(lease_id), "outcome": outcome.kind, "http_status": outcome.http_status,
            "detail": {"label": outcome.label, "message": outcome.message, "duration_ms": outcome.duration_ms},
            "retry_after_s": outcome.retry_after_s,
        }
        future: asyncio.Future[Verdict | None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(element, future))
        if len(self._queue) >= self.max_batch:
            self._flush_now()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger_s, self._flush_now)
        return await future

    async def record_until(self, row_id: Any, lease_id: Any, outcome: Outcome, give_up_at: float) -> Verdict | None:
        """record(), again with backoff after a database error (a database restarting must not cost the outcome)
        until give_up_at (monotonic); then None, as for a row that is gone: the lease runs out and the row is
        redelivered with the same attempt, so nothing is lost. A data error is not retried."""
        backoff = Backoff(first_s=0.25, cap_s=5.0)
        while True:
            try:
                return await self.record(row_id, lease_id, outcome)
            except DB_ERRORS as exc:
                wait = backoff.next()
                if time.monotonic() + wait >= give_up_at or isinstance(exc, asyncpg.DataError):
                    self.on_give_up()
                    self.log.error("record_failed", generation_id=str(row_id), outcome=outcome.kind,
                                   error=str(exc)[:200])
                    return None
                self.log.warning("record_retry", generation_id=str(row_id), error=str(exc)[:200],
                                 retry_in_s=round(wait, 2))
                await asyncio.sleep(wait)

    def _flush_now(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._queue:
            return
        batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
        task = asyncio.create_task(self._write(batch))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)
        if self._queue:
            self._timer = asyncio.get_running_loop().call_later(self.linger_s, self._flush_now)

    async def _write(self, batch: list[_Pending]) -> None:
        try:
            async with self._slots:
                rows = await self.pool.fetch(RECORD_MANY, json.dumps([p.element for p in batch]), self.worker)
        except asyncpg.LockNotAvailableError:
            # a lock time-out (the circuit's row, say): split, so only the outcome that needs the lock waits
            if len(batch) == 1:
                self._again_later(batch[0])
                return
            for p in batch:
                await self._write([p])
            return
        except asyncpg.DataError as error:
            if len(batch) == 1:
                if batch[0].element["detail"].get("label") == UNRECORDABLE:
                    _fail(batch, error)
                    return
                # Something in what the peer said cannot be stored: the outcome still must be, or the row
                # would be redelivered when its lease runs out, again and again. Its detail is dropped.
                await self._write([_Pending(_plain(batch[0].element), batch[0].future)])
                return
            for p in batch:  # one bad element must not cost the others their record: one by one
                await self._write([p])
            return
        except DB_ERRORS as error:
            for p in batch:
                self._resolved(p)
            _fail(batch, error)
            return
        verdicts = {str(r["id"]): Verdict.of(r) for r in rows}
        for p in batch:
            verdict = verdicts.get(p.element["id"])
            if verdict is not None and verdict.result is RecordResult.LOCKED:
                self._again_later(p)
            elif not p.settled:
                self._resolved(p)
                p.settled = True
                if not p.future.done():
                    p.future.set_result(verdict)

    async def close(self) -> None:
        """Write what is queued (waiting outcomes get one more try) and wait for every batch in flight.
        What is still locked then is given up: its lease runs out and the row is delivered again, with the
        same attempt."""
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()
        waiting, self._waiting = list(self._waiting.values()), {}
        self._queue.extend(p for p in waiting if not p.settled)
        self._flush_now()
        while self._flushes:
            await asyncio.gather(*list(self._flushes), return_exceptions=True)
            self._flush_now()
        for handle in self._retries.values():
            handle.cancel()
        _fail(list(self._waiting.values()), DatabaseError("the row was still locked at shutdown"))
        self._waiting.clear()
        if self._watch is not None:
            self._watch.cancel()


UNRECORDABLE = "answer not recordable"


def _plain(element: dict[str, Any]) -> dict[str, Any]:
    return {**element, "retry_after_s": None, "detail": {"label": UNRECORDABLE}}


def _fail(batch: list[_Pending], error: BaseException) -> None:
    for p in batch:
        p.settled = True
        if not p.future.done():
            p.future.set_exception(error)

"""Records delivery outcomes in small batches: one transaction per batch instead of one per delivery.

An outcome waits at most `linger_s` (2 ms) for company; a batch holds at most `max_batch` outcomes; at most
`parallel` batches are in flight. record() returns the database's verdict for that one outcome.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from processor.db import TRANSIENT_ERRORS
from processor.delivery import Outcome

RECORD_MANY = "SELECT * FROM genretry.record_deliveries($1::jsonb, $2)"
DB_ERRORS = TRANSIENT_ERRORS


@dataclass
class _Pending:
    element: dict[str, Any]
    future: asyncio.Future[asyncpg.Record | None]


class Recorder:
    def __init__(self, pool: asyncpg.Pool, worker: str, *, linger_s: float = 0.002, max_batch: int = 200,
                 parallel: int = 2) -> None:
        self.pool, self.worker = pool, worker
        self.linger_s, self.max_batch = linger_s, max_batch
        self._queue: list[_Pending] = []
        self._slots = asyncio.Semaphore(parallel)
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    async def record(self, row_id: Any, lease_id: Any, outcome: Outcome) -> asyncpg.Record | None:
        """Queue one outcome and wait for its verdict. Raises what the database raised for its batch."""
        element = {
            "id": str(row_id), "lease_id": str(lease_id), "outcome": outcome.kind, "http_status": outcome.http_status,
            "detail": {"label": outcome.label, "message": outcome.message, "duration_ms": outcome.duration_ms},
            "retry_after_s": outcome.retry_after_s,
        }
        future: asyncio.Future[asyncpg.Record | None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(element, future))
        if len(self._queue) >= self.max_batch:
            self._flush_now()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger_s, self._flush_now)
        return await future

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
            _fail(batch, error)
            return
        verdicts = {str(r["id"]): r for r in rows}
        for p in batch:
            if not p.future.done():
                p.future.set_result(verdicts.get(p.element["id"]))

    async def close(self) -> None:
        """Write what is queued and wait for every batch in flight."""
        self._flush_now()
        while self._flushes:
            await asyncio.gather(*list(self._flushes), return_exceptions=True)
            self._flush_now()


UNRECORDABLE = "answer not recordable"


def _plain(element: dict[str, Any]) -> dict[str, Any]:
    return {**element, "retry_after_s": None, "detail": {"label": UNRECORDABLE}}


def _fail(batch: list[_Pending], error: BaseException) -> None:
    for p in batch:
        if not p.future.done():
            p.future.set_exception(error)

"""`processor run --dry-run`: what one sweep would claim and send, in a transaction that is rolled back."""

from __future__ import annotations

from typing import Any

from processor.contracts import CLAIM, ClaimAction, ClaimedRow
from processor.scheduler import Scheduler
from processor.verdicts import shown


async def dry_run(scheduler: Scheduler) -> list[dict[str, Any]]:
    """What one sweep would claim and send, inside a transaction that is rolled back."""
    seen: list[dict[str, Any]] = []
    async with scheduler.pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            for record in await conn.fetch(CLAIM, scheduler.settings.worker_id, scheduler.settings.batch_size,
                                           scheduler.settings.lease_s):
                row = ClaimedRow.of(record)
                action = "deliver" if row.action is ClaimAction.DELIVER else "fail_exhausted"
                item: dict[str, Any] = {
                        "generation_id": str(row.id), "generator": shown(row.generator), "attempt": row.attempt,
                        "action": action,
                        "url": (r := scheduler.settings.resolve(row.generator)).url or r.refusal,
                        "authority": scheduler.authority.mode}
                scheduler.log.info("would_" + action, **{k: v for k, v in item.items() if k != "action"})
                seen.append(item)
        finally:
            await tx.rollback()
    return seen


"""The Python <-> SQL contract of the daemon, as types: what genretry.claim hands out, the outcome kinds
genretry.record_delivery(ies) accepts, and the verdict it returns. One module, so a change of either side
shows up here and in mypy, not as a misspelt record key at run time.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# The daemon's two hot statements (prepared before READY, processor.warmup).
CLAIM = "SELECT * FROM genretry.claim($1, $2, $3::float8 * interval '1 second')"
# seconds to the next deadline, and the database's clock (the daemon reads hints' deadlines on that clock)
NEXT = ("SELECT extract(epoch FROM genretry.next_wakeup(clock_timestamp()) - clock_timestamp())::float8, "
        "extract(epoch FROM clock_timestamp())::float8")


class OutcomeKind(enum.StrEnum):
    """One delivery's outcome, as genretry.record_delivery names it (SPEC 4)."""

    ACCEPTED = "accepted"  # 2xx, 409: counted
    TIMEOUT = "timeout"  # no answer in time: counted (the request may be running), a circuit failure
    SERVER_ERROR = "server_error"  # 500: counted, backoff
    UNREACHABLE = "unreachable"  # refused, reset, 502/503/429, a broken answer: not counted, backoff
    UNAUTHORIZED = "unauthorized"  # 401/403: not counted; the generator's circuit opens
    REJECTED = "rejected"  # other 4xx: the row fails with the generator's message
    UNSENDABLE = "unsendable"  # the row cannot become a request (or its name is not a routing key)
    RELEASED = "released"  # never sent (shutdown): due again now, same attempt


COUNTED = frozenset({OutcomeKind.ACCEPTED, OutcomeKind.TIMEOUT, OutcomeKind.SERVER_ERROR})


class ClaimAction(enum.StrEnum):
    DELIVER = "deliver"  # leased to this worker: send it
    EXHAUSTED = "exhausted"  # its retries are spent: the claim failed it


class RecordResult(enum.StrEnum):
    RECORDED = "recorded"
    STALE = "stale"  # the lease is no longer ours (lost, forced by an admin): nothing was changed
    LOCKED = "locked"  # another transaction holds the row: record it again later


@dataclass(frozen=True, slots=True)
class ClaimedRow:
    """A row of genretry.claim."""

    id: uuid.UUID
    user_id: uuid.UUID | None
    generator: str
    request: Any  # the stored jsonb, as its text
    attempt: int
    lease_id: uuid.UUID | None
    action: ClaimAction
    error_message: str | None
    due_at: datetime | None
    retry_count: int

    @classmethod
    def of(cls, record: Any) -> ClaimedRow:
        return cls(id=record["id"], user_id=record["user_id"], generator=record["generator"],
                   request=record["request"], attempt=record["attempt"], lease_id=record["lease_id"],
                   action=ClaimAction(record["action"]), error_message=record["error_message"],
                   due_at=record["due_at"], retry_count=record["retry_count"])


@dataclass(frozen=True, slots=True)
class Verdict:
    """One row of genretry.record_deliveries: what recording an outcome did."""

    result: RecordResult
    status: str | None = None
    deadline_at: datetime | None = None
    retry_count: int | None = None
    dispatch_failures: int | None = None
    failed_with: str | None = None  # the row's error_message when this outcome failed it
    circuit: str | None = None  # 'opened' | 'closed' | None: what changed in the generator's circuit

    @classmethod
    def of(cls, record: Any) -> Verdict:
        return cls(result=RecordResult(record["result"]), status=record["status"],
                   deadline_at=record["deadline_at"], retry_count=record["retry_count"],
                   dispatch_failures=record["dispatch_failures"], failed_with=record["failed_with"],
                   circuit=record["circuit"])

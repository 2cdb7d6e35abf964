"""Replay refusal for scoped tokens: a `jti` opens one delivery, once (SPEC section 6: 409 on reuse)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol


class ReplayGuard(Protocol):
    """A guard may answer at once (MemoryReplayGuard) or later (SqlReplayGuard). One that raises makes the
    verifier answer 503 `replay_check_failed`: retried later, never taken for a replay nor let through."""

    def seen(self, jti: str) -> bool | Awaitable[bool]:
        """True when this jti was already used (a cheap pre-check, before the owner look-up)."""
        ...

    def use(self, jti: str, expires_at: float) -> bool | Awaitable[bool]:
        """Record a use atomically; False when it was used already."""
        ...


class MemoryReplayGuard:
    """Used jtis kept until their token expires, at most `capacity` of them (oldest dropped first).

    One process only: generators running several instances share a store (a table with a unique jti).
    """

    def __init__(self, capacity: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self.capacity, self.clock = capacity, clock
        self._used: OrderedDict[str, float] = OrderedDict()

    def seen(self, jti: str) -> bool:
        return jti in self._used

    def use(self, jti: str, expires_at: float) -> bool:
        now = self.clock()
        while self._used:
            oldest, expiry = next(iter(self._used.items()))
            if expiry >= now and len(self._used) < self.capacity:
                break
            del self._used[oldest]
        if jti in self._used:
            return False
        self._used[jti] = expires_at
        return True


# the expiry bounded before to_timestamp, which raises past year 294276 (the database caps it at 2 hours anyway)
USE_TOKEN = "SELECT genretry.use_token($1::text, to_timestamp(greatest(least($2::float8, 1e10), 0)))"


class _FetchVal(Protocol):
    async def fetchval(self, query: str, *args: Any) -> Any: ...


class SqlReplayGuard:
    """Used jtis in the database (genretry.use_token, genretry.token_seen): one guard for every instance of a
    generator, which a guard in memory is not. `db`: an asyncpg pool or connection of a role holding
    genretry_generator."""

    def __init__(self, db: _FetchVal) -> None:
        self.db = db

    async def seen(self, jti: str) -> bool:
        return bool(await self.db.fetchval("SELECT genretry.token_seen($1::text)", jti))

    async def use(self, jti: str, expires_at: float) -> bool:
        return bool(await self.db.fetchval(USE_TOKEN, jti, expires_at))

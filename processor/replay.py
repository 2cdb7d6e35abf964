"""Replay refusal for scoped tokens: a `jti` opens one delivery, once (SPEC section 6: 409 on reuse)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol


class ReplayGuard(Protocol):
    def seen(self, jti: str) -> bool:
        """True when this jti was already used (a cheap pre-check, before the owner look-up)."""
        ...

    def use(self, jti: str, expires_at: float) -> bool:
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

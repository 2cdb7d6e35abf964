"""One backoff for every retry loop of the daemon: first delay, doubling, a cap, ±20 % jitter."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    first_s: float = 0.5
    cap_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    uniform: Callable[[float, float], float] = field(default=random.uniform, repr=False)
    _current: float = field(default=0.0, init=False)

    def next(self) -> float:
        """The delay to wait now; the following one is longer, up to the cap."""
        self._current = self.first_s if self._current == 0.0 else min(self._current * self.factor, self.cap_s)
        return self._current * self.uniform(1 - self.jitter, 1 + self.jitter)

    def reset(self) -> None:
        """After a success: the next failure starts from the first delay again."""
        self._current = 0.0

    @property
    def failing(self) -> bool:
        return self._current != 0.0

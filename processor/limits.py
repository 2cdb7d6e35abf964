"""Each generator's own limit of deliveries in flight (PROCESSOR_GENERATOR_IN_FLIGHT)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass


@dataclass
class _Slot:
    semaphore: asyncio.Semaphore
    users: int = 0


class GeneratorLimits:
    """A semaphore per generator, kept only while in use: rows can name any number of generators, and a
    name must not cost memory for the daemon's lifetime."""

    def __init__(self, per_generator: int) -> None:
        self.per_generator = per_generator
        self._slots: dict[str, _Slot] = {}

    def __len__(self) -> int:
        return len(self._slots)

    def __iter__(self) -> Iterator[str]:
        return iter(self._slots)

    @contextlib.asynccontextmanager
    async def slot(self, generator: str) -> AsyncIterator[None]:
        held = self._slots.get(generator)
        if held is None:
            held = self._slots[generator] = _Slot(asyncio.Semaphore(self.per_generator))
        held.users += 1
        try:
            async with held.semaphore:
                yield
        finally:
            held.users -= 1
            if held.users == 0:
                del self._slots[generator]

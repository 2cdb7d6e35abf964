"""Each generator's own limit of deliveries in flight (PROCESSOR_GENERATOR_IN_FLIGHT)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
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

    def slot(self, generator: str) -> _Held:
        """`async with limits.slot(name):` one delivery to that generator."""
        return _Held(self, generator)


class _Held:
    """One delivery's hold on its generator's semaphore. A class rather than an asynccontextmanager: it is
    entered once per delivery, and the generator-based version cost a few microseconds more each time."""

    __slots__ = ("_generator", "_limits", "_slot")

    def __init__(self, limits: GeneratorLimits, generator: str) -> None:
        self._limits, self._generator = limits, generator
        self._slot: _Slot | None = None

    async def __aenter__(self) -> None:
        slots = self._limits._slots
        held = slots.get(self._generator)
        if held is None:
            held = slots[self._generator] = _Slot(asyncio.Semaphore(self._limits.per_generator))
        held.users += 1
        try:
            await held.semaphore.acquire()
        except BaseException:
            self._let_go(held)
            raise
        self._slot = held

    async def __aexit__(self, *_exc: object) -> None:
        held, self._slot = self._slot, None
        if held is not None:
            held.semaphore.release()
            self._let_go(held)

    def _let_go(self, held: _Slot) -> None:
        held.users -= 1
        if held.users == 0:
            del self._limits._slots[self._generator]

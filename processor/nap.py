"""The daemon loop's sleep: a nap that ends when its time is up or when something pokes it.

One future and one timer per nap, no tasks: a notification, a freed slot or stop ends the nap in the turn of
the event loop that brought it (asyncio.wait over Event.wait() tasks had cost two more turns and three tasks).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Nap:
    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    async def sleep(self, seconds: float) -> None:
        """Sleep until `seconds` pass or end() is called."""
        loop = asyncio.get_running_loop()
        future = self._future = loop.create_future()
        timer = loop.call_later(seconds, self.end)
        try:
            await future
        finally:
            timer.cancel()
            self._future = None

    def end(self) -> None:
        """End the current nap, if any (a no-op when awake)."""
        if self._future is not None and not self._future.done():
            self._future.set_result(None)


class PokingEvent(asyncio.Event):
    """An Event that, when set, also calls `poke` (ends the daemon's nap)."""

    def __init__(self, poke: Callable[[], None]) -> None:
        super().__init__()
        self._poke = poke

    def set(self) -> None:
        super().set()
        self._poke()

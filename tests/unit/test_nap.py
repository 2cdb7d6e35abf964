"""The daemon loop's nap: ends when its time is up, or at once when poked (stop, wake, a freed slot)."""

from __future__ import annotations

import asyncio
import time

from processor.nap import Nap, PokingEvent


async def test_a_nap_ends_when_its_time_is_up() -> None:
    nap = Nap()
    started = time.monotonic()
    await nap.sleep(0.05)
    assert 0.045 <= time.monotonic() - started < 5


async def test_a_poke_ends_the_nap_without_waiting_for_its_time() -> None:
    nap = Nap()
    event = PokingEvent(nap.end)
    asyncio.get_running_loop().call_later(0.01, event.set)
    started = time.monotonic()
    await asyncio.wait_for(nap.sleep(60), 5)
    assert event.is_set() and time.monotonic() - started < 5


async def test_a_poke_while_awake_does_not_end_the_next_nap() -> None:
    nap = Nap()
    nap.end()  # nobody sleeps: nothing to end, nothing remembered
    started = time.monotonic()
    await nap.sleep(0.05)
    assert time.monotonic() - started >= 0.045


async def test_a_cancelled_nap_leaves_no_timer_behind() -> None:
    nap = Nap()
    task = asyncio.create_task(nap.sleep(60))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    nap.end()  # no future left to settle
    assert nap._future is None

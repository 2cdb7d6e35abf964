"""Each generator's own limit of deliveries in flight: held while in use, forgotten after, cancel-safe."""

from __future__ import annotations

import asyncio

import pytest

from processor.limits import GeneratorLimits


async def test_a_generator_gets_at_most_its_limit_and_names_are_forgotten_after_use() -> None:
    limits = GeneratorLimits(2)
    inside, most = 0, 0
    release = asyncio.Event()

    async def one(name: str) -> None:
        nonlocal inside, most
        async with limits.slot(name):
            inside += 1
            most = max(most, inside)
            await release.wait()
            inside -= 1

    tasks = [asyncio.create_task(one("a")) for _ in range(5)] + [asyncio.create_task(one("b"))]
    await asyncio.sleep(0.01)
    assert inside == 3 and set(limits) == {"a", "b"}  # two of "a", one of "b"
    release.set()
    await asyncio.gather(*tasks)
    assert most == 3 and len(limits) == 0


async def test_a_delivery_cancelled_while_waiting_for_a_slot_leaves_nothing_held() -> None:
    limits = GeneratorLimits(1)
    release = asyncio.Event()

    async def hold() -> None:
        async with limits.slot("a"):
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(hold()) for _ in range(3)]
    await asyncio.sleep(0.01)
    for w in waiters:
        w.cancel()
    for w in waiters:
        with pytest.raises(asyncio.CancelledError):
            await w
    release.set()
    await holder
    assert len(limits) == 0
    async with limits.slot("a"):  # the semaphore was not left short by the cancelled waiters
        assert list(limits) == ["a"]


async def test_an_error_inside_frees_the_slot() -> None:
    limits = GeneratorLimits(1)
    with pytest.raises(RuntimeError):
        async with limits.slot("a"):
            raise RuntimeError("boom")
    assert len(limits) == 0
    await asyncio.wait_for(_enter(limits), 1)


async def _enter(limits: GeneratorLimits) -> None:
    async with limits.slot("a"):
        pass

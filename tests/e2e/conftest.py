"""End-to-end fixtures: a pool on the test database and the reference generator on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from processor import reference_generator
from processor.config import DEFAULT_GENERATORS
from tests.support.keys import GENERATOR_KEYS as KEYS


@pytest.fixture
async def generator(pool: asyncpg.Pool) -> AsyncIterator[reference_generator.Served]:
    served = await reference_generator.start(
        pool, DEFAULT_GENERATORS, KEYS, behaviour=reference_generator.Behaviour(work_s=0.2))
    yield served
    await served.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client

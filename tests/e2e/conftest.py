"""End-to-end fixtures: a pool on the test database and the reference generator on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from processor import reference_generator
from processor.authority import Keys
from processor.config import DEFAULT_GENERATORS
from tests.unit.keys import DEMO_JWT_SECRET, DEMO_SECRET_KEY, ec_pair

KEYS = Keys(secret_keys={"default": DEMO_SECRET_KEY}, jwt_secret=DEMO_JWT_SECRET, jwks={"keys": [ec_pair()[1]]})


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(db_url, min_size=1, max_size=8)
    assert p is not None
    yield p
    await p.close()


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

"""Adversary: a retry's POST handed to the httpx-aiohttp transport's own aiohttp session (Client.post_whole,
6 Dec 2026), attacked from the peer's side.

Every answer below is written byte for byte by a raw TCP peer on loopback. Each is delivered twice: by a client
whose post_whole goes to the aiohttp session itself (the new path: an httpx.Response with request=None) and by a
client over a wrapper transport, which gets the httpx.Request and the transport's handle_async_request (the path
every retry took before). deliver() must make an Outcome of every one, the same on both paths, never raise, read
at most MAX_ANSWER_BYTES and give the connection back: the aiohttp connector's acquired connections are counted
after each attack, and a pool of one connection must still serve a good delivery afterwards.
"""

from __future__ import annotations

import asyncio

import pytest

from processor import delivery, http_client
from tests.support.both_paths import (
    ATTACKS,
    JWT,
    SERVICE_KEY,
    acquired,
    deliver_to,
    direct_client,
    outcome_shown,
    settle,
    through_client,
)
from tests.support.hostile_peers import Answer, raw_peer

pytestmark = pytest.mark.hostile


# name: (kind, status)
EXPECTED: dict[str, tuple[str, int | None]] = {
    "301 echoing the token in Location": ("unreachable", 301),
    "307 to a relative path": ("unreachable", 307),
    "308 with a 2 KB Location of control bytes": ("unreachable", 308),
    "100 Continue, then 202": ("accepted", 202),
    "100 Continue, then silence": ("timeout", None),
    "103 Early Hints, then 409": ("accepted", 409),
    "101 Switching Protocols, then bytes": ("unreachable", 101),
    "Content-Length 1000, 3 bytes, then reset": ("server_error", 500),
    "Content-Length 1000, 3 bytes, then silence": ("rejected", 400),
    "chunked, a bad chunk size": ("unreachable", None),  # the whole answer is parsed at once: not HTTP
    "chunked, cut inside a chunk": ("unreachable", 503),
    "chunked, then reset": ("accepted", 202),
    "chunked and Content-Length both": ("unreachable", None),
    "HTTP/1.0, body until close": ("rejected", 400),
    "bare LF line endings": ("rejected", 410),
    "endless 200 body": ("accepted", 200),
    "endless chunked 500": ("server_error", 500),
    "10 MB 400 body of text": ("rejected", 400),
    "gzip bomb 4xx (30 MB inflated)": ("rejected", 422),
    "gzip bomb 5xx (64 MB of zeros)": ("unreachable", 503),
    "gzip, then garbage": ("rejected", 400),
    "status 2020": ("unreachable", None),
    "status line without a reason": ("accepted", 202),
    "a NUL in a header": ("unreachable", None),
    "an obs-fold header line": ("unreachable", 429),
    "Retry-After as an HTTP date in the past": ("unreachable", 503),
    "closed before any answer": ("unreachable", None),
    "reset before any answer": ("unreachable", None),
    "silence": ("timeout", None),
}


async def _one(client: http_client.Client, answer: Answer) -> tuple[delivery.Outcome, int]:
    async with raw_peer(answer) as peer:
        outcome = await deliver_to(client, peer.url)
        await settle()
        return outcome, acquired(client)


@pytest.mark.parametrize("name", list(ATTACKS))
async def test_every_answer_is_the_same_bounded_outcome_on_both_paths(name: str) -> None:
    direct, through = direct_client(), through_client()
    try:
        # both at once (each its own peer): the answers that end in a time-out cost it once
        (new, new_held), (old, old_held) = await asyncio.gather(_one(direct, ATTACKS[name]()),
                                                                _one(through, ATTACKS[name]()))
    finally:
        await direct.aclose()
        await through.aclose()
    assert outcome_shown(new) == outcome_shown(old)
    assert (new.kind, new.http_status) == EXPECTED[name]
    assert len(new.message) <= delivery.MAX_MESSAGE_CHARS
    assert len(new.label) <= 300
    assert not any(ord(c) < 32 or ord(c) == 127 for c in new.message + new.label)
    for secret in (JWT, JWT.split(".")[1], JWT.split(".")[2], SERVICE_KEY, SERVICE_KEY[10:]):
        assert secret not in new.message + new.label
    assert new.retry_after_s is None or 0 <= new.retry_after_s <= delivery.MAX_RETRY_AFTER_S
    assert (new_held, old_held) == (0, 0)  # the connection went back to the pool (or was closed)

"""At most 64 KB of an answer is ever read, after decoding; an endless answer costs that and the time-out.

Issue 10, class 2, in process: the Python heap's peak during one hostile delivery (tracemalloc) stays a few
hundred KB where reading the answer whole took hundreds of MB. The daemon's RSS with 64 such answers in
flight is measured in tests/reliability/test_hostile_answers_memory.py.
"""

from __future__ import annotations

import gzip
import tracemalloc

import pytest
from aiohttp import web

from processor import delivery
from tests.support.hostile_peers import Answer, endless, fixed, gzip_bomb, raw_peer
from tests.support.http import Stub

pytestmark = pytest.mark.hostile
MB = 2**20

CASES: dict[str, tuple[Answer, str, int]] = {  # name: (answer, kind, status)
    "512 MB body": (endless(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (512 * MB), b"x" * 65536,
                            chunked=False), "accepted", 200),
    "endless chunked answer": (endless(b"HTTP/1.1 503 X\r\nTransfer-Encoding: chunked\r\n\r\n", b"y" * 8192),
                               "unreachable", 503),
    "gzip bomb (100 MB inflated)": (fixed(gzip_bomb(500, 100)), "server_error", 500),
    # a zlib header, then empty stored blocks forever: inflates to nothing, so only the wire cap ends it
    "deflate of nothing, endless chunks": (endless(b"HTTP/1.1 202 OK\r\nContent-Encoding: deflate\r\n"
                                             b"Transfer-Encoding: chunked\r\n\r\n2\r\n\x78\xda\r\n",
                                             b"\x00\x00\x00\xff\xff" * 1000), "accepted", 202),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_a_huge_answer_is_read_to_64_kb(name: str) -> None:
    answer, kind, status = CASES[name]
    async with raw_peer(answer) as peer:
        client = delivery.make_client(max_connections=4, connect_timeout_s=1, response_timeout_s=2)
        try:
            tracemalloc.start()
            outcome = await delivery.deliver(client, f"{peer.url}/generate-website", {}, b"{}",
                                             connect_timeout_s=1, response_timeout_s=2)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            await client.aclose()
    assert (outcome.kind, outcome.http_status) == (kind, status)  # the status decided, not a time-out
    assert len(outcome.message) <= delivery.MAX_MESSAGE_CHARS
    assert peak < 2 * MB, f"{peak / MB:.1f} MB allocated during one delivery"


async def test_a_compressed_message_is_still_read() -> None:
    body = gzip.compress(b'{"error": "bad_prompt", "message": "prompt is empty"}')
    raw = b"HTTP/1.1 400 X\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    async with raw_peer(fixed(raw)) as peer:
        client = delivery.make_client(max_connections=4, connect_timeout_s=1, response_timeout_s=2)
        try:
            outcome = await delivery.deliver(client, f"{peer.url}/generate-website", {}, b"{}",
                                             connect_timeout_s=1, response_timeout_s=2)
        finally:
            await client.aclose()
    assert (outcome.kind, outcome.message) == ("rejected", "prompt is empty")


async def test_a_peers_cookies_are_neither_kept_nor_sent(stub: Stub) -> None:
    async def cookies(_request: web.Request) -> web.StreamResponse:
        response = web.json_response({}, status=202)
        for i in range(50):
            response.set_cookie(f"c{i}", "v" * 4000)
        return response

    stub.behaviours["generate-website"] = cookies
    client = delivery.make_client(max_connections=4, connect_timeout_s=1, response_timeout_s=2)
    try:
        for _ in range(2):
            outcome = await delivery.deliver(client, f"{stub.url}/generate-website", {}, b"{}",
                                             connect_timeout_s=1, response_timeout_s=2)
            assert outcome.kind == "accepted"
        assert len(client.cookies) == 0
    finally:
        await client.aclose()
    assert "cookie" not in stub.seen[1].headers

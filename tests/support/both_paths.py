"""Both ways a retry can leave the daemon (processor.http_client.Client.post_whole), for attacks from the peer's side:
`direct_client()` hands the POST to the httpx-aiohttp transport's own aiohttp session (every retry since 6 Dec 2026),
`through_client()` puts the transport behind a wrapper, so the httpx.Request is built and handed to the transport's
handle_async_request (every retry before). Plus the scripted peers those attacks use, beyond
tests/support/hostile_peers, and the pool's bookkeeping (acquired connections) to check nothing is held."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import struct
import zlib
from collections.abc import Callable
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from processor import delivery, http_client
from tests.support.hostile_peers import Answer, RawPeer, endless, fixed, gzip_bomb, never

# a token shaped like the ones the daemon mints (a JWT) and a platform service key: what a peer may echo
JWT = ("eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJyZXRyeSIsInJvbGUiOiJzZXJ2aWNlIn0"
       ".c2lnbmF0dXJlLW9mLXRoZS1tZXNzYWdlLXdpdGgtYS1wcml2YXRlLWtleQ")
SERVICE_KEY = "sb_secret_9Vx4QmT2zLr8Kp1aWc7EoN3sYd6Fh0Gj"
HEADERS = {"Authorization": f"Bearer {JWT}", "apikey": SERVICE_KEY, "Idempotency-Key": "row:1"}
CONNECT_S, RESPONSE_S = 1.0, 1.0


# --- the two ways a retry leaves ------------------------------------------------------------------------


class Delegating(httpx.AsyncBaseTransport):
    """httpx-aiohttp's transport behind a wrapper: post_whole builds the httpx.Request and hands it over."""

    def __init__(self, inner: AiohttpTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def direct_client(max_connections: int = 2) -> http_client.Client:
    client = delivery.make_client(max_connections=max_connections, connect_timeout_s=CONNECT_S,
                                  response_timeout_s=RESPONSE_S)
    assert isinstance(client.whole_transport, AiohttpTransport) and client.whole_transport.proxy is None
    return client


def through_client(max_connections: int = 2) -> http_client.Client:
    inner = delivery.make_client(max_connections=max_connections, connect_timeout_s=CONNECT_S,
                                 response_timeout_s=RESPONSE_S).whole_transport
    assert isinstance(inner, AiohttpTransport)
    return delivery.make_client(max_connections=max_connections, connect_timeout_s=CONNECT_S,
                                response_timeout_s=RESPONSE_S, transport=Delegating(inner))


def connector(client: http_client.Client) -> aiohttp.BaseConnector:
    transport = client.whole_transport
    inner = transport.inner if isinstance(transport, Delegating) else transport
    assert isinstance(inner, AiohttpTransport)
    session = inner.client
    assert isinstance(session, aiohttp.ClientSession), "no delivery went through this client yet"
    connector = session.connector
    assert connector is not None
    return connector


def acquired(client: http_client.Client) -> int:
    """Connections the pool has handed out and not had back (what its limit counts)."""
    return len(connector(client)._acquired)


async def settle() -> None:
    """A few loop turns: a connection given back by a callback (a cancelled writer's) is back after these."""
    for _ in range(5):
        await asyncio.sleep(0)


async def deliver_to(client: http_client.Client, url: str, body: bytes = b"{}",
                   headers: dict[str, str] | None = None, *, connect_s: float = CONNECT_S,
                   response_s: float = RESPONSE_S) -> delivery.Outcome:
    return await delivery.deliver(client, f"{url}/generate-website", HEADERS if headers is None else headers,
                                  body, connect_timeout_s=connect_s, response_timeout_s=response_s)


def outcome_shown(outcome: delivery.Outcome) -> tuple[Any, ...]:
    return (outcome.kind, outcome.http_status, outcome.label, outcome.message, outcome.retry_after_s)


# --- scripted peers beyond tests/support/hostile_peers ---------------------------------------------------


def keep(raw: bytes) -> Answer:
    """Write these bytes and keep the connection open (keep-alive: the next request may come on it)."""
    async def answer(_peer: RawPeer, writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()
    return answer


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), not a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def then_reset(raw: bytes) -> Answer:
    """Write these bytes, let them reach the client, then reset the connection."""
    async def answer(_peer: RawPeer, writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()
        await asyncio.sleep(0.05)
        reset(writer)
    return answer


def then_silence(raw: bytes) -> Answer:
    """Write these bytes, then nothing more, the connection left open."""
    async def answer(_peer: RawPeer, writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
    return answer


def trickle(head: bytes, every_s: float) -> Answer:
    """A status line and headers, then one byte of body every `every_s` seconds, forever."""
    async def answer(_peer: RawPeer, writer: asyncio.StreamWriter) -> None:
        writer.write(head)
        await writer.drain()
        with contextlib.suppress(asyncio.CancelledError):  # torn down with the server: not an error
            while True:
                await asyncio.sleep(every_s)
                writer.write(b"x")
                await writer.drain()
    return answer


def answer_of(head: str | bytes, body: bytes = b"") -> bytes:
    head = head.encode() if isinstance(head, str) else head
    return head + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def gzip_bomb_4xx() -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    body = c.compress(b'{"message": "' + b"A" * (30 * 2**20)) + c.flush()
    return (b"HTTP/1.1 422 X\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body)) + body


def chunks(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)


# What each peer writes after reading the request. All are delivered on both paths; what is asserted of each
# beyond "the same outcome" is in EXPECTED.
ATTACKS: dict[str, Callable[[], Answer]] = {
    # redirects: never followed; the Location, echoing our credentials, becomes a label
    "301 echoing the token in Location": lambda: fixed(answer_of(
        f"HTTP/1.1 301 Moved\r\nLocation: https://evil.example/cb?auth=Bearer%20{JWT}&k={SERVICE_KEY}")),
    "307 to a relative path": lambda: fixed(answer_of("HTTP/1.1 307 X\r\nLocation: /elsewhere")),
    "308 with a 2 KB Location of control bytes": lambda: fixed(answer_of(
        b"HTTP/1.1 308 X\r\nLocation: /\x01\x02\x1b[31m" + b"a" * 2000)),
    # informational answers
    "100 Continue, then 202": lambda: fixed(b"HTTP/1.1 100 Continue\r\n\r\n" + answer_of("HTTP/1.1 202 OK", b"{}")),
    "100 Continue, then silence": lambda: then_silence(b"HTTP/1.1 100 Continue\r\n\r\n"),
    "103 Early Hints, then 409": lambda: fixed(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + answer_of("HTTP/1.1 409 Dup", b'{"message": "dup"}')),
    "101 Switching Protocols, then bytes": lambda: fixed(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello"),
    # bodies that break off, lie or never end
    "Content-Length 1000, 3 bytes, then reset": lambda: then_reset(
        b"HTTP/1.1 500 X\r\nContent-Length: 1000\r\n\r\nabc"),
    "Content-Length 1000, 3 bytes, then silence": lambda: then_silence(
        b"HTTP/1.1 400 X\r\nContent-Length: 1000\r\n\r\n{\"m"),
    "chunked, a bad chunk size": lambda: fixed(
        b"HTTP/1.1 422 X\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks(b'{"message": "a') + b"zz\r\nb\r\n"),
    "chunked, cut inside a chunk": lambda: fixed(
        b"HTTP/1.1 503 X\r\nRetry-After: 9\r\nTransfer-Encoding: chunked\r\n\r\nffff\r\nabc"),
    "chunked, then reset": lambda: then_reset(
        b"HTTP/1.1 202 X\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks(b'{"message": "partial"}')),
    "chunked and Content-Length both": lambda: fixed(
        b"HTTP/1.1 202 X\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks(b"abc") + b"0\r\n\r\n"),
    "HTTP/1.0, body until close": lambda: fixed(b"HTTP/1.0 400 Bad\r\n\r\n" + b'{"message": "old"}' * 10),
    "bare LF line endings": lambda: fixed(b"HTTP/1.1 410 Gone\nContent-Length: 19\n\n{\"message\": \"gone\"}"),
    "endless 200 body": lambda: endless(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n", b"z" * 65536,
                                        chunked=False),
    "endless chunked 500": lambda: endless(b"HTTP/1.1 500 X\r\nTransfer-Encoding: chunked\r\n\r\n", b"q" * 8192),
    "10 MB 400 body of text": lambda: fixed(answer_of("HTTP/1.1 400 X", b"e" * (10 * 2**20))),
    "gzip bomb 4xx (30 MB inflated)": lambda: fixed(gzip_bomb_4xx()),
    "gzip bomb 5xx (64 MB of zeros)": lambda: fixed(gzip_bomb(503, 64)),
    "gzip, then garbage": lambda: fixed(answer_of("HTTP/1.1 400 X\r\nContent-Encoding: gzip",
                                                  gzip.compress(b'{"message": "half"}')[:12] + b"\xff" * 50)),
    # heads that are not HTTP, or barely
    "status 2020": lambda: fixed(answer_of("HTTP/1.1 2020 OK")),
    "status line without a reason": lambda: fixed(answer_of("HTTP/1.1 202", b"{}")),
    "a NUL in a header": lambda: fixed(answer_of(b"HTTP/1.1 503 X\r\nRetry-After: 5\x00")),
    "an obs-fold header line": lambda: fixed(answer_of("HTTP/1.1 429 X\r\nRetry-After: 1\r\n 2")),
    "Retry-After as an HTTP date in the past": lambda: fixed(answer_of(
        "HTTP/1.1 503 X\r\nRetry-After: Wed, 21 Oct 2015 07:28:00 GMT")),
    "closed before any answer": lambda: fixed(b""),
    "reset before any answer": lambda: then_reset(b""),
    "silence": never,
}

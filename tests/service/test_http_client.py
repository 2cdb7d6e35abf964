"""How a retry leaves (processor.http_client): a request built whole and posted through the transport
itself, not through httpx's client. The same request on the wire as the client's would be."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from httpx_aiohttp import AiohttpTransport

from processor import delivery, http_client
from tests.support.hostile_peers import fixed, never, raw_peer
from tests.support.http import Stub, free_port

HEADERS = {"Authorization": "Bearer t.o.k", "Idempotency-Key": "row:1", "X-Generation-Retry": "1"}


async def test_a_retry_is_the_request_the_client_would_send(stub: Stub) -> None:
    client = delivery.make_client(max_connections=2, connect_timeout_s=1, response_timeout_s=2)
    try:
        outcome = await delivery.deliver(client, f"{stub.url}/generate-website", HEADERS, b'{"a": 1}',
                                         connect_timeout_s=1, response_timeout_s=2)
        assert outcome.kind == delivery.ACCEPTED
        await client.post(f"{stub.url}/generate-website", content=b'{"a": 1}',
                          headers={**HEADERS, "Content-Type": "application/json"})
    finally:
        await client.aclose()
    whole, through_client = stub.seen
    assert whole.headers == through_client.headers
    assert whole.body == through_client.body == {"a": 1}
    for name, value in {**HEADERS, "Content-Type": "application/json", "Accept-Encoding": "identity",
                        "User-Agent": delivery.USER_AGENT, "Content-Length": "8"}.items():
        assert whole.headers[name.lower()] == value


async def test_our_headers_win_over_a_callers(stub: Stub) -> None:
    client = delivery.make_client(max_connections=2, connect_timeout_s=1, response_timeout_s=2)
    try:
        await delivery.deliver(client, f"{stub.url}/generate-website",
                               {**HEADERS, "Content-Type": "text/plain", "User-Agent": "x"}, b"{}",
                               connect_timeout_s=1, response_timeout_s=2)
    finally:
        await client.aclose()
    assert stub.seen[0].headers["content-type"] == "application/json"
    assert stub.seen[0].headers["user-agent"] == "x"  # the caller's, as with httpx's client


@contextlib.asynccontextmanager
async def forward_proxy(seen: list[bytes]) -> AsyncIterator[str]:
    """An HTTP proxy that answers every request itself with 202 and records its request head."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            seen.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def test_proxy_variables_are_not_used(stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    """As before (README, Configuration): a retry goes to its route, whatever the environment names."""
    seen: list[bytes] = []
    async with forward_proxy(seen) as proxy:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        client = delivery.make_client(max_connections=2, connect_timeout_s=1, response_timeout_s=2)
        try:
            outcome = await delivery.deliver(client, f"{stub.url}/generate-website", HEADERS, b"{}",
                                             connect_timeout_s=1, response_timeout_s=2)
        finally:
            await client.aclose()
    assert outcome.kind == delivery.ACCEPTED
    assert len(stub.seen) == 1 and seen == []


class _Delegating(httpx.AsyncBaseTransport):
    """httpx-aiohttp's transport behind a wrapper: post_whole then builds the httpx.Request and hands it to the
    transport's handle_async_request, the way every retry left before 6 Dec 2026."""

    def __init__(self, inner: AiohttpTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _both_paths() -> tuple[http_client.Client, http_client.Client]:
    """A client whose post_whole hands the POST to the aiohttp session itself, and one over the transport's
    own handle_async_request (same session settings, same time-outs)."""
    direct = delivery.make_client(max_connections=2, connect_timeout_s=1, response_timeout_s=1)
    inner = direct.whole_transport
    assert isinstance(inner, AiohttpTransport)
    # a second transport made the same way as make_client's, behind the wrapper
    other = delivery.make_client(max_connections=2, connect_timeout_s=1, response_timeout_s=1)
    other_inner = other.whole_transport
    assert isinstance(other_inner, AiohttpTransport)
    through = delivery.make_client(max_connections=2, connect_timeout_s=1, response_timeout_s=1,
                                   transport=_Delegating(other_inner))
    return direct, through


async def test_a_retry_skips_building_an_httpx_request(stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over httpx-aiohttp, the POST goes to the transport's aiohttp session: neither an httpx.Request nor the
    transport's handle_async_request is on the NOTIFY path any more (fails on the code before 6 Dec 2026)."""
    async def refuse(*_args: object, **_kwargs: object) -> httpx.Response:
        raise AssertionError("handle_async_request is not on a retry's path")

    monkeypatch.setattr(AiohttpTransport, "handle_async_request", refuse)
    monkeypatch.setattr(httpx.Request, "__init__", refuse)
    client = delivery.make_client(max_connections=2, connect_timeout_s=1, response_timeout_s=2)
    try:
        outcome = await delivery.deliver(client, f"{stub.url}/generate-website", HEADERS, b'{"a": 1}',
                                         connect_timeout_s=1, response_timeout_s=2)
    finally:
        await client.aclose()
    assert outcome.kind == delivery.ACCEPTED and outcome.http_status == 202
    assert stub.seen[0].body == {"a": 1}


async def test_both_paths_put_the_same_request_on_the_wire(stub: Stub) -> None:
    direct, through = _both_paths()
    try:
        for client in (direct, through):
            outcome = await delivery.deliver(client, f"{stub.url}/generate-website", HEADERS, b'{"a": 1}',
                                             connect_timeout_s=1, response_timeout_s=1)
            assert outcome.kind == delivery.ACCEPTED
    finally:
        await direct.aclose()
        await through.aclose()
    first, second = stub.seen
    assert first.headers == second.headers and first.body == second.body == {"a": 1}


# answers whose outcome once depended on the transport's handling: a status, a cut body, garbage, silence
SAME_OUTCOME = {
    "202 with a message": b"HTTP/1.1 202 Accepted\r\nContent-Length: 17\r\n\r\n{\"message\": \"ok\"}",
    "503 with Retry-After": b"HTTP/1.1 503 X\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n",
    "a body cut short": b"HTTP/1.1 503 X\r\nContent-Length: 1000\r\n\r\nabc",
    "status line with non-UTF-8 bytes": b"HTTP/1.1 503 Serv\xff\xfeice\r\nContent-Length: 0\r\n\r\n",
    "not HTTP at all": b"\x00\x01garbage\r\n\r\n",
    "two Content-Lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    "a 100 KB header line": b"HTTP/1.1 202 OK\r\nX-Big: " + b"a" * 100_000 + b"\r\nContent-Length: 0\r\n\r\n",
}


@pytest.mark.parametrize("name", [*SAME_OUTCOME, "silence", "refused"])
async def test_both_paths_make_the_same_outcome(name: str) -> None:
    direct, through = _both_paths()
    outcomes = []
    refused = f"http://127.0.0.1:{free_port()}/generate-website"
    try:
        for client in (direct, through):
            if name == "refused":
                url = refused
                outcomes.append(await delivery.deliver(client, url, HEADERS, b"{}", connect_timeout_s=1,
                                                       response_timeout_s=1))
                continue
            answer = never() if name == "silence" else fixed(SAME_OUTCOME[name])
            async with raw_peer(answer) as peer:
                outcomes.append(await delivery.deliver(client, f"{peer.url}/generate-website", HEADERS, b"{}",
                                                       connect_timeout_s=1, response_timeout_s=1))
    finally:
        await direct.aclose()
        await through.aclose()
    first, second = outcomes
    assert (first.kind, first.http_status, first.label, first.message, first.retry_after_s) == (
        second.kind, second.http_status, second.label, second.message, second.retry_after_s)

"""How a retry leaves (processor.http_client): a request built whole and posted through the transport
itself, not through httpx's client. The same request on the wire as the client's would be."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from httpx_aiohttp import AiohttpTransport

from processor import delivery
from tests.support.both_paths import direct_client, outcome_shown, through_client
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
    direct, through = direct_client(), through_client()
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


async def test_a_refused_connection_is_the_same_outcome_both_ways() -> None:
    """(Every kind of answer, both ways: tests/adversary/test_post_whole_answers.py.)"""
    direct, through = direct_client(), through_client()
    refused = f"http://127.0.0.1:{free_port()}/generate-website"
    try:
        outcomes = [await delivery.deliver(client, refused, HEADERS, b"{}", connect_timeout_s=1, response_timeout_s=1)
                    for client in (direct, through)]
    finally:
        await direct.aclose()
        await through.aclose()
    assert outcome_shown(outcomes[0]) == outcome_shown(outcomes[1])
    assert outcomes[0].kind == delivery.UNREACHABLE and outcomes[0].label == "connection refused"

"""Adversary: what the new path's Response (request=None) touches, redirects and echoed secrets, and the
request both ways put on the wire (tests/support/both_paths.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web
from httpx_aiohttp import AiohttpTransport

from processor import delivery, http_client
from processor.answer import MAX_ANSWER_BYTES
from tests.support.both_paths import (
    CONNECT_S,
    HEADERS,
    JWT,
    RESPONSE_S,
    SERVICE_KEY,
    acquired,
    answer_of,
    deliver_to,
    direct_client,
    outcome_shown,
    settle,
    then_reset,
    through_client,
    trickle,
)
from tests.support.hostile_peers import RawPeer, fixed, raw_peer
from tests.support.http import Stub

pytestmark = pytest.mark.hostile


# --- what the answer's Response (request=None) and the errors while reading it touch ---------------------


async def test_the_new_path_response_has_no_request_and_deliver_never_needs_one() -> None:
    """post_whole's Response carries no request (httpx raises RuntimeError on .request); the body breaking off
    in every way still yields the status and the text read before the break, as on the old path."""
    direct = direct_client()
    try:
        async with raw_peer(then_reset(b"HTTP/1.1 422 X\r\nContent-Length: 500\r\n\r\n{\"message\": \"m")) as peer:
            response = await direct.post_whole(f"{peer.url}/generate-website", HEADERS, b"{}")
            try:
                with pytest.raises(RuntimeError):
                    _ = response.request
                with pytest.raises(httpx.ReadError) as raised:
                    async for _chunk in response.aiter_raw():
                        pass
                with pytest.raises(RuntimeError):
                    _ = raised.value.request  # the error from the body has no request either ...
            finally:
                await response.aclose()
        # ... and deliver() makes an outcome of it without touching either
        async with raw_peer(then_reset(b"HTTP/1.1 422 X\r\nContent-Length: 500\r\n\r\n{\"message\": \"m")) as peer:
            outcome = await deliver_to(direct, peer.url)
    finally:
        await direct.aclose()
    assert (outcome.kind, outcome.http_status, outcome.label) == (delivery.REJECTED, 422, "422")


async def test_a_body_that_trickles_past_the_whole_delivery_deadline() -> None:
    """A byte every 50 ms never trips the socket read time-out; the whole-delivery deadline (connect + response
    + 5 s) ends it. The status still decides, on both paths, and nothing is left acquired."""
    direct, through = direct_client(), through_client()
    head = b"HTTP/1.1 429 Slow\r\nRetry-After: 30\r\nContent-Length: 100000000\r\n\r\n"
    try:
        async def one(client: http_client.Client) -> tuple[delivery.Outcome, int]:
            async with raw_peer(trickle(head, 0.05)) as peer:
                outcome = await deliver_to(client, peer.url, connect_s=0.2, response_s=0.2)
            await settle()
            return outcome, acquired(client)

        (new, new_held), (old, old_held) = await asyncio.gather(one(direct), one(through))
    finally:
        await direct.aclose()
        await through.aclose()
    assert (new.kind, new.http_status, new.retry_after_s) == (delivery.UNREACHABLE, 429, 30.0)
    assert outcome_shown(new)[:3] + outcome_shown(new)[4:] == outcome_shown(old)[:3] + outcome_shown(old)[4:]
    assert new.message.strip("x") == "" and old.message.strip("x") == ""
    assert (new_held, old_held) == (0, 0)


async def test_at_most_max_answer_bytes_reach_the_message_parser() -> None:
    """A JSON message just past MAX_ANSWER_BYTES: cut, so not JSON any more: the text (bounded) is the message."""
    body = b'{"message": "' + b"m" * MAX_ANSWER_BYTES + b'"}'
    direct = direct_client()
    try:
        async with raw_peer(fixed(answer_of("HTTP/1.1 400 X", body))) as peer:
            outcome = await deliver_to(direct, peer.url)
    finally:
        await direct.aclose()
    assert outcome.kind == delivery.REJECTED
    assert outcome.message.startswith('{"message": "mmm') and len(outcome.message) == delivery.MAX_MESSAGE_CHARS


# --- redirects and secrets --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_to_a_live_generator_is_never_followed(stub: Stub, status: int) -> None:
    direct = direct_client()
    try:
        raw = answer_of(f"HTTP/1.1 {status} X\r\nLocation: {stub.url}/generate-website")
        async with raw_peer(fixed(raw)) as peer:
            outcome = await deliver_to(direct, peer.url)
            assert peer.requests == 1
    finally:
        await direct.aclose()
    assert stub.seen == []  # the Location was not visited
    assert (outcome.kind, outcome.http_status) == (delivery.UNREACHABLE, status)
    assert outcome.label == f"redirect {status} to {stub.url}/generate-website"


def _echo_app(shape: str) -> web.Application:
    """A generator that echoes what it was sent, in one of several shapes."""
    async def handle(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        key = request.headers.get("apikey", "")
        if shape == "message":
            return web.json_response({"message": f"token {auth} and key {key} refused"}, status=401)
        if shape == "headers dump":
            return web.json_response({"headers": dict(request.headers)}, status=400)
        if shape == "text":
            return web.Response(text=f"you sent: {auth} / {key}\n" * 3, status=503)
        if shape == "error field":
            return web.json_response({"error": f"{auth}|{key}"}, status=403)
        if shape == "reason phrase":
            return web.Response(status=500, reason=f"Bad {auth[:60]}", text="")
        raise AssertionError(shape)
    app = web.Application()
    app.router.add_post("/{generator}", handle)
    return app


@pytest.mark.parametrize("shape", ["message", "headers dump", "text", "error field", "reason phrase"])
async def test_an_echoed_authorization_never_reaches_an_outcome(shape: str) -> None:
    from tests.support.http import serve_app_on_loopback

    runner, url = await serve_app_on_loopback(_echo_app(shape))
    direct, through = direct_client(), through_client()
    try:
        new, old = await deliver_to(direct, url), await deliver_to(through, url)
    finally:
        await direct.aclose()
        await through.aclose()
        await runner.cleanup()
    if shape == "headers dump":  # the same headers, in each path's own order and case (the old path's are
        # lower case on the wire: httpx.Headers.items() hands aiohttp the lower-cased names)
        def names(message: str) -> dict[str, str]:
            return {k.lower(): v for k, v in json.loads(message)["headers"].items()}
        assert names(new.message) == names(old.message)
        assert outcome_shown(new)[:3] + outcome_shown(new)[4:] == outcome_shown(old)[:3] + outcome_shown(old)[4:]
    else:
        assert outcome_shown(new) == outcome_shown(old)
    assert new.http_status in (401, 400, 503, 403, 500)
    shown = new.message + " " + new.label
    for secret in (JWT, f"Bearer {JWT}", JWT.split(".")[1], JWT.split(".")[2], SERVICE_KEY, SERVICE_KEY[10:]):
        assert secret not in shown


# --- the paths agree on the request -------------------------------------------------------------------------


async def _heads_of(client: http_client.Client, body: bytes, headers: dict[str, str]) -> bytes:
    seen: list[bytes] = []

    async def record(_peer: RawPeer, writer: asyncio.StreamWriter) -> None:
        writer.write(answer_of("HTTP/1.1 202 OK", b"{}"))
        await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        seen.append(head + await reader.readexactly(length))
        await record(RawPeer(), writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        outcome = await delivery.deliver(client, f"http://127.0.0.1:{port}/generate-website", headers, body,
                                         connect_timeout_s=CONNECT_S, response_timeout_s=RESPONSE_S)
        assert outcome.kind == delivery.ACCEPTED
    finally:
        server.close()
        await server.wait_closed()
    (wire,) = seen
    return wire


def _normalised(wire: bytes) -> list[bytes]:
    """The request line, the header lines in any order (names in any case; the Host's port aside: each path
    had its own peer), the body."""
    head, _, body = wire.partition(b"\r\n\r\n")
    first, *lines = head.split(b"\r\n")
    lines = [b"host: 127.0.0.1" if line.lower().startswith(b"host: 127.0.0.1:") else line.lower() for line in lines]
    return [first, *sorted(lines), body]


@pytest.mark.parametrize("case", ["plain", "a caller's header of its own in lower case", "a 5 MB body",
                                  "an empty body", "a UTF-8 body"])
async def test_both_paths_send_the_same_bytes(case: str) -> None:
    headers = dict(HEADERS)
    body = b'{"a": 1}'
    if case == "a caller's header of its own in lower case":
        headers["x-generation-retry"] = "1"
    elif case == "a 5 MB body":
        body = b'{"a": "' + b"b" * (5 * 2**20) + b'"}'
    elif case == "an empty body":
        body = b""
    elif case == "a UTF-8 body":
        body = '{"prompt": "Bäckerei – 日本語 🍞"}'.encode()
    direct, through = direct_client(), through_client()
    try:
        new, old = await _heads_of(direct, body, headers), await _heads_of(through, body, headers)
    finally:
        await direct.aclose()
        await through.aclose()
    assert _normalised(new) == _normalised(old)
    assert new.endswith(b"\r\n\r\n" + body)


async def test_a_caller_header_named_in_another_case_is_sent_once() -> None:
    """A caller's `accept` / `content-type` in lower case beside ours: the new path sends one value of each (the
    caller's Accept, as httpx's client would; our Content-Type, as for the same name in our case). (The old path,
    through httpx.Headers, joined both values into one line: "*/*, application/json".)"""
    direct = direct_client()
    try:
        wire = await _heads_of(direct, b"{}", {**HEADERS, "accept": "application/json", "content-type": "text/plain"})
    finally:
        await direct.aclose()
    lines = [line.lower() for line in wire.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]]
    assert [line for line in lines if line.startswith(b"accept:")] == [b"accept: application/json"]
    assert [line for line in lines if line.startswith(b"content-type:")] == [b"content-type: application/json"]


async def test_an_answer_before_the_body_is_read_leaves_no_half_request_on_a_reused_connection() -> None:
    """The peer answers 202 after the head, before reading an 8 MB body, and reads the rest only later: the next
    delivery must not be appended to the first one's unfinished body on the same connection."""
    received: list[bytearray] = []
    resume = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = bytearray()
        received.append(data)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            data += await reader.readuntil(b"\r\n\r\n")
            writer.write(answer_of("HTTP/1.1 202 OK", b"{}"))
            await writer.drain()
            await resume.wait()
            while chunk := await reader.read(1 << 20):
                data += chunk
                if data.endswith(b"}") and b"second" in data:
                    writer.write(answer_of("HTTP/1.1 202 OK", b"{}"))
                    await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    big = b'{"a": "' + b"x" * (8 * 2**20 - 20) + b'"}'
    direct = direct_client(1)
    try:
        first = await deliver_to(direct, url, big)
        second_task = asyncio.create_task(deliver_to(direct, url, b'{"second": 1}'))
        await asyncio.sleep(0.2)
        resume.set()
        second = await second_task
    finally:
        await direct.aclose()
        server.close()
        await server.wait_closed()
    assert (first.kind, second.kind) == (delivery.ACCEPTED, delivery.ACCEPTED)
    assert len(received) == 2  # a fresh connection for the second
    assert b"second" not in received[0]
    assert bytes(received[1]).endswith(b'\r\n\r\n{"second": 1}')


# --- the transport's session, made lazily ------------------------------------------------------------------


async def test_concurrent_first_deliveries_make_one_session(stub: Stub) -> None:
    """The session is made on the first delivery (the transport holds a factory until then): twenty first
    deliveries at once must share one session, else the others' sessions and connections leak."""
    client = direct_client(4)
    transport = client.whole_transport
    assert isinstance(transport, AiohttpTransport) and not isinstance(transport.client, aiohttp.ClientSession)
    sessions: set[int] = set()
    original = aiohttp.ClientSession.__init__

    def counting(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> None:
        sessions.add(id(self))
        original(self, *args, **kwargs)

    try:
        aiohttp.ClientSession.__init__ = counting  # type: ignore[method-assign]
        try:
            outcomes = await asyncio.gather(*(deliver_to(client, stub.url) for _ in range(20)))
        finally:
            aiohttp.ClientSession.__init__ = original  # type: ignore[method-assign]
        assert [o.kind for o in outcomes] == [delivery.ACCEPTED] * 20
        assert len(sessions) == 1
    finally:
        await client.aclose()

"""The daemon's one HTTP client: httpx's API over the httpx-aiohttp transport, keep-alive and bounded.

deliver() (processor.delivery) posts through the client's transport itself (Client.post_whole), with a
request it builds whole, rather than through `client.send`: what the client adds on top of its transport is
what a retry never uses (authentication flows, redirects, which are never followed, cookies, which are never
kept, event hooks), and it cost about a fifth of a delivery's CPU (docs/BENCHMARKS.md). Proxy variables of
the environment (HTTP_PROXY and the like) are not used, as before: httpx ignores them for a client given its
own transport.

Over httpx-aiohttp's transport, post_whole() goes one step further: it hands the POST to the transport's own
aiohttp session, under the transport's own exception mapping, and wraps the answer in the transport's own
response stream, as AiohttpTransport.handle_async_request does, without first building an httpx.Request for
the transport to take apart again. Building it was 0.1-0.15 ms of the NOTIFY path after an idle moment
(docs/BENCHMARKS.md, 6 Dec 2026). Any other transport (a test's) gets the httpx.Request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from http.cookiejar import CookieJar
from typing import Any

import aiohttp
import httpx
import yarl
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import AiohttpResponseStream, map_aiohttp_exceptions

from processor import __version__
from processor.answer import MAX_ANSWER_BYTES

USER_AGENT = f"generation-processor/{__version__}"
# sent with every request (the ones httpx's client would add, ours included)
BASE_HEADERS: Mapping[str, str] = {"Accept": "*/*", "Accept-Encoding": "identity", "Connection": "keep-alive",
                                   "User-Agent": USER_AGENT}
JSON: Mapping[str, str] = {"Content-Type": "application/json"}


class Client(httpx.AsyncClient):
    """make_client's client: httpx's for anything, and post_whole() for a retry."""

    def __init__(self, transport: httpx.AsyncBaseTransport, timeout: httpx.Timeout, **kwargs: Any) -> None:
        super().__init__(transport=transport, timeout=timeout, **kwargs)
        self.whole_transport = transport
        self.timeouts = timeout.as_dict()
        # the transport's mapping of httpx's time-outs (its handle_async_request), made once
        self._aiohttp_timeout = aiohttp.ClientTimeout(sock_connect=timeout.connect, sock_read=timeout.read,
                                                      connect=timeout.pool)

    def whole_request(self, url: str | httpx.URL, headers: Mapping[str, str], body: bytes) -> httpx.Request:
        """A POST of a JSON body, with the client's headers and time-outs."""
        return httpx.Request("POST", url, headers={**BASE_HEADERS, **headers, **JSON}, content=body,
                             extensions={"timeout": self.timeouts})

    async def post_whole(self, url: str | httpx.URL, headers: Mapping[str, str], body: bytes) -> httpx.Response:
        """POST a JSON body through the transport itself: a streamed response, to be closed by the caller."""
        transport = self.whole_transport
        if not isinstance(transport, AiohttpTransport) or transport.proxy is not None:
            return await transport.handle_async_request(self.whole_request(url, headers, body))
        # the transport's own steps (httpx-aiohttp 0.1.8+), given what its request would have held
        with map_aiohttp_exceptions():
            answer = await _session(transport).request(
                "POST", str(url), headers={**BASE_HEADERS, **headers, **JSON}, data=body or None,
                allow_redirects=False, auto_decompress=False, compress=False, timeout=self._aiohttp_timeout,
            ).__aenter__()
        try:
            extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
            if answer.reason:  # a peer's bytes, kept by aiohttp as surrogate escapes: never a reason to raise
                extensions["reason_phrase"] = answer.reason.encode("utf-8", "replace")
            return httpx.Response(status_code=answer.status, headers=answer.raw_headers,
                                  stream=AiohttpResponseStream(answer), extensions=extensions)
        except BaseException:
            # nobody else holds the answer yet: its connection goes now, or it stays out of the pool for as long
            # as the peer trickles (the transport's own handle_async_request has that leak: docs/RELIABILITY.md)
            answer.close()
            raise

    async def preconnect(self, url: httpx.URL, timeout_s: float) -> bool:
        """Open one keep-alive connection to the URL's origin and leave it in the transport's pool, sending
        nothing (TCP, and TLS for https): the first delivery after a start then pays no handshake. False when
        the transport is not httpx-aiohttp's. The connection closes after the keep-alive expiry if unused."""
        transport = self.whole_transport
        if not isinstance(transport, AiohttpTransport):
            return False
        session = _session(transport)
        if session.connector is None:
            return False
        # the same connection key as a delivery's request: origin, TLS on https, no proxy (aiohttp's
        # documented BaseConnector.connect, which a request itself calls)
        request = aiohttp.ClientRequest("POST", yarl.URL(str(url)), loop=asyncio.get_running_loop())
        connection = await session.connector.connect(request, [], aiohttp.ClientTimeout(total=timeout_s))
        connection.release()
        return True


def _session(transport: AiohttpTransport) -> aiohttp.ClientSession:
    """The transport's aiohttp session, made now if no request has made it yet (what its first would do)."""
    if not isinstance(transport.client, aiohttp.ClientSession):
        transport.client = transport.get_client()
    return transport.client


class _NoCookies(CookieJar):
    """A peer's cookies are neither kept (memory) nor sent to the next generator."""

    def extract_cookies(self, *_args: Any, **_kwargs: Any) -> None:
        return None

    def set_cookie(self, *_args: Any, **_kwargs: Any) -> None:
        return None


class _IdleCheckedConnector(aiohttp.TCPConnector):
    """aiohttp's connector, except that a kept-alive connection on which the peer wrote while it sat idle is
    closed, not reused: aiohttp parses such bytes into the connection's queue, and the next request on it (the
    next row's) would take an answer nobody asked for as its own (a refused retry recorded as accepted).
    `should_close` is the protocol's own test for "do not pool this"; it is not asked again at reuse."""

    async def connect(self, req: aiohttp.ClientRequest, traces: Any, timeout: aiohttp.ClientTimeout) -> Any:  # noqa: ASYNC109 (aiohttp's signature)
        idle = getattr(self, "_conns", {}).get(req.connection_key, ())
        for proto, _since in tuple(idle):
            if proto.should_close:
                proto.close()  # closed: the connector then skips it (is_connected() is false) and drops it
        return await super().connect(req, traces, timeout)


def make_client(*, max_connections: int, connect_timeout_s: float, response_timeout_s: float,
                transport: httpx.AsyncBaseTransport | None = None) -> Client:
    """One shared client: keep-alive, bounded connections, no redirects, no cookies, uncompressed answers."""
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)

    def session() -> aiohttp.ClientSession:
        # aiohttp's own cookie jar off too; a small read buffer bounds what a fast peer queues per connection
        connector = _IdleCheckedConnector(limit=max_connections, keepalive_timeout=limits.keepalive_expiry)
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                     read_bufsize=MAX_ANSWER_BYTES, auto_decompress=False)

    transport = transport or AiohttpTransport(limits=limits, client=session)
    timeout = httpx.Timeout(connect=connect_timeout_s, read=response_timeout_s, write=response_timeout_s, pool=None)
    client = Client(
        transport=transport,
        timeout=timeout,
        headers=BASE_HEADERS,
        cookies=_NoCookies(),  # a CookieJar is used as it is (a Cookies would be copied into a new jar)
        follow_redirects=False,
    )
    # httpx hands every response to its cookie store, which first builds urllib request and response
    # copies for the jar (about 4 % of a delivery's CPU) only for our jar to ignore them: skipped here.
    setattr(client.cookies, "extract_cookies", _ignore)  # noqa: B010
    return client


def _ignore(*_args: Any) -> None:
    return None

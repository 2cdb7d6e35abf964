"""One HTTP delivery becomes an Outcome. The classification of responses is a pure table (SPEC 4).

httpx's API over the httpx-aiohttp transport. httpx and aiohttp exceptions become outcomes here, once.
The aiohttp exception is kept as __cause__ and is what tells a refused connection from a reset one.
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from processor import __version__, scrub

USER_AGENT = f"generation-processor/{__version__}"
MAX_MESSAGE_CHARS = 500
MAX_RETRY_AFTER_S = 3600.0

# Outcome kinds, as genretry.record_delivery names them.
ACCEPTED, TIMEOUT, SERVER_ERROR = "accepted", "timeout", "server_error"
UNREACHABLE, UNAUTHORIZED, REJECTED, RELEASED = "unreachable", "unauthorized", "rejected", "released"
COUNTED = frozenset({ACCEPTED, TIMEOUT, SERVER_ERROR})


@dataclass(frozen=True)
class Outcome:
    """What became of one delivery."""

    kind: str
    http_status: int | None = None
    label: str = ""  # short, for reasons and logs: "202", "503", "connection refused"
    message: str = ""  # the generator's own words, when it gave any
    retry_after_s: float | None = None
    duration_ms: float = 0.0

    @property
    def counted(self) -> bool:
        return self.kind in COUNTED


def classify_status(status: int) -> str:
    """The SPEC section 4 table for an HTTP status."""
    if 200 <= status < 300 or status == 409:
        return ACCEPTED
    if status == 504:
        return TIMEOUT
    if status in (502, 503, 429) or 300 <= status < 400:
        return UNREACHABLE  # not taken (a redirect means the route is wrong; it is never followed)
    if status in (401, 403):
        return UNAUTHORIZED
    if status >= 500:
        return SERVER_ERROR
    return REJECTED  # 400, 404, 410, 422 and any other 4xx


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), capped at an hour; None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    delta = when.timestamp() - (time.time() if now is None else now)
    return min(max(delta, 0.0), MAX_RETRY_AFTER_S)


def classify_error(exc: BaseException, response_timeout_s: float) -> Outcome:
    """A delivery that got no response: sent (time-out) or not (unreachable)."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    if isinstance(exc, (httpx.ReadTimeout, TimeoutError)) or isinstance(cause, aiohttp.SocketTimeoutError):
        return Outcome(TIMEOUT, None, f"no answer within {response_timeout_s:g} s")
    label = "connection failed"
    os_error = getattr(cause, "os_error", cause)
    if isinstance(cause, aiohttp.ClientConnectorDNSError):
        label = "DNS lookup failed"
    elif isinstance(cause, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)):
        label = "TLS handshake failed"
    elif isinstance(cause, aiohttp.ConnectionTimeoutError) or (
            isinstance(exc, httpx.ConnectTimeout) and not isinstance(cause, aiohttp.ClientConnectionError)):
        label = "connect timeout"
    elif isinstance(os_error, ConnectionRefusedError) or getattr(os_error, "errno", None) == errno.ECONNREFUSED:
        label = "connection refused"
    elif isinstance(cause, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError,
                            httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        # No response came back. Counted as not delivered: the redelivery reuses the attempt and its
        # Idempotency-Key, so a generator that did get the request answers 409 and the retry counts then.
        label = "connection reset"
    elif isinstance(exc, httpx.WriteTimeout):
        label = "request could not be sent in time"
    message = clean(str(cause)) if str(cause) else type(cause).__name__
    return Outcome(UNREACHABLE, None, label, message)


def make_client(*, max_connections: int, connect_timeout_s: float, response_timeout_s: float,
                transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """One shared client: keep-alive, bounded connections, no redirects, our User-Agent."""
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return httpx.AsyncClient(
        transport=transport or AiohttpTransport(limits=limits),
        timeout=httpx.Timeout(connect=connect_timeout_s, read=response_timeout_s, write=response_timeout_s,
                              pool=None),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
    )


async def deliver(client: httpx.AsyncClient, url: str, headers: dict[str, str], body: dict[str, Any], *,
                  connect_timeout_s: float, response_timeout_s: float) -> Outcome:
    """POST one retry and classify what came back. Never raises for a peer's behaviour."""
    started = time.perf_counter()
    payload = json.dumps(body, ensure_ascii=False).encode()
    try:
        # the whole delivery is bounded too: a peer trickling bytes must not outlive the lease
        async with asyncio.timeout(connect_timeout_s + response_timeout_s + 5):
            response = await client.post(url, content=payload,
                                         headers={**headers, "Content-Type": "application/json"})
            text = await _read_text(response)
    except (httpx.HTTPError, aiohttp.ClientError, OSError, TimeoutError) as exc:
        outcome = classify_error(exc, response_timeout_s)
        return Outcome(outcome.kind, None, outcome.label, outcome.message, None, _ms(started))
    kind = classify_status(response.status_code)
    retry_after = parse_retry_after(response.headers.get("retry-after")) if kind == UNREACHABLE else None
    label = str(response.status_code)
    if 300 <= response.status_code < 400:
        label = f"redirect {response.status_code} to {clean(response.headers.get('location', '?'), 200)}"
    return Outcome(kind, response.status_code, label, _message(text), retry_after, _ms(started))


async def _read_text(response: httpx.Response, limit: int = 65536) -> str:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    await response.aclose()
    return b"".join(chunks)[:limit].decode("utf-8", "replace")


_CONTROL = dict.fromkeys(range(32), " ") | {0x7F: " "}


def clean(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """A peer's text made safe to store and log: no credentials, no NUL or control characters."""
    return " ".join(scrub.scrub(text).translate(_CONTROL).split())[:limit]  # scrubbed before the cut


def _message(text: str) -> str:
    """The generator's message: JSON {"message"|"error": ...} when it sent one, else its text."""
    try:
        data = json.loads(text)
    except ValueError:
        return clean(text)
    if isinstance(data, dict):
        for key in ("message", "error", "msg", "detail"):
            value = data.get(key)
            if isinstance(value, str):
                return clean(value)
    return clean(text)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)

"""One HTTP delivery becomes an Outcome. The classification of responses is a pure table (SPEC 4).

httpx's API over the httpx-aiohttp transport. Every exception of the exchange becomes an outcome here, once:
whatever a peer answers (or fails to), deliver() returns an Outcome of the SPEC 4 table and never raises.
The aiohttp exception is kept as __cause__ and is what tells a refused connection from a reset one.

The map of this module: the URL comes from processor.routing (Settings.resolve); request_body() builds the
body from the stored row; deliver() sends it and reads at most MAX_ANSWER_BYTES of the answer (answer.py);
peer_text() is the one place where a peer's words become text that is stored or logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import errno
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx

from processor import scrub
from processor.answer import MAX_ANSWER_BYTES, read_answer
from processor.contracts import COUNTED, OutcomeKind
from processor.http_client import USER_AGENT, Client, make_client

MAX_MESSAGE_CHARS = 500
MAX_RETRY_AFTER_S = 3600.0
MAX_REQUEST_BYTES = 8 * 1024 * 1024  # a stored request larger than this is never sent
MAX_REQUEST_DEPTH = 256  # nor one nesting deeper than this: generators' JSON parsers have limits too

# Outcome kinds (processor.contracts), by their short names.
ACCEPTED, TIMEOUT, SERVER_ERROR = OutcomeKind.ACCEPTED, OutcomeKind.TIMEOUT, OutcomeKind.SERVER_ERROR
UNREACHABLE, UNAUTHORIZED, REJECTED = OutcomeKind.UNREACHABLE, OutcomeKind.UNAUTHORIZED, OutcomeKind.REJECTED
RELEASED, UNSENDABLE = OutcomeKind.RELEASED, OutcomeKind.UNSENDABLE

__all__ = ["MAX_ANSWER_BYTES", "USER_AGENT", "Client", "Outcome", "Unsendable", "classify_status", "deliver",
           "make_client", "parse_retry_after", "peer_text", "request_body"]


@dataclass(frozen=True)
class Outcome:
    """What became of one delivery."""

    kind: OutcomeKind
    http_status: int | None = None
    label: str = ""  # short, for reasons and logs: "202", "503", "connection refused"
    message: str = ""  # the generator's own words, when it gave any (always through peer_text)
    retry_after_s: float | None = None
    duration_ms: float = 0.0

    @property
    def counted(self) -> bool:
        return self.kind in COUNTED


class Unsendable(Exception):
    """The stored row cannot become a request: its fault, not the generator's (the row fails, unsent)."""


# --- building the request ---------------------------------------------------------------------------

_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def request_body(stored: Any, retry_history_id: str, attempt: int) -> bytes:
    """The row's `request` object plus retryHistoryId and retryAttempt, as JSON bytes.

    The stored jsonb text is spliced, not parsed: json.loads of a request nesting thousands deep raises
    RecursionError. Our keys come last, so they win over the same keys in the stored request (JSON parsers
    keep the last of duplicate keys). Raises Unsendable for a request that is not an object, too large or
    too deep.
    """
    text = stored if isinstance(stored, str) else _dumps(stored)
    text = text.strip()
    if not text.startswith("{") or not text.endswith("}"):
        raise Unsendable("the stored request is not a JSON object")
    size = len(text.encode())
    if size > MAX_REQUEST_BYTES:
        raise Unsendable(f"the stored request is {size / 2**20:.1f} MB, over the "
                         f"{MAX_REQUEST_BYTES // 2**20} MB limit")
    if _depth_over(text, MAX_REQUEST_DEPTH):
        raise Unsendable(f"the stored request nests deeper than {MAX_REQUEST_DEPTH} levels")
    inner = text[1:-1].strip()
    ours = f'"retryHistoryId": {json.dumps(retry_history_id)}, "retryAttempt": {int(attempt)}'
    return ("{" + (inner + ", " if inner else "") + ours + "}").encode()


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise Unsendable(f"the stored request cannot be serialised ({type(exc).__name__})") from None


def _depth_over(text: str, limit: int) -> bool:
    if text.count("{") + text.count("[") <= limit:
        return False  # cannot nest deeper than it has brackets: the common case costs two counts
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > limit:
                return True
        elif token in "]}":
            depth -= 1
    return False


# --- classifying ------------------------------------------------------------------------------------

def classify_status(status: int) -> OutcomeKind:
    """The SPEC section 4 table for an HTTP status."""
    if status < 200 or status > 599 or status == 408:
        return UNREACHABLE  # not an answer from a generator at all: no verdict on the row
    if status < 300 or status == 409:
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


_DELTA_SECONDS = re.compile(r"[0-9]{1,10}")  # ASCII digits only: str.isdigit() also takes '²' and '١'


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), capped at an hour; None when absent or bad."""
    if not value:
        return None
    value = value.strip()[:64]
    if _DELTA_SECONDS.fullmatch(value):
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
        delta = when.timestamp() - (time.time() if now is None else now)
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(delta, 0.0), MAX_RETRY_AFTER_S)


def classify_error(exc: BaseException, response_timeout_s: float) -> Outcome:
    """A delivery that got no usable response: sent (time-out) or the peer's fault (unreachable)."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    if isinstance(exc, (httpx.ReadTimeout, TimeoutError)) or isinstance(cause, aiohttp.SocketTimeoutError):
        return Outcome(TIMEOUT, None, f"no answer within {response_timeout_s:g} s")
    label = "invalid answer"  # anything not known below: the peer said something we cannot take as HTTP
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
                            httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, OSError)):
        # No response came back. Counted as not delivered: the redelivery reuses the attempt and its
        # Idempotency-Key, so a generator that did get the request answers 409 and the retry counts then.
        label = "connection reset"
    elif isinstance(exc, httpx.WriteTimeout):
        label = "request could not be sent in time"
    elif isinstance(exc, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        label = "invalid URL"
    elif isinstance(cause, aiohttp.ClientConnectionError):
        label = "connection failed"
    message = peer_text(str(cause)) or type(cause).__name__
    return Outcome(UNREACHABLE, None, label, message)


# --- sending ----------------------------------------------------------------------------------------


async def deliver(client: Client, url: str | httpx.URL, headers: Mapping[str, str], body: bytes, *,
                  connect_timeout_s: float, response_timeout_s: float) -> Outcome:
    """POST one retry and classify what came back. Never raises for a peer's behaviour (only cancellation)."""
    started = time.perf_counter()
    # the whole delivery is bounded too: a peer trickling bytes must not outlive the lease
    deadline = asyncio.get_running_loop().time() + connect_timeout_s + response_timeout_s + 5
    response: httpx.Response | None = None
    raw = b""
    try:
        async with asyncio.timeout_at(deadline):
            response = await client.post_whole(url, headers, body)  # processor.http_client
            raw = await read_answer(response)
    except Exception as exc:  # any failure of the exchange is the peer's: an outcome, never an exception
        if response is None:
            outcome = classify_error(exc, response_timeout_s)
            return Outcome(outcome.kind, None, outcome.label, outcome.message, None, _ms(started))
        # The status is the verdict; a body that breaks off, trickles or cannot be decoded only costs its text.
        raw = b""
    finally:
        if response is not None:
            with contextlib.suppress(Exception):
                await response.aclose()
    return _outcome_of(response, raw, started)


def _outcome_of(response: httpx.Response, raw: bytes, started: float) -> Outcome:
    status = response.status_code
    kind = classify_status(status)
    retry_after = parse_retry_after(response.headers.get("retry-after")) if kind == UNREACHABLE else None
    label = str(status)
    if 300 <= status < 400:
        label = f"redirect {status} to {peer_text(response.headers.get('location', '?'), 200)}"
    return Outcome(kind, status, label, _message(raw.decode("utf-8", "replace")), retry_after, _ms(started))


# --- peer text --------------------------------------------------------------------------------------

_CONTROL = dict.fromkeys(range(32), " ") | {0x7F: " "}


def peer_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """A peer's words made safe to store and log: the one door from an answer to a message, a label or a log.

    Credentials redacted first (before any cut, so a cut cannot leave half a secret: processor.scrub), then
    no NUL, control characters or lone surrogates (jsonb refuses \\u0000 and \\udcff), runs of blanks
    folded, at most `limit` characters.
    """
    text = scrub.scrub(text)[: limit * 4].encode("utf-8", "replace").decode("utf-8")
    return " ".join(text.translate(_CONTROL).split())[:limit]


def _message(text: str) -> str:
    """The generator's message: JSON {"message"|"error": ...} when it sent one, else its text."""
    data: Any = None
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):  # a body nesting thousands deep is just text
            data = None
    if isinstance(data, dict):
        for key in ("message", "error", "msg", "detail"):
            value = data.get(key)
            if isinstance(value, str):
                return peer_text(value)
    return peer_text(text)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)

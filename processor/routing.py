"""Generator name -> URL. A row's `generator` is a routing key, never a path (SPEC 3.1).

Only names of the form [a-z0-9][a-z0-9_-]{0,62} are dispatched; when routes are configured, only the
configured names (routes and PROCESSOR_GENERATORS). The name becomes one quoted path segment under
FUNCTIONS_URL, and the URL httpx would send is checked to stay under that base path: a name that fails
any of this is refused with a reason, and no request is sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from urllib.parse import quote

import httpx

NAME_PATTERN = "[a-z0-9][a-z0-9_-]{0,62}"
_NAME = re.compile(NAME_PATTERN, re.ASCII)
SHOWN_CHARS = 80  # of a refused name, in messages: rows may hold megabytes in `generator`
MAX_PARSED = 1024  # URLs kept parsed: rows may name any number of generators


class Unroutable(ValueError):
    """A generator name that must not be dispatched; the message says why, for the row's error_message."""


@dataclass(frozen=True)
class Route:
    """Where one generator's retries go: a URL, or the reason none is sent."""

    url: str = ""
    refusal: str = ""


def is_name(generator: str) -> bool:
    """True for a well-formed routing key (SPEC 3.1)."""
    return _NAME.fullmatch(generator) is not None


def show(generator: str) -> str:
    """A name as it may appear in a message or a log: escaped (no control or escape characters), bounded."""
    shown = ascii(generator[:SHOWN_CHARS])
    return shown + ("…" if len(generator) > SHOWN_CHARS else "")


def url_for(generator: str, *, functions_url: str, routes: Mapping[str, str],
            configured: Collection[str] = ()) -> str:
    """The URL for a generator's retries; raise Unroutable when the name must not be dispatched."""
    if not isinstance(generator, str) or not is_name(generator):
        raise Unroutable(f"generator name {show(str(generator))} is not a routing key "
                         f"({NAME_PATTERN}): the request was never sent")
    if routes and generator not in routes and generator not in configured:
        raise Unroutable(f"generator {generator!r} is not configured (no route, not in PROCESSOR_GENERATORS): "
                         "the request was never sent")
    if generator in routes:
        return routes[generator]
    if not functions_url:
        raise Unroutable(f"no route for generator {generator!r} and no FUNCTIONS_URL: the request was never sent")
    base = functions_url.rstrip("/")
    url = f"{base}/{quote(generator, safe='')}"
    if not _stays_under(base, url):
        raise Unroutable(f"generator {generator!r} would leave {base}: the request was never sent")
    return url


def resolve(generator: str, *, functions_url: str, routes: Mapping[str, str],
            configured: Collection[str] = ()) -> Route:
    """url_for, as a value: Route(url) or Route(refusal=reason)."""
    try:
        return Route(url=url_for(generator, functions_url=functions_url, routes=routes, configured=configured))
    except Unroutable as exc:
        return Route(refusal=str(exc))


def _stays_under(base: str, url: str) -> bool:
    """The URL httpx will send (after its own normalisation) is exactly one segment below the base."""
    try:
        b, u = httpx.URL(base + "/"), httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return False
    if (u.scheme, u.host, u.port) != (b.scheme, b.host, b.port) or u.query or u.fragment:
        return False
    below = u.raw_path[len(b.raw_path):]
    return u.raw_path.startswith(b.raw_path) and bool(below) and b"/" not in below and below not in (b".", b"..")


class Urls:
    """The URL of each generator's retries, parsed once per name; or why none is sent (not remembered)."""

    def __init__(self, resolve: Callable[[str], Route]) -> None:
        self._resolve = resolve
        self._parsed: dict[str, httpx.URL] = {}

    def get(self, generator: str) -> httpx.URL | str:
        url = self._parsed.get(generator)
        if url is None:
            route = self._resolve(generator)
            if route.refusal:
                return route.refusal
            if len(self._parsed) >= MAX_PARSED:
                self._parsed.clear()
            url = self._parsed[generator] = httpx.URL(route.url)
        return url

"""Redact credentials from a peer's text before it is stored or logged (SPEC 6: not even when echoed).

A generator's answer, a redirect's Location, an exception's text: all pass through scrub() before any
length cut, so a secret cut in two can never leave half of itself behind. Removed: platform API keys
(sb_secret_..., sb_publishable_...), JWT-looking strings (eyJ...), Bearer/Basic credentials, PEM private
keys, and every secret this process was configured with (verbatim, JSON-escaped or percent-encoded).
The cost is linear in the text and the text is bounded (MAX_CHARS), however much a peer sends.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote

MAX_CHARS = 65536  # scrub reads at most this much; what lies beyond is dropped, never half-shown
MIN_SECRET_CHARS = 4  # shorter configured values would redact ordinary words; none is a real credential
KEEP_PREFIX = 6  # SPEC 6: at most a 6-character prefix may show; a cut-off tail longer than this is removed

_SHAPES = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:[^-]|-(?!----END))*(?:-----END [A-Z0-9 ]*PRIVATE KEY-----)?"
    r"|(?<![A-Za-z0-9])sb_(?:secret|publishable)_[A-Za-z0-9_-]*"
    r"|(?<![A-Za-z0-9])eyJ[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)*"
    # a credential after Bearer/Basic: 8+ characters with a digit or a symbol ("bearer token missing" stays)
    r"|(?i:\b(?:bearer|basic)\s+)(?=[^\s\"',;}\]]*[0-9_.+/=~-])[^\s\"',;}\]]{8,}"
)

_known: tuple[str, ...] = ()


def remember(secrets: Iterable[str]) -> None:
    """Add configured secret values to those removed from every text this process scrubs."""
    global _known
    variants: set[str] = set(_known)
    for secret in secrets:
        secret = secret.strip()
        if len(secret) < MIN_SECRET_CHARS:
            continue
        variants.update({secret, json.dumps(secret)[1:-1], quote(secret, safe=""), quote_plus(secret)})
        variants.update(line.strip() for line in secret.splitlines() if len(line.strip()) >= 16)  # PEM lines
    _known = tuple(sorted(variants, key=len, reverse=True))  # longest first: no partial leftovers


def forget_all() -> None:
    """Drop the remembered secrets (tests)."""
    global _known
    _known = ()


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """The text without credentials; at most MAX_CHARS of it are read."""
    known = _known + tuple(s for s in secrets if len(s) >= MIN_SECRET_CHARS)
    cut = len(text) > MAX_CHARS
    text = text[:MAX_CHARS]
    for secret in known:
        if secret in text:
            text = text.replace(secret, "[redacted secret]")
    if cut:
        text = _drop_cut_tail(text, known)
    return _SHAPES.sub(_mark, text)


def _mark(match: re.Match[str]) -> str:
    found = match.group(0)
    if found.startswith("-----BEGIN"):
        return "[redacted private key]"
    if found.startswith("sb_"):
        return "[redacted publishable key]" if found.startswith("sb_publishable") else "[redacted secret key]"
    if found.startswith("eyJ"):
        return "[redacted JWT]"
    return found.split(None, 1)[0] + " [redacted]"


def _drop_cut_tail(text: str, known: Iterable[str]) -> str:
    """A text cut at MAX_CHARS may end with the start of a secret: remove such a tail."""
    for secret in known:
        tail_from = max(0, len(text) - len(secret) + 1)
        start = text.find(secret[:KEEP_PREFIX], tail_from)
        while start != -1:
            if secret.startswith(text[start:]):
                return text[:start] + "[redacted secret]"
            start = text.find(secret[:KEEP_PREFIX], start + 1)
    return text


def url_passwords(url: str) -> set[str]:
    """The password of a URL as written and as decoded, read the way redact_url reads it."""
    _, sep, rest = url.partition("://")
    at = rest.rfind("@")
    if not sep or at == -1 or ":" not in rest[:at]:
        return set()
    raw = rest[:at].partition(":")[2]
    return {raw, unquote(raw)} - {""}


def redact_url(url: str) -> str:
    """A database URL with its password hidden, even one holding unescaped '/', '#', '?' or '@'."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<not a URL>"
    at = rest.rfind("@")  # the last '@': a password may hold '/', '#' or '?', which end the authority
    if at != -1:
        user, colon, _ = rest[:at].partition(":")
        if colon:
            rest = f"{user.split('/', 1)[0]}:***{rest[at:]}"
    rest = re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", rest)
    return f"{scheme}://{rest}"

"""Redact credentials from a peer's text before it is stored or logged (SPEC 6: not even when echoed).

A generator's answer, a redirect's Location, an exception's text: all pass through scrub() before any
length cut, so a secret cut in two can never leave half of itself behind. Removed: platform API keys
(sb_secret_..., sb_publishable_...), JWT-looking strings (eyJ...), Bearer/Basic credentials, PEM private
keys, and every secret this process was configured with (verbatim, JSON-escaped or percent-encoded), and
any run of 7 or more characters of one (SPEC 6 lets at most a 6-character prefix show): a generator that
echoes half a key, or a key without its `sb_secret_` prefix, leaks nothing either. Pieces are also looked
for case-insensitively, across separators (a key echoed in chunks), reversed, hex- and base64-encoded.
The cost is linear in the text (one set look-up per character) and the text is bounded (MAX_CHARS).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote

MAX_CHARS = 65536  # scrub reads at most this much; what lies beyond is dropped, never half-shown
MIN_SECRET_CHARS = 4  # shorter configured values would redact ordinary words; none is a real credential
WINDOW = 7  # SPEC 6: at most 6 characters of a secret may show; any 7 in a row are removed

_SHAPES = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:[^-]|-(?!----END))*(?:-----END [A-Z0-9 ]*PRIVATE KEY-----)?"
    r"|(?<![A-Za-z0-9])sb_(?:secret|publishable)_[A-Za-z0-9_-]*"
    r"|(?<![A-Za-z0-9])eyJ[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)*"
    # a credential after Bearer/Basic: 8+ characters with a digit or a symbol ("bearer token missing" stays)
    r"|(?i:\b(?:bearer|basic)\s+)(?=[^\s\"',;}\]]*[0-9_.+/=~-])[^\s\"',;}\]]{8,}"
)

_known: tuple[str, ...] = ()
_epoch = 0  # changes whenever the remembered secrets do: what callers cached of scrub() is then stale
_windows: frozenset[str] = frozenset()
_folded: frozenset[str] = frozenset()  # pieces of the secrets' other forms, ASCII lower case
GRAM = 4  # every WINDOW-piece holds a GRAM-piece at a position divisible by GRAM: only those are looked up
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+/=")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def remember(secrets: Iterable[str]) -> None:
    """Add configured secret values to those removed from every text this process scrubs."""
    global _known, _windows, _folded, _epoch
    variants: set[str] = set(_known)
    secrets = list(secrets)
    for secret in secrets:
        variants.update(_variants(secret))
    _known = tuple(sorted(variants, key=len, reverse=True))  # longest first: no partial leftovers
    _windows = _windows_of(_known)
    _folded = _folded | _windows_of(f for secret in secrets for f in _other_forms(secret))
    _epoch += 1


def forget_all() -> None:
    """Drop the remembered secrets (tests)."""
    global _known, _windows, _folded, _epoch
    _known, _windows, _folded = (), frozenset(), frozenset()
    _epoch += 1


def epoch() -> int:
    """A number that changes whenever the remembered secrets change (for caches of scrub() results)."""
    return _epoch


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """The text without credentials; at most MAX_CHARS of it are read."""
    known, windows, folded = _known, _windows, _folded
    secrets = list(secrets)
    extra = tuple(v for s in secrets for v in _variants(s))
    if extra:
        known, windows = known + extra, windows | _windows_of(extra)
        folded = folded | _windows_of(f for s in secrets for f in _other_forms(s))
    text = _SHAPES.sub(_mark, text[:MAX_CHARS])  # first: a shape is removed whole, not piece by piece
    for secret in known:
        if secret in text:
            text = text.replace(secret, "[redacted secret]")
    if windows:
        text = _drop_pieces(text, windows)
    return _drop_folded(text, folded) if folded else text


def _other_forms(secret: str) -> list[str]:
    """A secret as an echo may disguise it, ASCII lower case: itself (any case, any separators), reversed,
    hex, and base64 at each of the three byte alignments (the edges, which depend on neighbours, cut off)."""
    secret = secret.strip()
    if len(secret) < MIN_SECRET_CHARS or "-----BEGIN" in secret:
        return []
    raw = secret.encode()
    forms = [secret, secret[::-1], raw.hex()]
    for skip in range(3):
        encoded = base64.b64encode(raw[skip:]).decode().rstrip("=")
        forms.append(encoded[2:-2])
    return [f.translate(_ASCII_LOWER) for f in forms if len(f) >= WINDOW]


_NOT_KEY_CHARS = re.compile(r"[^A-Za-z0-9_+/=-]+")


def _drop_folded(text: str, folded: frozenset[str]) -> str:
    """Replace runs of pieces of a secret's other forms, compared in ASCII lower case and across separators
    (spaces, punctuation): the text's key characters are read as one string, spans mapped back."""
    compact = _NOT_KEY_CHARS.sub("", text).translate(_ASCII_LOWER)
    starts = _starts(compact, folded)
    if not starts:  # the usual case: no index map is built (a 64 KB answer must not cost megabytes)
        return text
    where = [i for i, c in enumerate(text) if c in _KEY_CHARS]
    return _replace(text, _spans((where[j], where[j + WINDOW - 1] + 1) for j in starts))


def _variants(secret: str) -> set[str]:
    secret = secret.strip()
    if len(secret) < MIN_SECRET_CHARS:
        return set()
    if "-----BEGIN" in secret:  # a PEM: its body lines, not the public armour around them
        return {line.strip() for line in secret.splitlines() if line.strip() and not line.startswith("-----")}
    return {secret, json.dumps(secret)[1:-1], quote(secret, safe=""), quote_plus(secret)}


def _windows_of(secrets: Iterable[str]) -> frozenset[str]:
    return frozenset(s[i:i + WINDOW] for s in secrets for i in range(len(s) - WINDOW + 1))


def _starts(text: str, windows: frozenset[str]) -> list[int]:
    """Where WINDOW-character pieces of a secret start in text. Only every GRAM-th position is looked up
    first (any piece covers one), so the cost per character is a quarter of a set look-up."""
    grams = _grams_of(windows)
    found: list[int] = []
    for q in range(0, len(text) - GRAM + 1, GRAM):
        if text[q:q + GRAM] in grams:
            found.extend(j for j in range(max(0, q - WINDOW + GRAM), q + 1) if text[j:j + WINDOW] in windows)
    return found


_GRAMS: dict[frozenset[str], frozenset[str]] = {}


def _grams_of(windows: frozenset[str]) -> frozenset[str]:
    grams = _GRAMS.get(windows)
    if grams is None:
        if len(_GRAMS) > 16:
            _GRAMS.clear()
        grams = _GRAMS[windows] = frozenset(w[i:i + GRAM] for w in windows for i in range(WINDOW - GRAM + 1))
    return grams


def _spans(pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    spans: list[list[int]] = []
    for start, end in pairs:
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    return spans


def _replace(text: str, spans: list[list[int]]) -> str:
    for start, end in reversed(spans):
        text = text[:start] + "[redacted secret]" + text[end:]
    return text


def _drop_pieces(text: str, windows: frozenset[str]) -> str:
    """Replace every run of text made of WINDOW-character pieces of a secret (a cut-off or partial echo)."""
    return _replace(text, _spans((j, j + WINDOW) for j in _starts(text, windows)))


def _mark(match: re.Match[str]) -> str:
    found = match.group(0)
    if found.startswith("-----BEGIN"):
        return "[redacted private key]"
    if found.startswith("sb_"):
        return "[redacted publishable key]" if found.startswith("sb_publishable") else "[redacted secret key]"
    if found.startswith("eyJ"):
        return "[redacted JWT]"
    return found.split(None, 1)[0] + " [redacted]"


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
    rest = re.sub(r"(?i)([?&](?:ssl)?password=)[^&#]*", r"\1***", rest)  # sslpassword: the client key's passphrase
    return f"{scheme}://{rest}"

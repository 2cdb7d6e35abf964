"""Credentials never survive in a peer's text (SPEC 6), not even cut in two; database URLs are redacted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from processor import delivery, scrub
from tests.support.keys import DEMO_SECRET_KEY, DEMO_SERVICE_ROLE_JWT

pytestmark = pytest.mark.hostile

CONFIGURED = "x9!Pq/Zr#s@T%2Fuv~w+y=Z:long-shared-secret"


@pytest.fixture(autouse=True)
def remembered() -> Iterator[None]:
    scrub.forget_all()
    scrub.remember([CONFIGURED, DEMO_SECRET_KEY])
    yield
    scrub.forget_all()


def pieces(secret: str, size: int = 7) -> list[str]:
    """Every 7-character piece of a secret: none may show (SPEC 6 allows at most a 6-character prefix)."""
    return [secret[i:i + size] for i in range(len(secret) - size + 1)]


def leaks(text: str, *secrets: str) -> list[str]:
    return [p for s in secrets for p in pieces(s) if p in text]


@pytest.mark.parametrize("text", [
    f"apikey {DEMO_SECRET_KEY} was refused",
    "got sb_secret_abcdefghijklmnopqrstuvwxyz0123 and sb_publishable_ZYXWVUTSRQPONMLKJ",
    f"Authorization: Bearer {DEMO_SERVICE_ROLE_JWT}",
    f'{{"echo": "{DEMO_SERVICE_ROLE_JWT}"}}',
    "authorization: bearer 0123456789abcdefZZ, next",
    "Basic dXNlcjpwYXNzd29yZDEyMw==",
    f"secret={CONFIGURED}", f"json: {json.dumps(CONFIGURED)}", f"url: ?k={quote(CONFIGURED, safe='')}",
    "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----",
    "-----BEGIN EC PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg (cut",
])
def test_credential_shapes_and_configured_secrets_are_removed(text: str) -> None:
    out = scrub.scrub(text)
    assert "[redacted" in out
    for secret in (DEMO_SECRET_KEY, DEMO_SERVICE_ROLE_JWT, CONFIGURED, "0123456789abcdefZZ", "dXNlcjpwYXNzd29y",
                   "abcdefghijklmnopqrstuvwxyz0123", "ZYXWVUTSRQPONMLKJ", "MIGHAgEAMBMGByqGSM49"):
        assert not leaks(out, secret), out


def test_ordinary_words_stay() -> None:
    text = "bearer token missing; basic validation failed; keyJar is fine; monkey business"
    assert scrub.scrub(text) == text


def test_a_secret_cut_by_the_message_limit_never_leaves_a_piece() -> None:
    for offset in range(440, 500, 7):
        stored = delivery.peer_text("x" * offset + CONFIGURED + " tail")
        assert len(stored) <= delivery.MAX_MESSAGE_CHARS
        assert not leaks(stored, CONFIGURED), offset


def test_a_secret_cut_by_the_read_limit_never_leaves_a_piece() -> None:
    for short in (1, 8, 20, len(CONFIGURED) - 1):
        text = "y" * (scrub.MAX_CHARS - short) + CONFIGURED + "z" * 100
        assert not leaks(scrub.scrub(text)[-200:], CONFIGURED), short


def test_secrets_given_per_call_are_removed_too() -> None:
    assert scrub.scrub("the token was hunter2-long", ["hunter2-long"]) == "the token was [redacted secret]"


@pytest.mark.parametrize("text", [
    "z" * 50_000_000,
    "eyJ" * 5_000_000,
    "eyJa." * 3_000_000,
    "Bearer " * 3_000_000,
    "bearer " + " " * 10_000_000 + "x",
    "-----BEGIN PRIVATE KEY-----" + "-" * 10_000_000,
    "sb_secret_" * 3_000_000,
])
def test_huge_and_pathological_text_is_bounded(text: str) -> None:
    out = scrub.scrub(text)
    assert len(out) <= scrub.MAX_CHARS


@pytest.mark.parametrize(("url", "secret"), [
    ("postgresql://app:pa/ss#word@db.example:5432/app", "pa/ss#word"),
    ("postgresql://app:p#ss@db.example/app", "p#ss"),
    ("postgresql://app:p?ss/x@db.example/app", "p?ss/x"),
    ("postgresql://app:p@ss@db.example/app", "p@ss"),
    ("postgresql://app:1234/5678@db.example:5432/app", "1234/5678"),
    ("postgresql://app:p%2Fss%23w@db.example/app", "p%2Fss%23w"),
    ("postgresql://app@db.example/app?password=s3cr3t-value&sslmode=require", "s3cr3t-value"),
])
def test_database_urls_are_redacted_whatever_the_password_holds(url: str, secret: str) -> None:
    shown = scrub.redact_url(url)
    assert secret not in shown and "***" in shown
    assert shown.startswith("postgresql://app")
    assert secret in scrub.url_passwords(url) or "password=" in url


def test_database_urls_without_a_password_are_unchanged() -> None:
    assert scrub.redact_url("postgresql://app@db.example:5432/app") == "postgresql://app@db.example:5432/app"
    assert scrub.redact_url("postgresql:///app?host=/run/postgresql") == "postgresql:///app?host=/run/postgresql"


def test_a_partial_echo_of_a_configured_secret_leaves_no_piece() -> None:
    body = DEMO_SECRET_KEY[len("sb_secret_"):]
    for text in (f"key was {body}!", f"first half {CONFIGURED[:20]} and last {CONFIGURED[-12:]}",
                 f"{DEMO_SECRET_KEY[3:]}", f"spaced {CONFIGURED[5:18]} out"):
        out = scrub.scrub(text)
        assert not leaks(out, DEMO_SECRET_KEY, CONFIGURED), out


def test_pem_armour_alone_is_not_a_secret() -> None:
    scrub.remember(["-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\n-----END PRIVATE KEY-----\n"])
    assert scrub.scrub("PRIVATE KEY expected") == "PRIVATE KEY expected"
    assert "GByqGSM" not in scrub.scrub("echo: AgEAMBMGByqGSM49AgEG")


def test_the_client_key_passphrase_in_a_database_url_is_hidden() -> None:
    url = "postgresql://app@db:5432/x?sslmode=verify-full&sslpassword=key-passphrase-9&password=pw-7"
    shown = scrub.redact_url(url)
    assert "key-passphrase-9" not in shown and "pw-7" not in shown
    assert shown == "postgresql://app@db:5432/x?sslmode=verify-full&sslpassword=***&password=***"

"""The pure classification table of SPEC section 4, Retry-After, and the generator's message."""

from __future__ import annotations

import email.utils

import pytest

from processor import delivery
from processor.delivery import classify_status, parse_retry_after


@pytest.mark.parametrize(("status", "kind"), [
    (200, "accepted"), (201, "accepted"), (202, "accepted"), (204, "accepted"), (409, "accepted"),
    (504, "timeout"), (500, "server_error"), (501, "server_error"), (507, "server_error"),
    (502, "unreachable"), (503, "unreachable"), (429, "unreachable"),
    (301, "unreachable"), (302, "unreachable"), (307, "unreachable"), (308, "unreachable"),
    (401, "unauthorized"), (403, "unauthorized"),
    (400, "rejected"), (404, "rejected"), (410, "rejected"), (422, "rejected"), (418, "rejected"),
])
def test_status_table(status: int, kind: str) -> None:
    assert classify_status(status) == kind


def test_counted_outcomes() -> None:
    assert {k for k in ("accepted", "timeout", "server_error", "unreachable", "unauthorized", "rejected")
            if delivery.Outcome(k).counted} == {"accepted", "timeout", "server_error"}


def test_retry_after() -> None:
    assert parse_retry_after("120") == 120
    assert parse_retry_after("999999") == 3600  # capped
    now = 1_800_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 90, usegmt=True), now=now) == pytest.approx(90)
    assert parse_retry_after(email.utils.formatdate(now - 90, usegmt=True), now=now) == 0
    for bad in (None, "", "soon", "-5", "1.5e3", "Mon, 99 Foo 2026"):
        assert parse_retry_after(bad) is None


def test_the_generators_message() -> None:
    assert delivery._message('{"error": "bad_prompt", "message": "prompt is empty"}') == "prompt is empty"
    assert delivery._message('{"msg": "Invalid JWT"}') == "Invalid JWT"
    assert delivery._message("<html>\n  Bad   Gateway</html>") == "<html> Bad Gateway</html>"
    assert len(delivery._message("x" * 10_000)) == delivery.MAX_MESSAGE_CHARS


def test_peer_text_is_cleaned_of_nul_and_control_characters() -> None:
    assert delivery._message('{"message": "bad\\u0000\\nthing\\u001b[31m"}') == "bad thing [31m"
    assert delivery.peer_text("\x00\xff<html>") == "\xff<html>"

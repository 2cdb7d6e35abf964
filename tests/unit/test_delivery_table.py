"""The pure classification table of SPEC section 4, Retry-After, and the generator's message."""

from __future__ import annotations

import email.utils
import json
import re

import pytest

from processor import delivery
from processor.contracts import OutcomeKind
from processor.delivery import Unsendable, classify_status, parse_retry_after, request_body


@pytest.mark.parametrize(("status", "kind"), [
    (200, "accepted"), (201, "accepted"), (202, "accepted"), (204, "accepted"), (409, "accepted"),
    (504, "timeout"), (500, "server_error"), (501, "server_error"), (507, "server_error"),
    (502, "unreachable"), (503, "unreachable"), (429, "unreachable"),
    (301, "unreachable"), (302, "unreachable"), (307, "unreachable"), (308, "unreachable"),
    (401, "unauthorized"), (403, "unauthorized"),
    (400, "rejected"), (404, "rejected"), (410, "rejected"), (422, "rejected"), (418, "rejected"),
    # not a generator's verdict: no answer worth a retry or a failure
    (408, "unreachable"), (100, "unreachable"), (199, "unreachable"), (600, "unreachable"), (999, "unreachable"),
    (0, "unreachable"), (-1, "unreachable"),
])
def test_status_table(status: int, kind: str) -> None:
    assert classify_status(status) == kind


def test_counted_outcomes() -> None:
    assert {k for k in ("accepted", "timeout", "server_error", "unreachable", "unauthorized", "rejected")
            if delivery.Outcome(OutcomeKind(k)).counted} == {"accepted", "timeout", "server_error"}


def test_retry_after() -> None:
    assert parse_retry_after("120") == 120
    assert parse_retry_after("999999") == 3600  # capped
    now = 1_800_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 90, usegmt=True), now=now) == pytest.approx(90)
    assert parse_retry_after(email.utils.formatdate(now - 90, usegmt=True), now=now) == 0
    for bad in (None, "", "soon", "-5", "1.5e3", "Mon, 99 Foo 2026"):
        assert parse_retry_after(bad) is None


@pytest.mark.hostile
@pytest.mark.parametrize("value", [
    "²³", "١٢", "１２", "𝟗", "9" * 5000, "12\x00", "Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 01 Jan 0001 00:00:00 GMT",
    "Fri, 31 Dec 99999999 23:59:59 GMT", "\udcff", "1" + "\u0300" * 100,
])
def test_a_hostile_retry_after_is_ignored_or_capped(value: str) -> None:
    seconds = parse_retry_after(value)
    assert seconds is None or 0 <= seconds <= delivery.MAX_RETRY_AFTER_S


def test_the_generators_message() -> None:
    assert delivery._message('{"error": "bad_prompt", "message": "prompt is empty"}') == "prompt is empty"
    assert delivery._message('{"msg": "Invalid JWT"}') == "Invalid JWT"
    assert delivery._message("<html>\n  Bad   Gateway</html>") == "<html> Bad Gateway</html>"
    assert len(delivery._message("x" * 10_000)) == delivery.MAX_MESSAGE_CHARS


def test_peer_text_is_cleaned_of_nul_and_control_characters() -> None:
    assert delivery._message('{"message": "bad\\u0000\\nthing\\u001b[31m"}') == "bad thing [31m"
    assert delivery.peer_text("\x00\xff<html>") == "\xff<html>"


@pytest.mark.hostile
def test_a_deep_json_message_is_just_text() -> None:
    assert delivery._message("[" * 100_000) == "[" * delivery.MAX_MESSAGE_CHARS
    assert delivery._message('{"message": ' * 50_000).startswith('{"message": {"message":')


def test_the_body_is_spliced_from_the_stored_text() -> None:
    assert json.loads(request_body('{"prompt": "p"}', "id-1", 2)) == {
        "prompt": "p", "retryHistoryId": "id-1", "retryAttempt": 2}
    assert json.loads(request_body("{}", "id-1", 0)) == {"retryHistoryId": "id-1", "retryAttempt": 0}
    assert json.loads(request_body({"a": [1]}, "id-1", 1)) == {"a": [1], "retryHistoryId": "id-1", "retryAttempt": 1}
    # the stored keys of the same name lose: ours come last, and JSON parsers keep the last
    forged = json.loads(request_body('{"retryAttempt": 99, "retryHistoryId": "x"}', "id-1", 1))
    assert forged == {"retryHistoryId": "id-1", "retryAttempt": 1}
    # brackets inside strings are not nesting
    assert json.loads(request_body(json.dumps({"p": "[" * 10_000}), "i", 1))["p"] == "[" * 10_000


@pytest.mark.hostile
@pytest.mark.parametrize(("stored", "says"), [
    ('{"a": ' + "[" * 300 + "]" * 300 + "}", "nests deeper than 256 levels"),
    ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "nests deeper than 256 levels"),
    ('{"a": "' + "x" * (8 * 2**20) + '"}', "over the 8 MB limit"),
    ("[1, 2]", "not a JSON object"), ('"text"', "not a JSON object"), ("null", "not a JSON object"), ("", "not"),
    ({"a": {1, 2}}, "cannot be serialised (TypeError)"),
])
def test_an_unsendable_request(stored: object, says: str) -> None:
    with pytest.raises(Unsendable, match=re.escape(says)):
        request_body(stored, "id-1", 1)

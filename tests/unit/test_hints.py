"""Notification payloads are untrusted: only well-formed live rows with a deadline become hints."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from processor.listener import looks_like_transaction_pooler, parse_hint


def test_a_live_row_is_a_hint() -> None:
    payload = json.dumps({"id": "x", "status": "generating", "deadline_at": "2026-11-28T18:00:00.5+00:00",
                          "event": "status_changed"})
    valid, deadline = parse_hint(payload)
    assert valid and deadline == 1795888800.5


def test_finished_rows_wake_nobody() -> None:
    assert parse_hint(json.dumps({"id": "x", "status": "completed", "deadline_at": None})) == (True, None)


def test_hostile_payloads_are_refused() -> None:
    for payload in ("", "{", "[]", "null", '"x"', json.dumps({"status": "pending"}),
                    json.dumps({"id": 1, "status": "pending", "deadline_at": "2026-01-01T00:00:00+00:00"}),
                    json.dumps({"id": "x", "status": "pending", "deadline_at": "2026-01-01T00:00:00"}),
                    json.dumps({"id": "x", "status": "pending", "deadline_at": 12}),
                    json.dumps({"id": "x", "status": "pending", "deadline_at": "'; DROP TABLE x; --"}),
                    "[" * 100_000):
        assert parse_hint(payload) == (False, None), payload[:40]


@settings(max_examples=500)
@given(st.one_of(st.text(max_size=300), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=10).map(json.dumps)))
def test_parse_hint_never_raises(payload: str) -> None:
    valid, deadline = parse_hint(payload)
    assert deadline is None or valid


def test_transaction_pooler_port_is_recognised() -> None:
    assert looks_like_transaction_pooler("postgresql://u:p@aws-0-eu.pooler.supabase.com:6543/postgres")
    assert not looks_like_transaction_pooler("postgresql://u:p@db.ref.supabase.co:5432/postgres")

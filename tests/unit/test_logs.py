"""One structlog processor redacts secrets by key name and by shape, at any depth."""

from __future__ import annotations

import io
import json

from processor import logs, scrub
from tests.support.keys import DEMO_SECRET_KEY, DEMO_SERVICE_ROLE_JWT


def test_redaction_by_key_and_by_shape() -> None:
    event = {
        "event": "request_refused",
        "headers": {"Authorization": f"Bearer {DEMO_SERVICE_ROLE_JWT}", "apikey": DEMO_SECRET_KEY, "x-ok": "fine"},
        "note": f"caller sent {DEMO_SECRET_KEY} and {DEMO_SERVICE_ROLE_JWT}",
        "database": "postgresql://app:hunter2@db:5432/x",
        "jwt_secret": "super-secret-jwt-token-with-at-least-32-characters-long",
        "items": [{"token": "abcdefghijkl"}],
        "count": 3,
    }
    out = logs.redact_secrets(None, "info", dict(event))
    text = json.dumps(out)
    for secret in (DEMO_SECRET_KEY, DEMO_SERVICE_ROLE_JWT, "hunter2", "super-secret-jwt", "abcdefghijkl"):
        assert secret not in text
    assert out["headers"]["apikey"] == "sb_secret_…" and out["headers"]["x-ok"] == "fine"
    # a secret's own characters never show, not even its first few (they used to: "super-…")
    assert out["jwt_secret"] == "…" and out["count"] == 3 and out["event"] == "request_refused"
    assert out["items"][0]["token"] == "…" and out["headers"]["Authorization"] == "…"
    assert out["note"] == "caller sent [redacted secret key] and [redacted JWT]"  # by shape


def test_configured_json_logging_redacts() -> None:
    stream = io.StringIO()
    logs.configure("json", "info", stream=stream)
    logs.get_logger().info("auto_retry", authorization=f"Bearer {DEMO_SECRET_KEY}", generation_id="g")
    line = json.loads(stream.getvalue())
    assert line["event"] == "auto_retry" and line["generation_id"] == "g"
    assert DEMO_SECRET_KEY not in stream.getvalue()


def test_a_remembered_clean_value_is_cleaned_again_once_a_secret_is_configured() -> None:
    # Short values are cleaned once and remembered (log lines repeat them); a secret configured later must
    # still be redacted from a value remembered before it.
    value = "note-zq7hd82kf0x5-end"
    try:
        assert logs.redact_secrets(None, "info", {"event": "e", "note": value})["note"] == value
        scrub.remember(["zq7hd82kf0x5"])
        assert "zq7hd82" not in logs.redact_secrets(None, "info", {"event": "e", "note": value})["note"]
    finally:
        scrub.forget_all()
    assert logs.redact_secrets(None, "info", {"event": "e", "note": value})["note"] == value


def test_what_the_cleaner_remembers_stays_bounded() -> None:
    for i in range(3 * logs._CACHE_ENTRIES):
        logs.redact_secrets(None, "info", {"event": "e", "generation_id": f"{i:036d}"})
    assert len(logs._cache) <= logs._CACHE_ENTRIES
    long = "x" * (logs._CACHED_CHARS + 1)
    logs.redact_secrets(None, "info", {"event": "e", "note": long})
    assert long not in logs._cache  # long values (a peer's message) are cleaned every time, not kept


def test_numbers_and_none_pass_and_the_level_and_time_are_added_after_cleaning() -> None:
    stream = io.StringIO()
    logs.configure("json", "info", stream=stream)
    logs.get_logger().info("auto_retry", status=202, duration_ms=1.5, retry_after_s=None, token=7)
    line = json.loads(stream.getvalue())
    assert (line["status"], line["duration_ms"], line["retry_after_s"], line["token"]) == (202, 1.5, None, 7)
    assert line["level"] == "info" and line["timestamp"].endswith("Z")

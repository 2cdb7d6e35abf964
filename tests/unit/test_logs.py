"""One structlog processor redacts secrets by key name and by shape, at any depth."""

from __future__ import annotations

import io
import json

from processor import logs
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
    assert out["headers"]["apikey"] == "sb_sec…" and out["headers"]["x-ok"] == "fine"
    assert out["jwt_secret"] == "super-…" and out["count"] == 3 and out["event"] == "request_refused"


def test_configured_json_logging_redacts() -> None:
    stream = io.StringIO()
    logs.configure("json", "info", stream=stream)
    logs.get_logger().info("auto_retry", authorization=f"Bearer {DEMO_SECRET_KEY}", generation_id="g")
    line = json.loads(stream.getvalue())
    assert line["event"] == "auto_retry" and line["generation_id"] == "g"
    assert DEMO_SECRET_KEY not in stream.getvalue()

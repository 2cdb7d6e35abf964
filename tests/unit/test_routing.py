"""Generator names are routing keys, not paths (SPEC 3.1): hostile names are refused, never sent."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor import routing
from processor.config import Settings

pytestmark = pytest.mark.hostile

BASE = "https://ref.supabase.co/functions/v1"
HOSTILE = [
    "../../auth/v1/admin/users", "..", ".", "a/b", "generate-website/../../auth", "a?b=1", "gen?x", "gen#frag",
    "%2e%2e", "%2e%2e%2fauth", "gen%2Fx", "gén", "生成", "gen\x1b[31m", "gen\nx", "generate-website\n", "gen\t",
    "gen\u202e", "Generate-Website", "-gen", "_gen", "", " gen", "gen ", "a" * 64, "gen\\..\\x", "//evil.example/x",
    "http://evil.example/", "@evil.example", "gen;x", "gen:x",
]


def url_for(name: str, **routes: str) -> str:
    return routing.url_for(name, functions_url=BASE, routes=routes, configured=("generate-website",))


def test_well_formed_names_are_one_segment_under_the_base() -> None:
    assert url_for("generate-website") == f"{BASE}/generate-website"
    assert url_for("a") == f"{BASE}/a"
    assert url_for("0" + "a" * 62) == f"{BASE}/0{'a' * 62}"
    assert routing.url_for("x", functions_url=BASE + "/", routes={}) == f"{BASE}/x"


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused_with_a_reason(name: str) -> None:
    with pytest.raises(routing.Unroutable) as info:
        url_for(name)
    message = str(info.value)
    assert "never sent" in message
    assert not any(ord(c) < 32 or ord(c) == 0x7F or ord(c) > 0x7E for c in message.replace("…", ""))
    assert routing.resolve(name, functions_url=BASE, routes={}).url == ""


def test_a_huge_name_is_shown_bounded() -> None:
    with pytest.raises(routing.Unroutable) as info:
        url_for("../" * 1_000_000)
    assert len(str(info.value)) < 300


def test_with_routes_only_configured_names_are_dispatched() -> None:
    routes = {"generate-php-website": "https://php.example/run"}
    assert url_for("generate-php-website", **routes) == "https://php.example/run"
    assert url_for("generate-website", **routes) == f"{BASE}/generate-website"  # in PROCESSOR_GENERATORS
    with pytest.raises(routing.Unroutable, match="not configured"):
        url_for("generate-anything", **routes)
    assert url_for("generate-anything") == f"{BASE}/generate-anything"  # no routes: any well-formed name


def test_settings_route_refuses_hostile_rows() -> None:
    s = Settings.from_env({"DATABASE_URL": "postgresql://u@h/d", "FUNCTIONS_URL": BASE,
                           "SUPABASE_JWT_SECRET": "s" * 40})
    assert s.resolve("../../auth/v1/admin/users").refusal
    with pytest.raises(routing.Unroutable):
        s.route("a?b")


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=80) | st.from_regex(r"[a-z0-9%./?#_-]{1,70}", fullmatch=True))
def test_no_name_ever_leaves_the_base_path(name: str) -> None:
    try:
        url = url_for(name)
    except routing.Unroutable:
        return
    sent = httpx.URL(url)
    assert (sent.host, sent.query, sent.fragment) == ("ref.supabase.co", b"", "")
    assert sent.raw_path.startswith(b"/functions/v1/")
    assert b"/" not in sent.raw_path[len(b"/functions/v1/"):]
    assert routing.is_name(name)

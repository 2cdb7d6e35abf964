"""Hostile headers and bodies: the verifier answers 400/401/403/404, never a 5xx, never an acceptance."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.authority import AuthorityError, Keys, Verifier
from tests.support.keys import (
    DEMO_ANON_JWT,
    DEMO_JWT_SECRET,
    DEMO_PUBLISHABLE_KEY,
    DEMO_SECRET_KEY,
    DEMO_SERVICE_ROLE_JWT,
    processor_pair,
)
from tests.support.tokens import ALICE_ROW, OWNERS, scoped, user_token

N_VALID = 4


def valid() -> list[str]:
    """Minted when used: a token minted at collection time has expired when a long suite reaches it."""
    return [DEMO_SECRET_KEY, DEMO_SERVICE_ROLE_JWT, scoped(), user_token()]


async def owner_of(retry_id: str) -> str | None:
    return OWNERS.get(retry_id)


KEYS = Keys(secret_keys={"default": DEMO_SECRET_KEY}, jwt_secret=DEMO_JWT_SECRET,
            processor_jwks={"keys": [processor_pair()[1]]})


def mutate(token: str, data: st.DataObject) -> str:
    # never the last character: base64 padding bits there can change without changing the bytes
    i = data.draw(st.integers(0, len(token) - 2))
    how = data.draw(st.sampled_from(["flip", "drop", "insert", "truncate", "swap_dots"]))
    if how == "flip":
        c = data.draw(st.characters(codec="ascii").filter(lambda ch: ch != token[i]))
        return token[:i] + c + token[i + 1:]
    if how == "drop":
        return token[:i] + token[i + 1:]
    if how == "insert":
        return token[:i] + data.draw(st.text(min_size=1, max_size=3)) + token[i:]
    if how == "truncate":
        return token[:i]
    return token.replace(".", "", 1)


credential = st.one_of(
    st.text(max_size=200),
    st.builds(lambda a, b, c: f"{a}.{b}.{c}", st.text(max_size=60), st.text(max_size=60), st.text(max_size=60)),
    st.builds(lambda s: "sb_secret_" + s, st.text(max_size=40)),
    st.sampled_from([DEMO_PUBLISHABLE_KEY, DEMO_ANON_JWT, "eyJhbGciOiJub25lIn0.e30.", "Bearer", " "]),
)
header_name = st.sampled_from(["Authorization", "authorization", "AUTHORIZATION", "apikey", "ApiKey", "x-other"])
body = st.one_of(
    st.none(), st.integers(), st.text(max_size=50), st.lists(st.integers(), max_size=3),
    st.fixed_dictionaries({}, optional={
        "retryHistoryId": st.one_of(st.just(ALICE_ROW), st.uuids().map(str), st.text(max_size=80), st.integers(),
                                    st.none(), st.lists(st.text(), max_size=2)),
        "retryAttempt": st.one_of(st.integers(), st.booleans(), st.text(max_size=5), st.floats()),
        "prompt": st.text(max_size=50),
    }),
)


def _outcome(headers: dict[str, str], payload: Any) -> AuthorityError | None:
    try:
        # a fresh verifier each time: a scoped token opens one delivery once (its jti is then spent)
        asyncio.run(Verifier("generate-website", KEYS, owner_of).verify(headers, payload))
    except AuthorityError as err:
        return err
    return None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=st.lists(header_name, max_size=3), values=st.lists(credential, min_size=3, max_size=3),
       prefix=st.sampled_from(["", "Bearer ", "bearer  ", "Basic "]), payload=body)
def test_random_credentials_are_refused_cleanly(names: list[str], values: list[str], prefix: str,
                                                payload: Any) -> None:
    headers = {name: (prefix + value if name.lower() == "authorization" else value)
               for name, value in zip(names, values, strict=False)}
    err = _outcome(headers, payload)
    assert err is not None, f"accepted {headers!r}"
    assert err.status in (400, 401, 403, 404, 409)


@settings(max_examples=400, deadline=None)
@given(which=st.sampled_from(range(N_VALID)), data=st.data(), where=st.sampled_from(["Authorization", "apikey"]))
def test_mutated_valid_credentials_are_refused_cleanly(which: int, data: st.DataObject, where: str) -> None:
    original = valid()[which]
    token = mutate(original, data)
    headers = {where: f"Bearer {token}" if where == "Authorization" else token}
    err = _outcome(headers, {"retryHistoryId": ALICE_ROW, "retryAttempt": 1})
    if token.strip(" \t") == original:  # HTTP drops a header value's surrounding blanks (RFC 9110 5.5): the same
        return
    assert err is not None, f"accepted a mutated credential {token!r}"
    assert err.status in (400, 401, 403, 404, 409)


def test_the_unmutated_credentials_are_accepted() -> None:
    # the control for the test above: the same requests, unmutated, pass
    for token in valid():
        headers = {"Authorization": f"Bearer {token}"}
        assert _outcome(headers, {"retryHistoryId": ALICE_ROW, "retryAttempt": 1}) is None, token[:12]
    assert str(uuid.UUID(ALICE_ROW)) == ALICE_ROW

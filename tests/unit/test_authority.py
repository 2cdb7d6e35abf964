"""Every row of the SPEC section 6 table, decided by processor.authority (owner look-up injected)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
import pytest

from processor.authority import AuthorityError, Keys, Principal, Verifier, credential_kind
from processor.credentials import Delivery, Minter, service_key_headers
from tests.support.keys import (
    DEMO_ANON_JWT,
    DEMO_JWT_SECRET,
    DEMO_PUBLISHABLE_KEY,
    DEMO_SECRET_KEY,
    DEMO_SERVICE_ROLE_JWT,
    PROCESSOR_KID,
    PROCESSOR_SECRET,
    ec_pair,
    processor_pair,
    rsa_pair,
)
from tests.support.tokens import (
    ALICE,
    ALICE_ROW,
    BOB,
    BOB_ROW,
    GENERATOR,
    bearer,
    owner_of,
    scoped,
    user_token,
    verifier,
)


async def decide(headers: dict[str, str], body: Any = None, v: Verifier | None = None) -> Principal:
    return await (v or verifier()).verify(headers, {} if body is None else body)


async def refused(headers: dict[str, str], body: Any = None, v: Verifier | None = None) -> AuthorityError:
    with pytest.raises(AuthorityError) as info:
        await decide(headers, body, v)
    return info.value


# --- the table, row by row --------------------------------------------------------------------------

async def test_user_token_without_retry_id_is_that_user() -> None:
    assert await decide(bearer(user_token())) == Principal(ALICE, "user", credential="user-jwt")


async def test_user_token_with_own_retry_id() -> None:
    p = await decide(bearer(user_token()), {"retryHistoryId": ALICE_ROW})
    assert p == Principal(ALICE, "user", ALICE_ROW, credential="user-jwt")


async def test_user_token_with_someone_elses_retry_id_is_403_not_owner() -> None:
    err = await refused(bearer(user_token()), {"retryHistoryId": BOB_ROW})
    assert (err.status, err.code) == (403, "not_owner")


async def test_scoped_token_matching_body_is_the_rows_owner() -> None:
    p = await decide(bearer(scoped()), {"retryHistoryId": ALICE_ROW, "retryAttempt": 1})
    assert p == Principal(ALICE, "scoped-jwt", ALICE_ROW, 1, "scoped-jwt")


@pytest.mark.parametrize(("token", "body", "code"), [
    (lambda: scoped(retry_id=BOB_ROW, user=BOB), {"retryHistoryId": ALICE_ROW}, "retry_id_mismatch"),
    (lambda: scoped(generator="generate-php-website"), {"retryHistoryId": ALICE_ROW}, "wrong_audience"),
    (lambda: scoped(), {"retryHistoryId": ALICE_ROW, "retryAttempt": 2}, "attempt_mismatch"),
    (lambda: scoped(), {}, "retry_id_mismatch"),
    (lambda: scoped(user=BOB), {"retryHistoryId": ALICE_ROW}, "not_owner"),
])
async def test_scoped_token_that_does_not_match_is_403(token: Any, body: dict[str, Any], code: str) -> None:
    err = await refused(bearer(token()), body)
    assert (err.status, err.code) == (403, code)


@pytest.mark.parametrize("headers", [
    {"apikey": DEMO_SECRET_KEY},
    {"Authorization": f"Bearer {DEMO_SECRET_KEY}"},  # the seed's exact request: never parsed as a JWT
    {"Authorization": f"Bearer {DEMO_SECRET_KEY}", "apikey": DEMO_SECRET_KEY},
    {"authorization": f"bearer {DEMO_SECRET_KEY}"},
], ids=["apikey", "bearer", "both", "lowercase"])
async def test_secret_key_with_retry_id_is_the_rows_owner(headers: dict[str, str]) -> None:
    p = await decide(headers, {"retryHistoryId": BOB_ROW})
    assert p == Principal(BOB, "service-key", BOB_ROW, credential="secret-key")


async def test_configured_service_role_key_and_legacy_service_role_jwt() -> None:
    as_key = verifier(secret_keys={}, service_role_key="an-opaque-service-role-key", jwt_secret="")
    assert (await decide({"apikey": "an-opaque-service-role-key"}, {"retryHistoryId": ALICE_ROW}, as_key)
            ).credential == "secret-key"
    # the platform's legacy service_role key is an HS256 JWT without sub: service authority, never a user
    p = await decide(bearer(DEMO_SERVICE_ROLE_JWT), {"retryHistoryId": ALICE_ROW})
    assert p == Principal(ALICE, "service-key", ALICE_ROW, credential="service-role-jwt")
    p = await decide({"apikey": DEMO_SERVICE_ROLE_JWT}, {"retryHistoryId": ALICE_ROW})
    assert (p.authority, p.credential) == ("service-key", "service-role-jwt")
    # configured as SUPABASE_SERVICE_ROLE_KEY with no JWT secret at all: recognised as the key itself
    only_key = verifier(secret_keys={}, service_role_key=DEMO_SERVICE_ROLE_JWT, jwt_secret="")
    assert (await decide(bearer(DEMO_SERVICE_ROLE_JWT), {"retryHistoryId": ALICE_ROW}, only_key)).user_id == ALICE


@pytest.mark.parametrize("headers", [{"apikey": DEMO_SECRET_KEY}, bearer(DEMO_SERVICE_ROLE_JWT)])
async def test_service_authority_without_retry_id_is_403(headers: dict[str, str]) -> None:
    err = await refused(headers, {"prompt": "x"})
    assert (err.status, err.code) == (403, "retry_id_required")


async def test_service_authority_with_unknown_retry_id_is_404() -> None:
    err = await refused({"apikey": DEMO_SECRET_KEY}, {"retryHistoryId": str(uuid.uuid4())})
    assert (err.status, err.code, err.message) == (404, "retry_record_not_found", "Retry record not found")


@pytest.mark.parametrize(("headers", "code"), [
    ({"apikey": DEMO_PUBLISHABLE_KEY}, "publishable_key"),
    (bearer(DEMO_PUBLISHABLE_KEY), "publishable_key"),
    (bearer(DEMO_ANON_JWT), "anon_key"),
    ({"apikey": DEMO_ANON_JWT}, "anon_key"),
])
async def test_publishable_key_or_anon_alone_is_401(headers: dict[str, str], code: str) -> None:
    err = await refused(headers, {"retryHistoryId": ALICE_ROW})
    assert (err.status, err.code) == (401, code)


def _none_token() -> str:
    def part(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
    claims = {"sub": ALICE, "role": "authenticated", "aud": "authenticated", "exp": 2**40}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256_signed_with_public_key() -> str:
    # algorithm confusion: an HS256 token whose HMAC key is the ES256 public key (known to everyone);
    # forged by hand because pyjwt itself refuses to sign with a JWK-shaped secret
    head = _b64(json.dumps({"alg": "HS256", "kid": "ec-1"}).encode())
    body = _b64(json.dumps({"sub": ALICE, "role": "authenticated", "aud": "authenticated", "exp": 2**40}).encode())
    sig = hmac.new(json.dumps(ec_pair()[1]).encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


@pytest.mark.parametrize(("headers", "code"), [
    ({}, "missing_credentials"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "unsupported_authorization"),
    ({"Authorization": "Bearer"}, "unsupported_authorization"),
    (bearer("not-a-token"), "malformed_credentials"),
    (bearer("a.b.c"), "malformed_token"),
    (bearer(user_token(exp=int(time.time()) - 120)), "token_expired"),
    (bearer(user_token(key="another-secret-that-is-at-least-32-chars!!")), "bad_signature"),
    (bearer(_none_token()), "alg_not_allowed"),
    (bearer(_hs256_signed_with_public_key()), "bad_signature"),
    (bearer(user_token(key=ec_pair()[0], alg="ES256", kid="nope")), "unknown_kid"),
    (bearer(user_token(key=rsa_pair()[0], alg="RS256", kid="ec-1")), "unknown_kid"),  # kid/alg mismatch
    (bearer(user_token(exp=None)), "missing_claim"),
    (bearer(jwt.encode({"sub": ALICE, "role": "authenticated", "aud": "authenticated", "exp": 2**40},
                       DEMO_JWT_SECRET, algorithm="HS384")), "alg_not_allowed"),
    (bearer("sb_secret_not-the-configured-one"), "unknown_secret_key"),
    (bearer(user_token(sub="not-a-uuid")), "missing_sub"),
    (bearer(user_token(aud="anon")), "not_a_user_token"),
])
async def test_bad_credentials_are_401_with_a_reason(headers: dict[str, str], code: str) -> None:
    err = await refused(headers, {})
    assert (err.status, err.code) == (401, code)


async def test_asymmetric_user_tokens_verify_through_the_jwks() -> None:
    for pem, kid, alg in ((ec_pair()[0], "ec-1", "ES256"), (rsa_pair()[0], "rsa-1", "RS256")):
        p = await decide(bearer(user_token(key=pem, alg=alg, kid=kid)))
        assert p == Principal(ALICE, "user", credential="user-jwt")


async def test_leeway_is_capped_at_30_seconds() -> None:
    with pytest.raises(ValueError):
        Verifier(GENERATOR, Keys(), owner_of, leeway_s=60)
    just_expired = user_token(exp=int(time.time()) - 10)
    assert (await decide(bearer(just_expired))).user_id == ALICE


async def test_bad_body_fields_are_400() -> None:
    for body, code in (({"retryHistoryId": "1; DROP TABLE x"}, "bad_retry_history_id"),
                       ({"retryHistoryId": ALICE_ROW, "retryAttempt": "1"}, "bad_retry_attempt"),
                       ({"retryHistoryId": ALICE_ROW, "retryAttempt": True}, "bad_retry_attempt")):
        err = await refused({"apikey": DEMO_SECRET_KEY}, body)
        assert (err.status, err.code) == (400, code)


def test_credential_kinds_are_told_apart_before_parsing() -> None:
    assert credential_kind(DEMO_SECRET_KEY) == "secret-key"
    assert credential_kind(DEMO_PUBLISHABLE_KEY) == "publishable-key"
    assert credential_kind(DEMO_SERVICE_ROLE_JWT) == "jwt"
    assert credential_kind("a..b") == "opaque"


# --- minted tokens ------------------------------------------------------------------------------------

def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


async def test_minted_token_carries_the_spec_claims() -> None:
    token = scoped(attempt=3)
    c = _claims(token)
    assert c["iss"] == "generation-processor" and c["role"] != "service_role" and c["aud"] == GENERATOR
    assert (c["sub"], c["retry_history_id"], c["attempt"]) == (ALICE, ALICE_ROW, 3)
    assert c["exp"] - c["iat"] == 300 and uuid.UUID(c["jti"])
    assert _claims(scoped())["jti"] != c["jti"]


@pytest.mark.parametrize(("claim", "value"), [
    ("aud", "generate-php-website"), ("retry_history_id", BOB_ROW), ("attempt", 9), ("sub", BOB),
    ("role", "authenticated"), ("iss", "someone-else"), ("exp", 1),
])
async def test_changing_any_claim_breaks_the_token(claim: str, value: Any) -> None:
    token = scoped()
    forged = {**_claims(token), claim: value}
    header, _, sig = token.split(".")
    payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    err = await refused(bearer(f"{header}.{payload}.{sig}"), {"retryHistoryId": ALICE_ROW, "retryAttempt": 1})
    # another issuer is checked against the platform's keys, which do not hold the processor's kid
    assert err.status == 401 and err.code == ("unknown_kid" if claim == "iss" else "bad_signature")


async def test_resigned_with_another_key_or_expired_is_refused() -> None:
    other = Minter(shared_secret="x" * 40)
    err = await refused(bearer(scoped(minter=other)), {"retryHistoryId": ALICE_ROW})
    assert err.code == "bad_signature"
    old = Minter(shared_secret=PROCESSOR_SECRET).mint(Delivery(GENERATOR, ALICE, ALICE_ROW, 1), now=time.time() - 400)
    assert (await refused(bearer(old), {"retryHistoryId": ALICE_ROW})).code == "token_expired"


async def test_es256_minted_token_verifies_with_the_public_jwk() -> None:
    p = await decide(bearer(scoped()), {"retryHistoryId": ALICE_ROW}, verifier(jwt_secret="", processor_secret=""))
    assert p.authority == "scoped-jwt"
    assert jwt.get_unverified_header(scoped()) == {"alg": "ES256", "typ": "JWT", "kid": PROCESSOR_KID}


async def test_hs256_minted_token_verifies_with_the_shared_secret_only() -> None:
    minter = Minter(shared_secret=PROCESSOR_SECRET)
    p = await decide(bearer(scoped(minter=minter)), {"retryHistoryId": ALICE_ROW}, verifier(processor_jwks=None))
    assert (p.authority, p.user_id) == ("scoped-jwt", ALICE)
    # the platform's JWT secret is not the processor's: a generator holding only that refuses the token
    err = await refused(bearer(scoped(minter=minter)), {"retryHistoryId": ALICE_ROW}, verifier(processor_secret=""))
    assert (err.status, err.code) == (401, "hs256_not_configured")


@pytest.mark.parametrize("shared", [False, True], ids=["es256", "hs256"])
def test_a_minted_token_fails_verification_with_the_platforms_jwt_secret(shared: bool) -> None:
    # what the platform's REST API and gateway do with a token: verify it with the project's JWT secret
    minter = Minter(shared_secret=PROCESSOR_SECRET) if shared else Minter(private_key_pem=processor_pair()[0],
                                                                          kid=PROCESSOR_KID)
    token = scoped(minter=minter)
    with pytest.raises(jwt.InvalidTokenError):
        jwt.decode(token, DEMO_JWT_SECRET, algorithms=["HS256"], options={"verify_aud": False})
    with pytest.raises(jwt.InvalidTokenError):  # nor with the platform's asymmetric signing key
        jwt.decode(token, jwt.PyJWK(ec_pair()[1]).key, algorithms=["ES256"], options={"verify_aud": False})
    assert _claims(token)["role"] not in ("service_role", "authenticated", "anon")


async def test_a_scoped_token_opens_one_delivery_once() -> None:
    v = verifier()
    token, body = scoped(), {"retryHistoryId": ALICE_ROW, "retryAttempt": 1}
    assert (await decide(bearer(token), body, v)).authority == "scoped-jwt"
    for _ in range(3):  # the same token again, whatever else changes (another Idempotency-Key)
        err = await refused({**bearer(token), "Idempotency-Key": str(uuid.uuid4())}, body, v)
        assert (err.status, err.code) == (409, "token_replayed")
    assert (await decide(bearer(scoped()), body, v)).authority == "scoped-jwt"  # a new token is a new delivery


async def test_an_owner_lookup_that_fails_is_503_never_404() -> None:
    async def down(_retry_id: str) -> str | None:
        raise ConnectionError("REST API answered 503")

    v = Verifier(GENERATOR, verifier().keys, down)
    for headers in ({"apikey": DEMO_SECRET_KEY}, bearer(scoped()), bearer(user_token())):
        err = await refused(headers, {"retryHistoryId": ALICE_ROW, "retryAttempt": 1}, v)
        assert (err.status, err.code) == (503, "owner_lookup_failed")


def test_service_key_headers() -> None:
    assert service_key_headers(DEMO_SECRET_KEY) == {"apikey": DEMO_SECRET_KEY}
    assert service_key_headers(DEMO_SECRET_KEY, also_bearer=True)["Authorization"] == f"Bearer {DEMO_SECRET_KEY}"


def test_the_platforms_jwt_secret_is_refused_as_the_processors() -> None:
    from processor.config import Settings
    from processor.errors import ConfigError

    env = {"DATABASE_URL": "postgresql://u@h/d", "FUNCTIONS_URL": "https://x.supabase.co/functions/v1",
           "SUPABASE_JWT_SECRET": DEMO_JWT_SECRET, "PROCESSOR_JWT_SECRET": DEMO_JWT_SECRET}
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env, need=("database", "dispatch"))
    assert [p.split(":")[0] for p in info.value.problems] == ["PROCESSOR_JWT_SECRET"]
    assert DEMO_JWT_SECRET not in str(info.value)


async def test_an_owner_look_up_that_never_answers_is_a_503_not_a_hang() -> None:
    """A REST API that accepts the connection and never answers: 503 within check_timeout_s, so the generator
    answers before the processor's response time-out (which would count the attempt)."""
    async def hangs(_retry_id: str) -> str | None:
        await asyncio.sleep(3600)
        return None

    v = Verifier(GENERATOR, verifier().keys, hangs, check_timeout_s=0.2)
    err = await asyncio.wait_for(refused({"apikey": DEMO_SECRET_KEY}, {"retryHistoryId": ALICE_ROW}, v), 10)
    assert (err.status, err.code) == (503, "owner_lookup_failed")

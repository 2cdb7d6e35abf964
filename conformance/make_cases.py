"""Write conformance/authority_cases.json: the SPEC section 6 decisions both verifiers must make.

Run `.venv/bin/python conformance/make_cases.py` after changing a case. Keys are made fresh on every run (they are
test-only keys, printed in the file); tokens are signed here, so the file is data both languages read.
tests/unit/test_authority_conformance.py (Python) and generators/typescript/tests/conformance.test.ts
(TypeScript) run every case against a fixed clock, the owners listed and an owner look-up that fails for
`failing_rows`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mutations import mutations
from tokens import (
    ALICE, ALICE_ROW, BILLING, BOB, BOB_ROW, FAILING_ROW, GEN, NOW, PLATFORM_SECRET, PROCESSOR_SECRET, PUBLISHABLE,
    ROW, SECRET, UNKNOWN_ROW, b64, bearer, enc, platform_ec, platform_rsa, processor_ec, processor_old, rsa_jwk,
    scoped, scoped_claims, serialization, sign, token, user, user_claims,
)

from processor.jws import public_jwk

OUT = Path(__file__).with_name("authority_cases.json")
ALLOW_USER = {"status": 200, "authority": "user", "user_id": ALICE, "credential": "user-jwt"}
CASES: list[dict[str, Any]] = []



def case(name: str, headers: dict[str, str], body: Any, expect: dict[str, Any] | int, code: str = "",
         **extra: Any) -> None:
    if isinstance(expect, int):
        expect = {"status": expect, "code": code}
    CASES.append({"name": name, "headers": headers, "body": body, "expect": expect, **extra})


def service(owner: str = ALICE, row: str = ALICE_ROW, credential: str = "secret-key") -> dict[str, Any]:
    return {"status": 200, "authority": "service-key", "user_id": owner, "retry_history_id": row,
            "credential": credential}


def allow_scoped(attempt: int = 1) -> dict[str, Any]:
    return {"status": 200, "authority": "scoped-jwt", "user_id": ALICE, "retry_history_id": ALICE_ROW,
            "attempt": attempt, "credential": "scoped-jwt"}


def build() -> None:
    # --- user JWTs (SPEC 6 rows 1-3)
    case("user jwt, no retryHistoryId", bearer(user()), {"prompt": "a site"}, ALLOW_USER)
    case("user jwt, own row", bearer(user()), ROW, {**ALLOW_USER, "retry_history_id": ALICE_ROW, "attempt": 1})
    case("user jwt, someone else's row", bearer(user()), {"retryHistoryId": BOB_ROW}, 403, "not_owner")
    case("user jwt, unknown row looks like someone else's", bearer(user()), {"retryHistoryId": UNKNOWN_ROW}, 403,
         "not_owner")
    case("user jwt, owner look-up fails", bearer(user()), {"retryHistoryId": FAILING_ROW}, 503, "owner_lookup_failed")
    case("user jwt with aud as a list", bearer(user(aud=["authenticated", "other"])), {}, ALLOW_USER)
    case("user jwt with aud as a list without authenticated", bearer(user(aud=["anon"])), {}, 401, "not_a_user_token")
    case("user jwt without aud", bearer(user(aud=None)), {}, 401, "not_a_user_token")
    case("user jwt without role", bearer(user(role=None)), {}, 401, "not_a_user_token")
    case("user jwt with aud anon", bearer(user(aud="anon")), {}, 401, "not_a_user_token")
    case("user jwt in apikey", {"apikey": user()}, {}, 401, "user_token_in_apikey")
    case("user jwt in apikey with a row", {"apikey": user()}, ROW, 401, "user_token_in_apikey")
    case("user jwt, sub not a uuid", bearer(user(sub="alice")), {}, 401, "missing_sub")
    case("user jwt without sub", bearer(user(sub=None)), {}, 401, "missing_sub")
    case("user jwt, sub with a trailing newline", bearer(user(sub=ALICE + "\n")), {}, 401, "missing_sub")
    case("user jwt, sub as a number", bearer(user(sub=12)), {}, 401, "missing_sub")
    case("user jwt, sub upper case is the same user", bearer(user(sub=ALICE.upper())), {}, ALLOW_USER)
    case("user jwt ES256 through the platform jwks",
         bearer(token(user_claims(), alg="ES256", key=platform_ec, kid="platform-ec")), {}, ALLOW_USER)
    case("user jwt RS256 through the platform jwks",
         bearer(token(user_claims(), alg="RS256", key=platform_rsa, kid="platform-rsa")), {}, ALLOW_USER)
    case("user jwt and a publishable apikey (supabase-js)", {**bearer(user()), "apikey": PUBLISHABLE}, {}, ALLOW_USER)
    case("user jwt and a secret apikey: Authorization decides", {**bearer(user()), "apikey": SECRET},
         {"retryHistoryId": BOB_ROW}, 403, "not_owner")
    case("anonymous sign-in user is a user", bearer(user(is_anonymous=True)), {}, ALLOW_USER)
    case("service_role token that is also a user", bearer(user(role="service_role")), ROW, 401, "ambiguous_token")

    # --- scoped tokens (rows 4-6)
    case("scoped ES256 token", bearer(scoped()), ROW, allow_scoped())
    case("scoped ES256 token in apikey", {"apikey": scoped()}, ROW, allow_scoped())
    case("scoped token, body without retryAttempt", bearer(scoped()), {"retryHistoryId": ALICE_ROW}, allow_scoped())
    case("scoped token signed with the previous key (rotation)",
         bearer(token(scoped_claims(), alg="ES256", key=processor_old, kid="gp-conf-1")), ROW, allow_scoped())
    case("scoped HS256 token with the processor's shared secret",
         bearer(token(scoped_claims(), key=PROCESSOR_SECRET)), ROW, allow_scoped())
    case("scoped HS256 token, no shared secret configured", bearer(token(scoped_claims(), key=PROCESSOR_SECRET)), ROW,
         401, "hs256_not_configured", keys={"processor_secret": ""})
    case("scoped token signed with the platform's JWT secret", bearer(token(scoped_claims())), ROW, 401,
         "bad_signature")
    case("scoped token signed with the platform's ES256 key",
         bearer(token(scoped_claims(), alg="ES256", key=platform_ec, kid="platform-ec")), ROW, 401, "unknown_kid")
    case("scoped token with the processor's kid, signed by another key",
         bearer(token(scoped_claims(), alg="ES256", key=platform_ec, kid="gp-conf-2")), ROW, 401, "bad_signature")
    case("scoped token without jti", bearer(scoped(jti=None)), ROW, 401, "invalid_scoped_token")
    case("scoped token with an empty jti", bearer(scoped(jti="")), ROW, 401, "invalid_scoped_token")
    case("scoped token with a numeric jti", bearer(scoped(jti=7)), ROW, 401, "invalid_scoped_token")
    case("scoped token with a 201-character jti", bearer(scoped(jti="j" * 201)), ROW, 401, "invalid_scoped_token")
    # characters are code points, as the database counts them: 150 emoji are 300 UTF-16 units in TypeScript
    case("scoped token with a jti of 150 emoji", bearer(scoped(jti="\U0001F600" * 150)), ROW, allow_scoped())
    case("scoped token with a jti of 201 emoji", bearer(scoped(jti="\U0001F600" * 201)), ROW, 401,
         "invalid_scoped_token")
    # a jti a database column cannot keep (NUL, a lone surrogate) or a control character: refused as malformed,
    # never handed to the replay guard (whose failure is a 503, "retry later", for a token that never passes)
    case("scoped token with a NUL in its jti", bearer(scoped(jti="a\x00b")), ROW, 401, "invalid_scoped_token")
    case("scoped token with a lone surrogate jti", bearer(scoped(jti="\ud800")), ROW, 401, "invalid_scoped_token")
    case("scoped token with a newline in its jti", bearer(scoped(jti="a\nb")), ROW, 401, "invalid_scoped_token")
    case("scoped token with a zero-width joiner in its jti", bearer(scoped(jti="a\u200db")), ROW, allow_scoped())
    case("scoped token claiming service_role", bearer(scoped(role="service_role")), ROW, 401, "invalid_scoped_token")
    case("scoped token without sub", bearer(scoped(sub=None)), ROW, 401, "invalid_scoped_token")
    case("scoped token, sub with a trailing newline", bearer(scoped(sub=ALICE + "\n")), ROW, 401,
         "invalid_scoped_token")
    case("scoped token for another generator", bearer(scoped(aud="generate-php-website")), ROW, 403, "wrong_audience")
    case("scoped token with aud as a list", bearer(scoped(aud=[GEN])), ROW, 403, "wrong_audience")
    case("scoped token without aud", bearer(scoped(aud=None)), ROW, 403, "wrong_audience")
    case("scoped token for another row", bearer(scoped(retry_history_id=BOB_ROW, sub=BOB)), ROW, 403,
         "retry_id_mismatch")
    case("scoped token, body without retryHistoryId", bearer(scoped()), {"prompt": "x"}, 403, "retry_id_mismatch")
    case("scoped token, retry_history_id upper case", bearer(scoped(retry_history_id=ALICE_ROW.upper())), ROW,
         allow_scoped())
    case("scoped token for another attempt", bearer(scoped()), {**ROW, "retryAttempt": 2}, 403, "attempt_mismatch")
    case("scoped token without attempt", bearer(scoped(attempt=None)), ROW, 403, "attempt_mismatch")
    case("scoped token with attempt as a string", bearer(scoped(attempt="1")), ROW, 403, "attempt_mismatch")
    case("scoped token with attempt true", bearer(scoped(attempt=True)), ROW, 403, "attempt_mismatch")
    case("scoped token with attempt 1.0 is attempt 1", bearer(scoped(attempt=1.0)), ROW, allow_scoped())
    case("scoped token whose sub is not the owner", bearer(scoped(sub=BOB)), ROW, 403, "not_owner")
    case("scoped token for an unknown row", bearer(scoped(retry_history_id=UNKNOWN_ROW)),
         {"retryHistoryId": UNKNOWN_ROW, "retryAttempt": 1}, 404, "retry_record_not_found")
    case("scoped token, owner look-up fails", bearer(scoped(retry_history_id=FAILING_ROW)),
         {"retryHistoryId": FAILING_ROW, "retryAttempt": 1}, 503, "owner_lookup_failed")
    used = scoped_claims()["jti"]
    case("scoped token replayed", bearer(scoped()), ROW, 409, "token_replayed", used_jtis=[used])
    case("scoped token replayed with another idempotency key", {**bearer(scoped()), "Idempotency-Key": "x:9"}, ROW,
         409, "token_replayed", used_jtis=[used])
    case("scoped token replayed for another generator: 403 first", bearer(scoped(aud="generate-php-website")), ROW,
         403, "wrong_audience", used_jtis=[used])
    # replay_down: the replay guard raises (its database is down): a 503 to retry, never a replay nor a pass;
    # credentials that do not use it are not affected
    case("scoped token, replay guard down", bearer(scoped()), ROW, 503, "replay_check_failed", replay_down=True)
    case("scoped token for another generator, replay guard down: 403 first", bearer(scoped(aud="generate-php-website")),
         ROW, 403, "wrong_audience", replay_down=True)
    case("secret key, replay guard down: not consulted", {"apikey": SECRET}, ROW, {**service(), "attempt": 1},
         replay_down=True)
    case("user jwt, replay guard down: not consulted", bearer(user()), {"prompt": "a site"}, ALLOW_USER,
         replay_down=True)
    case("scoped token expired", bearer(scoped(exp=NOW - 31)), ROW, 401, "token_expired")
    case("scoped token expired and replayed: expiry first", bearer(scoped(exp=NOW - 31)), ROW, 401, "token_expired",
         used_jtis=[used])
    case("scoped token expired within the 30 s leeway", bearer(scoped(exp=NOW - 29)), ROW, allow_scoped())
    case("scoped token from another issuer is checked as a platform token",
         bearer(token(scoped_claims(iss="someone"), alg="ES256", key=processor_ec, kid="gp-conf-2")), ROW, 401,
         "unknown_kid")

    # --- service authority (rows 7-10)
    case("secret key in apikey", {"apikey": SECRET}, ROW, {**service(), "attempt": 1})
    case("secret key as a Bearer (the seed's request)", bearer(SECRET), {"retryHistoryId": BOB_ROW},
         service(BOB, BOB_ROW))
    case("secret key in both headers", {**bearer(SECRET), "apikey": SECRET}, {"retryHistoryId": BOB_ROW},
         service(BOB, BOB_ROW))
    case("lower-case header names and scheme", {"authorization": f"bearer {SECRET}"}, {"retryHistoryId": BOB_ROW},
         service(BOB, BOB_ROW))
    case("upper-case header names", {"APIKEY": SECRET}, {"retryHistoryId": BOB_ROW}, service(BOB, BOB_ROW))
    case("a second named secret key", {"apikey": BILLING}, {"retryHistoryId": BOB_ROW}, service(BOB, BOB_ROW))
    case("secret key with surrounding spaces", {"apikey": f"  {SECRET}\t"}, {"retryHistoryId": BOB_ROW},
         service(BOB, BOB_ROW))
    case("bearer with two spaces", {"Authorization": f"Bearer  {SECRET}"}, {"retryHistoryId": BOB_ROW},
         service(BOB, BOB_ROW))
    case("unknown secret key", {"apikey": "sb_secret_not-the-configured-one"}, ROW, 401, "unknown_secret_key")
    case("prefix of the configured secret key", {"apikey": SECRET[:-1]}, ROW, 401, "unknown_secret_key")
    case("configured key plus a character", {"apikey": SECRET + "x"}, ROW, 401, "unknown_secret_key")
    case("secret key with a trailing newline", {"apikey": SECRET + "\n"}, ROW, 401, "unknown_secret_key")
    case("secret key, no retryHistoryId", {"apikey": SECRET}, {"prompt": "x"}, 403, "retry_id_required")
    case("secret key, body is an array", {"apikey": SECRET}, [ALICE_ROW], 403, "retry_id_required")
    case("secret key, body is null", {"apikey": SECRET}, None, 403, "retry_id_required")
    case("secret key, retryHistoryId null", {"apikey": SECRET}, {"retryHistoryId": None}, 403, "retry_id_required")
    case("secret key, unknown row", {"apikey": SECRET}, {"retryHistoryId": UNKNOWN_ROW}, 404, "retry_record_not_found")
    case("secret key, owner look-up fails (REST 503)", {"apikey": SECRET}, {"retryHistoryId": FAILING_ROW}, 503,
         "owner_lookup_failed")
    legacy = token({"iss": "supabase", "ref": "ref", "role": "service_role", "iat": NOW - 10, "exp": NOW + 10**8})
    case("legacy service_role jwt", bearer(legacy), ROW, {**service(credential="service-role-jwt"), "attempt": 1})
    case("legacy service_role jwt in apikey", {"apikey": legacy}, ROW,
         {**service(credential="service-role-jwt"), "attempt": 1})
    case("legacy service_role jwt, no retryHistoryId", bearer(legacy), {}, 403, "retry_id_required")
    case("legacy service_role jwt configured as the key, no platform secret", bearer(legacy), ROW,
         {**service(credential="service-role-jwt"), "attempt": 1},
         keys={"service_role_key": legacy, "jwt_secret": "", "secret_keys": {}})
    case("opaque configured service-role key", {"apikey": "an-opaque-service-role-key"}, ROW,
         {**service(), "attempt": 1}, keys={"service_role_key": "an-opaque-service-role-key"})
    case("legacy service_role jwt, expired", bearer(token({"role": "service_role", "exp": NOW - 100})), ROW, 401,
         "token_expired")

    # --- publishable and anon (row 11)
    anon = token({"iss": "supabase", "ref": "ref", "role": "anon", "iat": NOW - 10, "exp": NOW + 10**8})
    case("publishable key in apikey", {"apikey": PUBLISHABLE}, ROW, 401, "publishable_key")
    case("publishable key as a Bearer", bearer(PUBLISHABLE), ROW, 401, "publishable_key")
    case("anon jwt as a Bearer", bearer(anon), ROW, 401, "anon_key")
    case("anon jwt in apikey", {"apikey": anon}, ROW, 401, "anon_key")
    case("anon jwt Bearer and a secret apikey: Authorization decides", {**bearer(anon), "apikey": SECRET}, ROW, 401,
         "anon_key")

    # --- missing, malformed, expired, forged (row 12)
    case("no credentials", {}, ROW, 401, "missing_credentials")
    case("empty headers", {"Authorization": "", "apikey": " "}, ROW, 401, "missing_credentials")
    case("Basic authorization", {"Authorization": "Basic dXNlcjpwYXNz"}, ROW, 401, "unsupported_authorization")
    case("Bearer without a token", {"Authorization": "Bearer"}, ROW, 401, "unsupported_authorization")
    case("Bearer and spaces", {"Authorization": "Bearer   "}, ROW, 401, "unsupported_authorization")
    case("bad Bearer, good apikey", {"Authorization": "Bearer nope", "apikey": SECRET}, ROW, 401,
         "malformed_credentials")
    case("opaque Bearer", bearer("not-a-token"), ROW, 401, "malformed_credentials")
    case("two dots, empty parts", bearer("a..c"), ROW, 401, "malformed_credentials")
    case("four parts", bearer(user() + ".x"), ROW, 401, "malformed_credentials")
    case("a space inside the token", bearer(user()[:20] + " " + user()[20:]), ROW, 401, "malformed_credentials")
    case("base64 padding in the token", bearer(user().replace(".", "=.", 1)), ROW, 401, "malformed_credentials")
    case("three parts that are not base64 JSON", bearer("a.b.c"), ROW, 401, "malformed_token")
    case("header is not JSON", bearer(f"{enc('nope')}.{enc(user_claims())}.sig"), ROW, 401, "malformed_token")
    case("header is a JSON array", bearer(f"{enc(['HS256'])}.{enc(user_claims())}.sig"), ROW, 401, "malformed_token")
    case("payload is not JSON", bearer(token(None, raw_payload="not json")), ROW, 401, "malformed_token")
    case("payload is a JSON array", bearer(token([1, 2])), ROW, 401, "malformed_token")
    case("payload has NaN", bearer(token(None, raw_payload='{"role":"authenticated","exp":NaN}')), ROW, 401,
         "malformed_token")
    case("payload starts with a BOM", bearer(token(None, raw_payload="\ufeff" + json.dumps(user_claims()))), ROW, 401,
         "malformed_token")
    bad_utf8 = enc({"alg": "HS256"}) + "." + b64(b'{"sub":"\xff"}')
    case("payload is not UTF-8", bearer(f"{bad_utf8}.{b64(sign('HS256', PLATFORM_SECRET, bad_utf8.encode()))}"), ROW,
         401, "malformed_token")
    deep = "[" * 3000 + "]" * 3000
    case("payload nesting 3000 deep", bearer(token(None, raw_payload=deep)), ROW, 401, "malformed_token")
    case("signature of impossible base64 length", bearer(user()[:-(len(user().split(".")[2]))] + "abcde"), ROW, 401,
         "malformed_token")
    case("alg none", bearer(f"{enc({'alg': 'none', 'typ': 'JWT'})}.{enc(user_claims())}."), ROW, 401,
         "alg_not_allowed")
    case("alg None", bearer(f"{enc({'alg': 'None'})}.{enc(user_claims())}.c2ln"), ROW, 401, "alg_not_allowed")
    case("alg missing", bearer(token(user_claims(), header={"typ": "JWT"})), ROW, 401, "alg_not_allowed")
    case("alg as a list", bearer(token(user_claims(), header={"alg": ["HS256"]})), ROW, 401, "alg_not_allowed")
    for alg in ("HS384", "HS512", "RS512", "PS256", "ES384", "EdDSA", "hs256"):
        case(f"alg {alg}", bearer(token(user_claims(), header={"alg": alg}, sign_as="HS256")), ROW, 401,
             "alg_not_allowed")
    case("crit header", bearer(token(user_claims(), header={"alg": "HS256", "crit": ["exp"], "exp": 1})), ROW, 401,
         "malformed_token")
    case("b64 header", bearer(token(user_claims(), header={"alg": "HS256", "b64": False})), ROW, 401,
         "malformed_token")
    case("kid is a number", bearer(token(user_claims(), header={"alg": "ES256", "kid": 1}, alg="ES256",
                                         key=platform_ec)), ROW, 401,
         "malformed_token")
    case("unknown kid", bearer(token(user_claims(), alg="ES256", key=platform_ec, kid="nope")), ROW, 401,
         "unknown_kid")
    case("ES256 without kid", bearer(token(user_claims(), alg="ES256", key=platform_ec)), ROW, 401, "unknown_kid")
    case("RS256 token naming an EC kid", bearer(token(user_claims(), alg="RS256", key=platform_rsa, kid="platform-ec")),
         ROW, 401, "unknown_kid")
    pub_pem = platform_ec.public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
    case("HS256 signed with the public key PEM (alg confusion)",
         bearer(token(user_claims(), header={"alg": "HS256", "kid": "platform-ec"}, key=pub_pem)), ROW, 401,
         "bad_signature")
    case("HS256 signed with the public JWK (alg confusion)",
         bearer(token(user_claims(), header={"alg": "HS256", "kid": "platform-ec"},
                      key=json.dumps(public_jwk(platform_ec.public_key(), "platform-ec")).encode())), ROW, 401,
         "bad_signature")
    case("scoped HS256 signed with the processor's public JWK (alg confusion)",
         bearer(token(scoped_claims(), header={"alg": "HS256", "kid": "gp-conf-2"},
                      key=json.dumps(public_jwk(processor_ec.public_key(), "gp-conf-2")).encode())), ROW, 401,
         "bad_signature")
    case("HS256 user token, no platform secret configured", bearer(user()), {}, 401, "hs256_not_configured",
         keys={"jwt_secret": ""})
    case("wrong HS256 secret", bearer(token(user_claims(), key="another-secret-that-is-at-least-32-chars!!")), ROW,
         401, "bad_signature")
    case("payload changed after signing", bearer(f"{user().split('.')[0]}.{enc(user_claims(sub=BOB))}."
                                                 f"{user().split('.')[2]}"), ROW, 401, "bad_signature")
    case("signature removed", bearer(user().rsplit(".", 1)[0] + "."), ROW, 401, "bad_signature")
    case("ES256 signature of 63 bytes", bearer(token(user_claims(), alg="ES256", key=platform_ec, kid="platform-ec")
                                               .rsplit(".", 1)[0] + "." + b64(b"\x01" * 63)), ROW, 401, "bad_signature")
    case("expired user jwt", bearer(user(exp=NOW - 120)), {}, 401, "token_expired")
    case("user jwt expired within leeway", bearer(user(exp=NOW - 10)), {}, ALLOW_USER)
    case("user jwt without exp", bearer(user(exp=None)), {}, 401, "missing_claim")
    case("exp as a string", bearer(user(exp=str(NOW + 100))), {}, 401, "invalid_token")
    case("exp true", bearer(user(exp=True)), {}, 401, "invalid_token")
    huge_exp = json.dumps(user_claims(exp=0)).replace('"exp": 0', '"exp": 1e400')
    assert "1e400" in huge_exp
    case("exp 1e400", bearer(token(None, raw_payload=huge_exp)), {}, 401, "invalid_token")
    case("exp as a float in the future", bearer(user(exp=NOW + 0.5)), {}, ALLOW_USER)
    case("nbf in the future", bearer(user(nbf=NOW + 120)), {}, 401, "token_not_yet_valid")
    case("nbf within leeway", bearer(user(nbf=NOW + 20)), {}, ALLOW_USER)
    case("nbf as a string", bearer(user(nbf="soon")), {}, 401, "invalid_token")
    case("huge Authorization header", bearer("x" * 20000), ROW, 401, "credential_too_large")
    case("huge apikey header", {"apikey": "sb_secret_" + "y" * 9000}, ROW, 401, "credential_too_large")
    case("a valid token padded past the limit", bearer(user(pad="p" * 9000)), {}, 401, "credential_too_large")
    case("a large but allowed token", bearer(user(pad="p" * 5000)), {}, ALLOW_USER)

    # --- malformed ids: 400 (never 404), before anything else
    for label, bad in (("not a uuid", "1; DROP TABLE x"), ("with a trailing newline", ALICE_ROW + "\n"),
                       ("with a leading space", " " + ALICE_ROW), ("in braces", "{" + ALICE_ROW + "}"),
                       ("without hyphens", ALICE_ROW.replace("-", "")), ("as a urn", "urn:uuid:" + ALICE_ROW),
                       ("empty", ""), ("a number", 12345), ("a list", [ALICE_ROW]), ("true", True),
                       ("too long", ALICE_ROW + "0")):
        case(f"retryHistoryId {label}", {"apikey": SECRET}, {"retryHistoryId": bad}, 400, "bad_retry_history_id")
    case("retryHistoryId malformed, no credentials", {}, {"retryHistoryId": "x"}, 400, "bad_retry_history_id")
    case("retryHistoryId upper case is the same row", {"apikey": SECRET}, {"retryHistoryId": BOB_ROW.upper()},
         service(BOB, BOB_ROW))
    for label, bad in (("a string", "1"), ("true", True), ("negative", -1), ("2**31", 2**31), ("1.5", 1.5),
                       ("a list", [1])):
        case(f"retryAttempt {label}", {"apikey": SECRET}, {"retryHistoryId": ALICE_ROW, "retryAttempt": bad}, 400,
             "bad_retry_attempt")
    case("retryAttempt 2.0 is attempt 2", {"apikey": SECRET}, {"retryHistoryId": ALICE_ROW, "retryAttempt": 2.0},
         {**service(), "attempt": 2})


def main() -> None:
    build()
    context = {
        "generator": GEN, "now": NOW, "leeway_s": 30,
        "owners": {ALICE_ROW: ALICE, BOB_ROW: BOB}, "failing_rows": [FAILING_ROW],
        "keys": {
            "secret_keys": {"default": SECRET, "billing": BILLING},
            "service_role_key": "",
            "jwt_secret": PLATFORM_SECRET,
            "jwks": {"keys": [public_jwk(platform_ec.public_key(), "platform-ec"),
                              rsa_jwk(platform_rsa.public_key(), "platform-rsa")]},
            "processor_jwks": {"keys": [public_jwk(processor_ec.public_key(), "gp-conf-2"),
                                        public_jwk(processor_old.public_key(), "gp-conf-1")]},
            "processor_secret": PROCESSOR_SECRET,
        },
    }
    mutations(CASES, context)
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    OUT.write_text(json.dumps({"about": "SPEC section 6 conformance: see conformance/make_cases.py",
                               "context": context, "cases": CASES}, indent=1) + "\n")
    print(f"wrote {len(CASES)} cases to {OUT}")



if __name__ == "__main__":
    main()

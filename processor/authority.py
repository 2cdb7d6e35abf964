"""Service authority for generators: tell the credential's kind first, then decide (SPEC section 6).

Pure: the only I/O is the injected `owner_of(retry_history_id)` look-up and replay guard. `Verifier.verify()`
returns a Principal or raises AuthorityError carrying the HTTP status, a stable reason code and a message; it never
lets another exception out, so a generator using it cannot answer 500 because of a hostile header.
generators/typescript/src/authority.ts makes the same decisions; conformance/authority_cases.json holds both.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from processor.errors import ProcessorError
from processor.jws import Compact, JwsError, is_jwt_shaped, load_jwks, parse, verify_hs256, verify_public
from processor.minting import ISSUER
from processor.replay import MemoryReplayGuard, ReplayGuard

MAX_LEEWAY_S = 30.0
CHECK_TIMEOUT_S = 10.0  # an owner look-up or a replay guard that has not answered by then: 503
MAX_CREDENTIAL_CHARS = 8192
SECRET_PREFIX = "sb_secret_"
PUBLISHABLE_PREFIX = "sb_publishable_"
UUID_SHAPE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

OwnerLookup = Callable[[str], Awaitable[str | None]]


class AuthorityError(ProcessorError):
    """A request is not allowed: status 400/401/403/404/409/503, a stable code, a human message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def as_json(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}


@dataclass(frozen=True)
class Principal:
    """Who a request acts for, and how that was decided."""

    user_id: str
    authority: str  # "user", "service-key" or "scoped-jwt"
    retry_history_id: str | None = None
    attempt: int | None = None
    credential: str = ""  # what was presented: user-jwt, secret-key, service-role-jwt, scoped-jwt


@dataclass(frozen=True)
class Keys:
    """What a generator knows: the platform's keys (service keys, user-token keys) and the processor's."""

    secret_keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    service_role_key: str = field(default="", repr=False)
    jwt_secret: str = field(default="", repr=False)  # the platform's legacy HS256 secret: user tokens only
    jwks: Mapping[str, Any] | None = field(default=None, repr=False)  # the platform's JWKS: user tokens
    processor_jwks: Mapping[str, Any] | None = field(default=None, repr=False)  # scoped tokens, ES256
    processor_secret: str = field(default="", repr=False)  # scoped tokens, HS256

    def service_keys(self) -> list[str]:
        return [k for k in (*self.secret_keys.values(), self.service_role_key) if k]


def credential_kind(value: str) -> str:
    """secret-key, publishable-key, jwt, or opaque: decided before anything is parsed."""
    if value.startswith(SECRET_PREFIX):
        return "secret-key"
    if value.startswith(PUBLISHABLE_PREFIX):
        return "publishable-key"
    return "jwt" if is_jwt_shaped(value) else "opaque"


def _fail(status: int, code: str, message: str) -> AuthorityError:
    return AuthorityError(status, code, message)


class Verifier:
    """Decides for one generator. Build once; verify() per request."""

    def __init__(self, generator: str, keys: Keys, owner_of: OwnerLookup, *, leeway_s: float = MAX_LEEWAY_S,
                 clock: Callable[[], float] = time.time, replay: ReplayGuard | None = None,
                 check_timeout_s: float = CHECK_TIMEOUT_S) -> None:
        if leeway_s > MAX_LEEWAY_S:
            raise ValueError(f"leeway is at most {MAX_LEEWAY_S:g} s")
        self.generator, self.keys, self.owner_of = generator, keys, owner_of
        self.leeway_s, self.clock, self.check_timeout_s = leeway_s, clock, check_timeout_s
        self.replay = replay if replay is not None else MemoryReplayGuard(clock=clock)
        self._service_keys = [k.encode() for k in keys.service_keys()]
        self._platform_keys = load_jwks(keys.jwks)
        self._processor_keys = load_jwks(keys.processor_jwks)

    async def verify(self, headers: Mapping[str, str], body: Any) -> Principal:
        """Return the principal of a request, or raise AuthorityError (never anything else)."""
        try:
            return await self._verify(headers, body)
        except AuthorityError:
            raise
        except Exception as exc:  # a hostile input must never become a 500
            reason = f"credentials could not be verified ({type(exc).__name__})"
            raise _fail(401, "invalid_credentials", reason) from exc

    async def _verify(self, headers: Mapping[str, str], body: Any) -> Principal:
        lower = {str(k).lower(): str(v).strip(" \t") for k, v in headers.items()}
        retry_id, attempt = _retry_fields(body)
        authorization, apikey = lower.get("authorization", ""), lower.get("apikey", "")
        if len(authorization) > MAX_CREDENTIAL_CHARS or len(apikey) > MAX_CREDENTIAL_CHARS:
            raise _fail(401, "credential_too_large", f"a credential over {MAX_CREDENTIAL_CHARS} characters")
        if authorization:
            scheme, _, token = authorization.partition(" ")
            token = token.strip(" \t")
            if scheme.lower() != "bearer" or not token:
                raise _fail(401, "unsupported_authorization", "Authorization must be 'Bearer <token>'")
            return await self._decide(token, retry_id, attempt, source="bearer")
        if apikey:
            return await self._decide(apikey, retry_id, attempt, source="apikey")
        raise _fail(401, "missing_credentials", "no Authorization or apikey header")

    async def _decide(self, credential: str, retry_id: str | None, attempt: int | None, *, source: str) -> Principal:
        kind = credential_kind(credential)
        if kind == "publishable-key":
            raise _fail(401, "publishable_key", "a publishable key alone does not authorize a generation")
        if self._is_service_key(credential):
            return await self._as_service(retry_id, attempt, "secret-key" if kind != "jwt" else "service-role-jwt")
        if kind == "secret-key":
            raise _fail(401, "unknown_secret_key", "secret key not recognised")
        if kind == "jwt":
            return await self._decide_jwt(credential, retry_id, attempt, source=source)
        raise _fail(401, "malformed_credentials", f"the {source} credential is neither an API key nor a JWT")

    def _is_service_key(self, credential: str) -> bool:
        given = credential.encode()
        matched = False
        for key in self._service_keys:
            matched |= hmac.compare_digest(given, key)  # constant time, every key compared
        return matched

    async def _decide_jwt(self, token: str, retry_id: str | None, attempt: int | None, *, source: str) -> Principal:
        try:
            compact = parse(token)
            # the issuer picks the family of keys; the signature is then checked with that family only
            scoped = compact.claims.get("iss") == ISSUER
            self._check_signature(compact, scoped)
        except JwsError as exc:
            raise _fail(401, exc.code, exc.message) from exc
        claims = compact.claims
        self._check_times(claims)
        if scoped:
            return await self._as_scoped(claims, retry_id, attempt)
        role = claims.get("role")
        if role == "service_role":
            if "sub" in claims and _has_audience(claims, "authenticated"):
                raise _fail(401, "ambiguous_token", "a token cannot be both a user and the service role")
            return await self._as_service(retry_id, attempt, "service-role-jwt")
        if role == "anon":
            raise _fail(401, "anon_key", "an anon token does not authorize a generation")
        if role != "authenticated" or not _has_audience(claims, "authenticated"):
            raise _fail(401, "not_a_user_token", "token role/audience is not 'authenticated'")
        if source == "apikey":
            raise _fail(401, "user_token_in_apikey", "a user token belongs in Authorization: Bearer")
        user_id = _uuid(claims.get("sub"))
        if user_id is None:
            raise _fail(401, "missing_sub", "user token has no valid sub")
        if retry_id is not None:
            owner = await self._owner(retry_id)
            if owner is None or owner != user_id:  # unknown and foreign look the same to a user
                raise _fail(403, "not_owner", "this generation belongs to another user")
        return Principal(user_id, "user", retry_id, attempt, "user-jwt")

    def _check_signature(self, token: Compact, scoped: bool) -> None:
        secret = self.keys.processor_secret if scoped else self.keys.jwt_secret
        if token.alg == "HS256":
            if not secret:
                raise JwsError("hs256_not_configured", "HS256 tokens are not accepted here")
            verify_hs256(token, secret.encode())
            return
        kid = token.header.get("kid")
        entry = (self._processor_keys if scoped else self._platform_keys).get(kid) if isinstance(kid, str) else None
        if entry is None or entry[0] != token.alg:
            raise JwsError("unknown_kid", "no public key for this token's kid and algorithm")
        verify_public(token, entry[1])

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self.clock()
        if "exp" not in claims:
            raise _fail(401, "missing_claim", "token lacks the exp claim")
        exp: Any = claims.get("exp")
        nbf: Any = claims.get("nbf", 0)
        if not _is_number(exp) or not _is_number(nbf):
            raise _fail(401, "invalid_token", "token exp/nbf is not a number")
        if now > float(exp) + self.leeway_s:
            raise _fail(401, "token_expired", "token has expired")
        if float(nbf) > now + self.leeway_s:
            raise _fail(401, "token_not_yet_valid", "token is not valid yet")

    async def _owner(self, retry_id: str) -> str | None:
        try:  # within check_timeout_s: a hung REST API must not hold the request until the processor gives up
            owner = await asyncio.wait_for(self.owner_of(retry_id), self.check_timeout_s)
        except Exception as exc:  # the database or the REST API is down: retry later, never "not found"
            raise _fail(503, "owner_lookup_failed", "the generation's owner could not be looked up") from exc
        return None if owner is None else str(owner).lower()

    async def _as_service(self, retry_id: str | None, attempt: int | None, credential: str) -> Principal:
        if retry_id is None:
            raise _fail(403, "retry_id_required", "service authority needs a retryHistoryId")
        owner = await self._owner(retry_id)
        if owner is None:
            raise _fail(404, "retry_record_not_found", "Retry record not found")
        return Principal(owner, "service-key", retry_id, attempt, credential)

    async def _as_scoped(self, claims: Mapping[str, Any], retry_id: str | None, attempt: int | None) -> Principal:
        jti, sub = claims.get("jti"), _uuid(claims.get("sub"))
        if not _is_jti(jti) or claims.get("role") == "service_role" or sub is None:
            raise _fail(401, "invalid_scoped_token", "scoped token lacks jti or sub, or claims service_role")
        if claims.get("aud") != self.generator:
            raise _fail(403, "wrong_audience", f"token is for {str(claims.get('aud'))[:80]!r}, not {self.generator}")
        if retry_id is None or _uuid(claims.get("retry_history_id")) != retry_id:
            raise _fail(403, "retry_id_mismatch", "token is for another generation")
        token_attempt: Any = claims.get("attempt")
        if not _is_attempt(token_attempt) or (attempt is not None and attempt != int(token_attempt)):
            raise _fail(403, "attempt_mismatch", "token is for another attempt")
        if await self._replay_check(self.replay.seen, jti):
            raise _fail(409, "token_replayed", "this token was already used")
        owner = await self._owner(retry_id)
        if owner is None:
            raise _fail(404, "retry_record_not_found", "Retry record not found")
        if owner != sub:
            raise _fail(403, "not_owner", "token subject is not the generation's owner")
        if not await self._replay_check(self.replay.use, jti, float(claims["exp"]) + self.leeway_s):
            raise _fail(409, "token_replayed", "this token was already used")
        return Principal(owner, "scoped-jwt", retry_id, int(token_attempt), "scoped-jwt")

    async def _replay_check(self, call: Callable[..., bool | Awaitable[bool]], *args: Any) -> bool:
        """The guard's answer: True or False, within check_timeout_s. A guard that fails (its database is down),
        hangs or answers anything else is a 503, like a failed owner look-up: never a pass."""
        try:
            answer = call(*args)
            if inspect.isawaitable(answer):
                answer = await asyncio.wait_for(answer, self.check_timeout_s)
        except Exception as exc:
            raise _fail(503, "replay_check_failed", "the token's use could not be checked") from exc
        if answer is not True and answer is not False:
            raise _fail(503, "replay_check_failed", f"the replay guard answered {type(answer).__name__}, not a bool")
        return answer


# A jti is 1-200 characters of text a database column can keep: no control character (NUL cannot be stored
# at all) and no lone surrogate (not encodable as UTF-8). Before, such a jti passed here and the SQL replay
# guard failed on it: a 503 "retry later" for a token that could never pass.
_NOT_JTI_TEXT = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def _is_jti(jti: Any) -> bool:
    return isinstance(jti, str) and 0 < len(jti) <= 200 and _NOT_JTI_TEXT.search(jti) is None


def _retry_fields(body: Any) -> tuple[str | None, int | None]:
    if not isinstance(body, Mapping):
        return None, None
    raw_id, raw_attempt = body.get("retryHistoryId"), body.get("retryAttempt")
    retry_id = None
    if raw_id is not None:
        retry_id = _uuid(raw_id)
        if retry_id is None:
            raise _fail(400, "bad_retry_history_id", "retryHistoryId must be a UUID")
    attempt = None
    if raw_attempt is not None:
        if not _is_attempt(raw_attempt):
            raise _fail(400, "bad_retry_attempt", "retryAttempt must be a non-negative integer")
        attempt = int(raw_attempt)
    return retry_id, attempt


def _is_attempt(value: Any) -> bool:
    """A whole number 0..2**31-1; 2.0 counts as 2, as it does in JavaScript, where JSON has one number type."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31


def _is_number(value: Any) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))  # JSON has no limit; 1e400 is not finite in either language
    except OverflowError:
        return False


def _uuid(value: Any) -> str | None:
    """The canonical lower-case form of a hyphenated UUID; None for anything else (no trailing newline)."""
    if not isinstance(value, str) or UUID_SHAPE.fullmatch(value) is None:
        return None
    return value.lower()


def _has_audience(claims: Mapping[str, Any], wanted: str) -> bool:
    aud = claims.get("aud")
    return aud == wanted or (isinstance(aud, list) and wanted in aud)

"""Service authority for generators: tell the credential's kind first, then decide (SPEC section 6).

Pure: the only I/O is the injected `owner_of(retry_history_id)` look-up. `Verifier.verify()` returns a
Principal or raises AuthorityError carrying the HTTP status, a stable reason code and a message; it never
lets another exception out, so a generator using it cannot answer 500 because of a hostile header.
"""

from __future__ import annotations

import hmac
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from processor.errors import ProcessorError

ISSUER = "generation-processor"
ALGORITHMS = ("HS256", "ES256", "RS256")
MAX_LEEWAY_S = 30.0
SECRET_PREFIX = "sb_secret_"
PUBLISHABLE_PREFIX = "sb_publishable_"

OwnerLookup = Callable[[str], Awaitable[str | None]]


class AuthorityError(ProcessorError):
    """A request is not allowed: status 400/401/403/404, a stable code, a human message."""

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
    """What a generator knows: secret keys, the legacy service-role key, the JWT secret, a JWKS."""

    secret_keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    service_role_key: str = field(default="", repr=False)
    jwt_secret: str = field(default="", repr=False)
    jwks: Mapping[str, Any] | None = field(default=None, repr=False)

    def service_keys(self) -> list[str]:
        return [k for k in (*self.secret_keys.values(), self.service_role_key) if k]


def credential_kind(value: str) -> str:
    """secret-key, publishable-key, jwt, or opaque: decided before anything is parsed."""
    if value.startswith(SECRET_PREFIX):
        return "secret-key"
    if value.startswith(PUBLISHABLE_PREFIX):
        return "publishable-key"
    if value.count(".") == 2 and all(value.split(".")[:2]):  # an unsigned JWT has an empty third part
        return "jwt"
    return "opaque"


def _fail(status: int, code: str, message: str) -> AuthorityError:
    return AuthorityError(status, code, message)


class Verifier:
    """Decides for one generator. Build once; verify() per request."""

    def __init__(self, generator: str, keys: Keys, owner_of: OwnerLookup, *, leeway_s: float = MAX_LEEWAY_S,
                 clock: Callable[[], float] = time.time) -> None:
        if leeway_s > MAX_LEEWAY_S:
            raise ValueError(f"leeway is at most {MAX_LEEWAY_S:g} s")
        self.generator, self.keys, self.owner_of = generator, keys, owner_of
        self.leeway_s, self.clock = leeway_s, clock
        self._service_keys = [k.encode() for k in keys.service_keys()]
        self._public_keys = _load_jwks(keys.jwks)

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
        lower = {str(k).lower(): str(v) for k, v in headers.items()}
        retry_id, attempt = _retry_fields(body)
        authorization = lower.get("authorization", "").strip()
        apikey = lower.get("apikey", "").strip()
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise _fail(401, "unsupported_authorization", "Authorization must be 'Bearer <token>'")
            return await self._decide(token.strip(), retry_id, attempt, source="bearer")
        if apikey:
            return await self._decide(apikey, retry_id, attempt, source="apikey")
        raise _fail(401, "missing_credentials", "no Authorization or apikey header")

    async def _decide(self, credential: str, retry_id: str | None, attempt: int | None, *, source: str) -> Principal:
        kind = credential_kind(credential)
        if kind == "publishable-key":
            raise _fail(401, "publishable_key", "a publishable key alone does not authorize a generation")
        if kind == "jwt":
            return await self._decide_jwt(credential, retry_id, attempt, source=source)
        if self._is_service_key(credential):
            return await self._as_service(retry_id, "secret-key", attempt)
        if kind == "secret-key":
            raise _fail(401, "unknown_secret_key", "secret key not recognised")
        raise _fail(401, "malformed_credentials", f"the {source} credential is neither an API key nor a JWT")

    def _is_service_key(self, credential: str) -> bool:
        given = credential.encode()
        matched = False
        for key in self._service_keys:
            matched |= hmac.compare_digest(given, key)  # constant time, every key compared
        return matched

    async def _decide_jwt(self, token: str, retry_id: str | None, attempt: int | None, *, source: str) -> Principal:
        if self._is_service_key(token):  # the legacy service_role key, configured as a key
            return await self._as_service(retry_id, "service-role-jwt", attempt)
        claims = self._decode(token)
        role = claims.get("role")
        if claims.get("iss") == ISSUER:
            return await self._as_scoped(claims, retry_id, attempt)
        if role == "service_role":
            if "sub" in claims and claims.get("aud") == "authenticated":
                raise _fail(401, "ambiguous_token", "a token cannot be both a user and the service role")
            return await self._as_service(retry_id, "service-role-jwt", attempt)
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
            owner = await self.owner_of(retry_id)
            if owner is None or owner != user_id:  # unknown and foreign look the same to a user
                raise _fail(403, "not_owner", "this generation belongs to another user")
        return Principal(user_id, "user", retry_id, attempt, "user-jwt")

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise _fail(401, "malformed_token", "token is not a well-formed JWT") from exc
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise _fail(401, "alg_not_allowed", f"algorithm {str(alg)[:20]!r} is not allowed")
        key: Any
        if alg == "HS256":
            if not self.keys.jwt_secret:
                raise _fail(401, "hs256_not_configured", "HS256 tokens are not accepted here")
            key = self.keys.jwt_secret
        else:
            kid = header.get("kid")
            entry = self._public_keys.get(str(kid)) if isinstance(kid, str) else None
            if entry is None or entry[0] != alg:
                raise _fail(401, "unknown_kid", "no public key for this token's kid and algorithm")
            key = entry[1]
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[alg], leeway=self.leeway_s,
                options={"require": ["exp"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError as exc:
            raise _fail(401, "token_expired", "token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise _fail(401, "token_not_yet_valid", "token is not valid yet") from exc
        except jwt.InvalidSignatureError as exc:
            raise _fail(401, "bad_signature", "token signature does not verify") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise _fail(401, "missing_claim", f"token lacks the {exc.claim} claim") from exc
        except jwt.InvalidTokenError as exc:
            raise _fail(401, "invalid_token", "token is not valid") from exc
        return claims

    async def _as_service(self, retry_id: str | None, credential: str, attempt: int | None) -> Principal:
        if retry_id is None:
            raise _fail(403, "retry_id_required", "service authority needs a retryHistoryId")
        owner = await self.owner_of(retry_id)
        if owner is None:
            raise _fail(404, "retry_record_not_found", "Retry record not found")
        return Principal(owner, "service-key", retry_id, attempt, credential)

    async def _as_scoped(self, claims: Mapping[str, Any], retry_id: str | None, attempt: int | None) -> Principal:
        if claims.get("role") != "service_role" or not claims.get("jti"):
            raise _fail(401, "invalid_scoped_token", "scoped token lacks role or jti")
        if claims.get("aud") != self.generator:
            raise _fail(403, "wrong_audience", f"token is for {str(claims.get('aud'))[:80]!r}, not {self.generator}")
        if retry_id is None or claims.get("retry_history_id") != retry_id:
            raise _fail(403, "retry_id_mismatch", "token is for another generation")
        token_attempt = claims.get("attempt")
        if not isinstance(token_attempt, int) or isinstance(token_attempt, bool) or (
                attempt is not None and attempt != token_attempt):
            raise _fail(403, "attempt_mismatch", "token is for another attempt")
        owner = await self.owner_of(retry_id)
        if owner is None:
            raise _fail(404, "retry_record_not_found", "Retry record not found")
        if owner != claims.get("sub"):
            raise _fail(403, "not_owner", "token subject is not the generation's owner")
        return Principal(owner, "scoped-jwt", retry_id, token_attempt, "scoped-jwt")


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
        if not isinstance(raw_attempt, int) or isinstance(raw_attempt, bool) or not 0 <= raw_attempt < 2**31:
            raise _fail(400, "bad_retry_attempt", "retryAttempt must be a non-negative integer")
        attempt = raw_attempt
    return retry_id, attempt


def _uuid(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _has_audience(claims: Mapping[str, Any], wanted: str) -> bool:
    aud = claims.get("aud")
    return aud == wanted or (isinstance(aud, list) and wanted in aud)


def _load_jwks(jwks: Mapping[str, Any] | None) -> dict[str, tuple[str, Any]]:
    """kid -> (algorithm, public key). Symmetric (oct) entries are ignored: HMAC only uses jwt_secret."""
    loaded: dict[str, tuple[str, Any]] = {}
    for jwk in (jwks or {}).get("keys", []):
        if not isinstance(jwk, Mapping) or not isinstance(jwk.get("kid"), str):
            continue
        kty = jwk.get("kty")
        if kty == "EC" and jwk.get("crv") == "P-256":
            loaded[jwk["kid"]] = ("ES256", ECAlgorithm.from_jwk(json.dumps(dict(jwk))))
        elif kty == "RSA":
            loaded[jwk["kid"]] = ("RS256", RSAAlgorithm.from_jwk(json.dumps(dict(jwk))))
    return loaded

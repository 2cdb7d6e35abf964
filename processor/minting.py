"""The processor's own signing key: scoped tokens minted per delivery, and `processor keygen` (SPEC section 6).

ES256 with a private key and a `kid` (default), or HS256 with a dedicated shared secret; never the
platform's JWT secret, and `role` is never `service_role`, so nothing that trusts the platform's keys
(its REST API, its gateway) accepts a scoped token. Signing uses `cryptography` directly: one ECDSA
signature per delivery, no per-token library overhead.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from processor.jws import b64url_encode, public_jwk

ISSUER = "generation-processor"
SCOPED_ROLE = "generation_retry"
MIN_SECRET_CHARS = 32


class SigningKeyError(ValueError):
    """The configured key cannot sign scoped tokens; the message names no secret."""


@dataclass(frozen=True)
class Delivery:
    """The facts about one delivery that its credential is scoped to."""

    generator: str
    user_id: str
    retry_history_id: str
    attempt: int


def load_private_key(pem: str) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from PEM; SigningKeyError when it is anything else or cannot sign."""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except TypeError as exc:
        raise SigningKeyError("the private key is encrypted; give it unencrypted (file mode 0600)") from exc
    except (ValueError, Exception) as exc:  # cryptography raises several types for a broken PEM
        raise SigningKeyError("not a readable PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SigningKeyError(f"ES256 needs a P-256 (prime256v1) EC key, not {type(key).__name__.lstrip('_')}")
    try:  # a key can parse and still not sign (a broken scalar, a backend refusing it)
        key.sign(b"probe", ec.ECDSA(hashes.SHA256()))
    except Exception as exc:
        raise SigningKeyError(f"the key cannot sign ({type(exc).__name__})") from exc
    return key


class Minter:
    """Mints scoped per-delivery tokens: ES256 with the processor's private key, or HS256 with a shared secret."""

    def __init__(self, *, private_key_pem: str = "", kid: str = "", shared_secret: str = "",
                 ttl_s: float = 300.0) -> None:
        self.ttl_s = ttl_s
        self._ec: ec.EllipticCurvePrivateKey | None = None
        self._secret = b""
        if private_key_pem:
            if not kid:
                raise SigningKeyError("a private key needs a kid, or no verifier can pick its public key")
            self._ec = load_private_key(private_key_pem)
            self.algorithm = "ES256"
            header: dict[str, str] = {"alg": "ES256", "typ": "JWT", "kid": kid}
        elif shared_secret:
            if len(shared_secret) < MIN_SECRET_CHARS:
                raise SigningKeyError(f"a shared secret needs at least {MIN_SECRET_CHARS} characters")
            self._secret = shared_secret.encode()
            self.algorithm = "HS256"
            header = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}
        else:
            raise SigningKeyError("a private key (ES256) or a shared secret (HS256) is required")
        self._header = b64url_encode(json.dumps(header, separators=(",", ":")).encode())

    def mint(self, d: Delivery, *, now: float | None = None) -> str:
        """A token that opens one attempt of one generation at one generator, once, for ttl_s."""
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "role": SCOPED_ROLE,
            "aud": d.generator,
            "sub": d.user_id,
            "retry_history_id": d.retry_history_id,
            "attempt": d.attempt,
            "iat": issued,
            "exp": issued + int(self.ttl_s),
            "jti": str(uuid.uuid4()),
        }
        signing_input = f"{self._header}.{b64url_encode(json.dumps(claims, separators=(',', ':')).encode())}"
        return f"{signing_input}.{b64url_encode(self._sign(signing_input.encode()))}"

    def _sign(self, data: bytes) -> bytes:
        if self._ec is None:
            return hmac.new(self._secret, data, hashlib.sha256).digest()
        r, s = decode_dss_signature(self._ec.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def check_signing_settings(private_key_pem: str, kid: str, shared_secret: str, platform_secret: str = "") -> list[str]:
    """Configuration problems of the scoped-jwt signing settings, one line each, naming the setting."""
    if shared_secret and platform_secret and hmac.compare_digest(shared_secret.encode(), platform_secret.encode()):
        return ["PROCESSOR_JWT_SECRET: must not be the platform's JWT secret (SUPABASE_JWT_SECRET): a token "
                "signed with it would be accepted by the platform's REST API"]
    if private_key_pem and shared_secret:
        return ["PROCESSOR_JWT_SECRET: set either PROCESSOR_JWT_PRIVATE_KEY (ES256) or PROCESSOR_JWT_SECRET "
                "(HS256), not both"]
    if not private_key_pem and not shared_secret:
        return ["PROCESSOR_JWT_PRIVATE_KEY: required for PROCESSOR_AUTH_MODE=scoped-jwt (make one with "
                "`processor keygen`; or PROCESSOR_JWT_SECRET for HS256)"]
    if private_key_pem and not kid:
        return ["PROCESSOR_JWT_KID: required with PROCESSOR_JWT_PRIVATE_KEY (the kid of its public JWK, "
                "printed by `processor keygen`)"]
    name = "PROCESSOR_JWT_PRIVATE_KEY" if private_key_pem else "PROCESSOR_JWT_SECRET"
    try:
        Minter(private_key_pem=private_key_pem, kid=kid, shared_secret=shared_secret)
    except SigningKeyError as exc:
        return [f"{name}: {exc}"]
    return []


def public_jwks_of(private_key_pem: str, kid: str) -> dict[str, Any]:
    """The public JWKS of the processor's key, for verifiers (the reference generator, the tests)."""
    return {"keys": [public_jwk(load_private_key(private_key_pem).public_key(), kid)]}


def thumbprint_kid(key: ec.EllipticCurvePublicKey) -> str:
    """A kid from the RFC 7638 thumbprint: stable for the key, different for every key."""
    jwk = public_jwk(key, "")
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    return "gp-" + b64url_encode(hashlib.sha256(canonical.encode()).digest())[:16]


def keygen(out: Path, *, previous_jwks: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """Write a new P-256 private key to `out` (mode 0600); return its kid and the JWKS to publish.

    The JWKS holds the new key first and, given the JWKS published before, that set's first key too, so
    generators accept tokens of both while the daemons switch over (rotation: two keys in the set).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    kid = thumbprint_kid(key.public_key())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    keys: list[Any] = [public_jwk(key.public_key(), kid)]
    previous = (previous_jwks or {}).get("keys")
    if isinstance(previous, list) and previous:
        keys.append(previous[0])
    return kid, {"keys": keys}

"""Compact JWS: strict parsing and signature checks with `cryptography` directly (SPEC section 6).

The same rules as generators/typescript/src/jws.ts, held to conformance/authority_cases.json: three
base64url parts, a JSON object in the header and the payload, HS256/ES256/RS256 only, no `crit`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

ALGORITHMS = ("HS256", "ES256", "RS256")
JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class JwsError(Exception):
    """A token that cannot be accepted; `code` is the reason code of SPEC section 6."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Compact:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes

    @property
    def alg(self) -> str:
        return str(self.header.get("alg"))


def is_jwt_shaped(value: str) -> bool:
    return JWT_SHAPE.fullmatch(value) is not None


def b64url_decode(part: str) -> bytes:
    if len(part) % 4 == 1:
        raise JwsError("malformed_token", "token is not base64url")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as exc:
        raise JwsError("malformed_token", "token is not base64url") from exc


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_object(part: str, what: str) -> dict[str, Any]:
    try:  # strict UTF-8, no BOM, no NaN/Infinity: exactly what JSON.parse accepts in the TypeScript kit
        value = json.loads(b64url_decode(part).decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # RecursionError: a part nesting thousands deep
        raise JwsError("malformed_token", f"token {what} is not JSON") from exc
    if not isinstance(value, dict):
        raise JwsError("malformed_token", f"token {what} is not a JSON object")
    return value


def parse(token: str) -> Compact:
    """Split and decode a compact JWS; checks the algorithm, not the signature."""
    if not is_jwt_shaped(token):
        raise JwsError("malformed_token", "token is not a well-formed JWT")
    head, body, sig = token.split(".")
    header = _json_object(head, "header")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        raise JwsError("alg_not_allowed", f"algorithm {str(alg)[:20]!r} is not allowed")
    if "crit" in header or header.get("b64") is not None:
        raise JwsError("malformed_token", "token header has critical extensions")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise JwsError("malformed_token", "token kid is not a string")
    claims = _json_object(body, "payload")
    return Compact(header, claims, f"{head}.{body}".encode(), b64url_decode(sig))


def verify_hs256(token: Compact, secret: bytes) -> None:
    expected = hmac.new(secret, token.signing_input, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, token.signature):
        raise JwsError("bad_signature", "token signature does not verify")


def verify_public(token: Compact, key: PublicKey) -> None:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            if len(token.signature) != 64:
                raise InvalidSignature
            r = int.from_bytes(token.signature[:32], "big")
            s = int.from_bytes(token.signature[32:], "big")
            key.verify(encode_dss_signature(r, s), token.signing_input, ec.ECDSA(hashes.SHA256()))
        else:
            key.verify(token.signature, token.signing_input, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as exc:
        raise JwsError("bad_signature", "token signature does not verify") from exc


def _int_from_b64(value: Any) -> int:
    if not isinstance(value, str):
        raise ValueError("not a base64url string")
    return int.from_bytes(b64url_decode(value), "big")


def load_jwks(jwks: Mapping[str, Any] | None) -> dict[str, tuple[str, PublicKey]]:
    """kid -> (algorithm, public key) for P-256 and RSA entries; others (and oct keys) are ignored."""
    loaded: dict[str, tuple[str, PublicKey]] = {}
    entries = (jwks or {}).get("keys", [])
    for jwk in entries if isinstance(entries, list) else []:
        if not isinstance(jwk, Mapping) or not isinstance(jwk.get("kid"), str):
            continue
        try:
            if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
                numbers = ec.EllipticCurvePublicNumbers(_int_from_b64(jwk.get("x")), _int_from_b64(jwk.get("y")),
                                                        ec.SECP256R1())
                loaded[jwk["kid"]] = ("ES256", numbers.public_key())
            elif jwk.get("kty") == "RSA":
                rsa_numbers = rsa.RSAPublicNumbers(_int_from_b64(jwk.get("e")), _int_from_b64(jwk.get("n")))
                loaded[jwk["kid"]] = ("RS256", rsa_numbers.public_key())
        except (ValueError, JwsError):
            continue  # a broken entry verifies nothing; the others still work
    return loaded


def public_jwk(key: ec.EllipticCurvePublicKey, kid: str) -> dict[str, str]:
    """The public JWK of a P-256 key, as generators configure it."""
    numbers = key.public_numbers()
    return {"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": b64url_encode(numbers.x.to_bytes(32, "big")), "y": b64url_encode(numbers.y.to_bytes(32, "big"))}

"""Keys, identities and token helpers of the conformance cases (test-only keys, made fresh on each run)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from processor.jws import public_jwk

NOW = 1_900_000_000
GEN = "generate-website"
ALICE, BOB = "0b7c4a52-5d0e-4c63-9a0e-6f1d2c3b4a51", "1c8d5b63-6e1f-4d74-8b1f-7a2e3d4c5b62"
ALICE_ROW, BOB_ROW = "2d9e6c74-7f2a-4e85-9c2a-8b3f4e5d6c73", "3eaf7d85-8a3b-4f96-ad3b-9c4a5f6e7d84"
UNKNOWN_ROW, FAILING_ROW = "4fb08e96-9b4c-4aa7-be4c-ad5b6a7f8e95", "5ac19fa7-ac5d-4bb8-8f5d-be6c7b8a9fa6"
SECRET, BILLING = "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz", "sb_secret_billingKeyForTheConformanceCases0"
PUBLISHABLE = "sb_publishable_ACJWlzQHlZjBrEguHvfOxg_3BJgxAaH"
PLATFORM_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
PROCESSOR_SECRET = "processor-only-shared-secret-for-conformance-0123456789"

platform_ec = ec.generate_private_key(ec.SECP256R1())
platform_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
processor_ec = ec.generate_private_key(ec.SECP256R1())
processor_old = ec.generate_private_key(ec.SECP256R1())  # the previous key, still published (rotation)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def enc(value: Any) -> str:
    return b64(value.encode() if isinstance(value, str) else json.dumps(value, separators=(",", ":")).encode())


def sign(alg: str, key: Any, data: bytes) -> bytes:
    if alg == "HS256":
        return hmac.new(key if isinstance(key, bytes) else key.encode(), data, hashlib.sha256).digest()
    if alg == "ES256":
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return bytes(key.sign(data, padding.PKCS1v15(), hashes.SHA256()))


def token(claims: Any, *, alg: str = "HS256", key: Any = PLATFORM_SECRET, kid: str | None = None,
          header: dict[str, Any] | None = None, raw_payload: str | None = None, sign_as: str | None = None) -> str:
    head = header if header is not None else {"alg": alg, "typ": "JWT", **({"kid": kid} if kid else {})}
    signing_input = f"{enc(head)}.{enc(raw_payload) if raw_payload is not None else enc(claims)}"
    return f"{signing_input}.{b64(sign(sign_as or alg, key, signing_input.encode()))}"


def user_claims(**over: Any) -> dict[str, Any]:
    c = {"iss": "https://ref.supabase.co/auth/v1", "sub": ALICE, "role": "authenticated", "aud": "authenticated",
         "iat": NOW - 60, "exp": NOW + 3600, "session_id": "6bd2a0b8-bd6e-4cc9-9a6e-cf7d8c9b0ab7", "aal": "aal1",
         "is_anonymous": False}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def scoped_claims(**over: Any) -> dict[str, Any]:
    c = {"iss": "generation-processor", "role": "generation_retry", "aud": GEN, "sub": ALICE,
         "retry_history_id": ALICE_ROW, "attempt": 1, "iat": NOW - 5, "exp": NOW + 295,
         "jti": "7ce2a0b8-ce7f-4dda-8b7f-d08e9dac1bc8"}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def user(**over: Any) -> str:
    return token(user_claims(**over))


def scoped(**over: Any) -> str:
    return token(scoped_claims(**over), alg="ES256", key=processor_ec, kid="gp-conf-2")


def bearer(t: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {t}"}


ROW = {"retryHistoryId": ALICE_ROW, "retryAttempt": 1}
ALLOW_USER = {"status": 200, "authority": "user", "user_id": ALICE, "credential": "user-jwt"}
CASES: list[dict[str, Any]] = []


def rsa_jwk(key: rsa.RSAPublicKey, kid: str) -> dict[str, str]:
    n = key.public_numbers()
    return {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
            "n": b64(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big")), "e": b64(n.e.to_bytes(3, "big"))}


if __name__ == "__main__":
    main()

"""Keys for the authority tests: the platform's published local-development values and fresh key pairs.

The local-development values are public test values printed by the platform's CLI (`supabase start`);
they are used here because a verifier must treat them exactly as the platform's real keys.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from processor.authority import Keys

DEMO_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
DEMO_ANON_JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6ImFub24iLCJleHAiOjE5ODM4MTI5OTZ9"
    ".CRXP1A7WOeoJeXxjNni43kdQwgnWNReilDMblYTn_I0"
)
DEMO_SERVICE_ROLE_JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6InNlcnZpY2Vfcm9sZSIsImV4cCI6MTk4Mz"
    "gxMjk5Nn0.EGIM96RAZx35lJzdJsyH-qQwv8Hdp7fsn3W0YpN81IU"
)
DEMO_SECRET_KEY = "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz"
DEMO_PUBLISHABLE_KEY = "sb_publishable_ACJWlzQHlZjBrEguHvfOxg_3BJgxAaH"


@cache
def ec_pair() -> tuple[str, dict[str, Any]]:
    """(private PEM, public JWK with kid) for ES256."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="ec-1", alg="ES256", use="sig")
    return pem, jwk


@cache
def rsa_pair() -> tuple[str, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="rsa-1", alg="RS256", use="sig")
    return pem, jwk


PROCESSOR_KID = "gp-test-1"
PROCESSOR_SECRET = "processor-only-shared-secret-for-the-tests-0123456789"


@cache
def processor_pair() -> tuple[str, dict[str, Any]]:
    """The processor's own ES256 key in the tests: (private PEM, public JWK with kid)."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=PROCESSOR_KID, alg="ES256", use="sig")
    return pem, jwk


def processor_env() -> dict[str, str]:
    """The daemon's signing settings in the tests (ES256, the default)."""
    return {"PROCESSOR_JWT_PRIVATE_KEY": processor_pair()[0], "PROCESSOR_JWT_KID": PROCESSOR_KID}


def generator_keys() -> Keys:
    """What the reference generator verifies with in the tests."""
    return Keys(secret_keys={"default": DEMO_SECRET_KEY}, jwt_secret=DEMO_JWT_SECRET, jwks={"keys": [ec_pair()[1]]},
                processor_jwks={"keys": [processor_pair()[1]]}, processor_secret=PROCESSOR_SECRET)


GENERATOR_KEYS = generator_keys()

"""Principals, rows and credentials for authority tests: two users with a row each, a verifier for one
generator, user JWTs as the platform's Auth mints them, and the processor's scoped tokens."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt

from processor.authority import Keys, Verifier
from processor.credentials import Delivery, Minter
from tests.support.keys import (
    DEMO_JWT_SECRET,
    DEMO_SECRET_KEY,
    PROCESSOR_KID,
    PROCESSOR_SECRET,
    ec_pair,
    processor_pair,
    rsa_pair,
)

ALICE, BOB = str(uuid.uuid4()), str(uuid.uuid4())
ALICE_ROW, BOB_ROW = str(uuid.uuid4()), str(uuid.uuid4())
OWNERS = {ALICE_ROW: ALICE, BOB_ROW: BOB}
GENERATOR = "generate-website"


async def owner_of(retry_id: str) -> str | None:
    return OWNERS.get(retry_id)


def verifier(**keys: Any) -> Verifier:
    defaults: dict[str, Any] = {
        "secret_keys": {"default": DEMO_SECRET_KEY},
        "service_role_key": "",
        "jwt_secret": DEMO_JWT_SECRET,
        "jwks": {"keys": [ec_pair()[1], rsa_pair()[1]]},
        "processor_jwks": {"keys": [processor_pair()[1]]},
        "processor_secret": PROCESSOR_SECRET,
    }
    defaults.update(keys)
    return Verifier(GENERATOR, Keys(**defaults), owner_of)


def user_token(sub: str = ALICE, *, key: str = DEMO_JWT_SECRET, alg: str = "HS256", kid: str | None = None,
               **claims: Any) -> str:
    body = {"sub": sub, "role": "authenticated", "aud": "authenticated", "iss": "http://127.0.0.1:54321/auth/v1",
            "exp": int(time.time()) + 3600, "iat": int(time.time()), "session_id": str(uuid.uuid4()),
            "aal": "aal1", "is_anonymous": False, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=alg,
                      headers={"kid": kid} if kid else None)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def scoped(retry_id: str = ALICE_ROW, user: str = ALICE, attempt: int = 1, generator: str = GENERATOR,
           minter: Minter | None = None) -> str:
    minter = minter or Minter(private_key_pem=processor_pair()[0], kid=PROCESSOR_KID)
    return minter.mint(Delivery(generator, user, retry_id, attempt))



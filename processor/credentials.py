"""What the daemon sends: a scoped token minted per delivery, or the service key (SPEC section 6)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt

from processor.authority import ISSUER
from processor.config import Settings


@dataclass(frozen=True)
class Delivery:
    """The facts about one delivery that its credential is scoped to."""

    generator: str
    user_id: str
    retry_history_id: str
    attempt: int


class Minter:
    """Mints scoped per-delivery tokens: HS256 with the JWT secret, or ES256 with a PEM private key."""

    def __init__(self, *, jwt_secret: str = "", private_key_pem: str = "", kid: str = "",
                 ttl_s: float = 300.0) -> None:
        if not jwt_secret and not private_key_pem:
            raise ValueError("a JWT secret or a private key is required")
        self.algorithm = "ES256" if private_key_pem else "HS256"
        self._key = private_key_pem or jwt_secret
        self._headers = {"kid": kid} if kid else None
        self.ttl_s = ttl_s

    def mint(self, d: Delivery, *, now: float | None = None) -> str:
        """A token that opens one attempt of one generation at one generator, for ttl_s."""
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": ISSUER,
            "role": "service_role",
            "aud": d.generator,
            "sub": d.user_id,
            "retry_history_id": d.retry_history_id,
            "attempt": d.attempt,
            "iat": issued,
            "exp": issued + int(self.ttl_s),
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(claims, self._key, algorithm=self.algorithm, headers=self._headers)


def service_key_headers(key: str, *, also_bearer: bool = False) -> dict[str, str]:
    """The platform's recommended header for secret keys; optionally the seed-style Bearer too."""
    headers = {"apikey": key}
    if also_bearer:
        headers["Authorization"] = f"Bearer {key}"
    return headers


class Authority:
    """Builds the credential headers of each delivery for the configured mode."""

    def __init__(self, settings: Settings) -> None:
        self.mode = settings.auth_mode
        self._key = settings.service_key
        self._also_bearer = settings.service_key_bearer
        self._minter = Minter(jwt_secret=settings.jwt_secret, private_key_pem=settings.jwt_private_key,
                              kid=settings.jwt_kid, ttl_s=settings.token_ttl_s) if self.mode == "scoped-jwt" else None

    def headers(self, d: Delivery) -> dict[str, str]:
        if self._minter is not None:
            return {"Authorization": f"Bearer {self._minter.mint(d)}"}
        return service_key_headers(self._key, also_bearer=self._also_bearer)

"""What the daemon sends: a scoped token minted per delivery, or the service key (SPEC section 6)."""

from __future__ import annotations

from processor.config import Settings
from processor.errors import ConfigError
from processor.minting import Delivery, Minter, SigningKeyError

__all__ = ["Authority", "Delivery", "Minter", "service_key_headers"]


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
        try:
            self._minter = Minter(private_key_pem=settings.jwt_private_key, kid=settings.jwt_kid,
                                  shared_secret=settings.processor_jwt_secret,
                                  ttl_s=settings.token_ttl_s) if self.mode == "scoped-jwt" else None
        except SigningKeyError as exc:  # the configuration check missed it: still one line naming the setting
            raise ConfigError([f"PROCESSOR_JWT_PRIVATE_KEY: {exc}"]) from None

    def headers(self, d: Delivery) -> dict[str, str]:
        if self._minter is not None:
            return {"Authorization": f"Bearer {self._minter.mint(d)}"}
        return service_key_headers(self._key, also_bearer=self._also_bearer)

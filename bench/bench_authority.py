"""Verification cost per request (microseconds) for each kind of credential, beside a bare pyjwt decode;
and the cost of minting one scoped token."""

from __future__ import annotations

import asyncio
import time
import uuid

import jwt

from bench.common import Result, Row
from processor.authority import Keys, Verifier
from processor.credentials import Delivery, Minter
from tests.support.keys import DEMO_SECRET_KEY, PROCESSOR_KID, PROCESSOR_SECRET, processor_pair

ROW, USER = str(uuid.uuid4()), str(uuid.uuid4())


async def _owner(_id: str) -> str | None:
    return USER


class _NoReplay:
    """The same token verified n times: measure the verification, not the 409 of a replay."""

    def seen(self, jti: str) -> bool:
        return False

    def use(self, jti: str, expires_at: float) -> bool:
        return True


async def _per_call_us(verifier: Verifier, headers: dict[str, str], body: dict[str, object], n: int) -> float:
    await verifier.verify(headers, body)
    started = time.perf_counter()
    for _ in range(n):
        await verifier.verify(headers, body)
    return (time.perf_counter() - started) / n * 1e6


async def run(_admin_url: str, quick: bool) -> Result:
    n = 2000 if quick else 20000
    pem, jwk = processor_pair()
    verifier = Verifier("generate-website", Keys(secret_keys={"default": DEMO_SECRET_KEY},
                                                 processor_secret=PROCESSOR_SECRET, processor_jwks={"keys": [jwk]}),
                        _owner, replay=_NoReplay())
    body = {"retryHistoryId": ROW, "retryAttempt": 1}
    hs_minter, es_minter = Minter(shared_secret=PROCESSOR_SECRET), Minter(private_key_pem=pem, kid=PROCESSOR_KID)
    hs = hs_minter.mint(Delivery("generate-website", USER, ROW, 1))
    es = es_minter.mint(Delivery("generate-website", USER, ROW, 1))
    started = time.perf_counter()
    for _ in range(n // 4):
        es_minter.mint(Delivery("generate-website", USER, ROW, 1))
    mint_es = (time.perf_counter() - started) / (n // 4) * 1e6
    figures = {
        "scoped token, HS256": await _per_call_us(verifier, {"Authorization": f"Bearer {hs}"}, body, n),
        "scoped token, ES256": await _per_call_us(verifier, {"Authorization": f"Bearer {es}"}, body, n // 4),
        "secret key (apikey)": await _per_call_us(verifier, {"apikey": DEMO_SECRET_KEY}, body, n),
    }
    started = time.perf_counter()
    for _ in range(n):
        jwt.decode(hs, PROCESSOR_SECRET, algorithms=["HS256"], options={"verify_aud": False})
    bare_hs = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    public = jwt.PyJWK(jwk).key
    for _ in range(n // 4):
        jwt.decode(es, public, algorithms=["ES256"], options={"verify_aud": False})
    bare_es = (time.perf_counter() - started) / (n // 4) * 1e6
    result = Result("authority")
    for name, us in figures.items():
        floor = f"bare pyjwt decode: {bare_hs:.0f} us" if "HS256" in name else \
            f"bare pyjwt decode: {bare_es:.0f} us" if "ES256" in name else ""
        result.rows.append(Row(f"verify one request: {name}", f"{us:.0f} us", floor))
    result.rows.append(Row("mint one scoped token: ES256", f"{mint_es:.0f} us", "cryptography, no pyjwt"))
    result.data = {"us": figures, "bare_hs256_us": bare_hs, "bare_es256_us": bare_es, "mint_es256_us": mint_es}
    return result


if __name__ == "__main__":
    print(asyncio.run(run("", True)).rows)

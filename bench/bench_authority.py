"""Verification cost per request (microseconds) for each kind of credential, beside a bare pyjwt decode."""

from __future__ import annotations

import asyncio
import time
import uuid

import jwt

from bench.common import Result, Row
from processor.authority import Keys, Verifier
from processor.credentials import Delivery, Minter
from tests.unit.keys import DEMO_JWT_SECRET, DEMO_SECRET_KEY, ec_pair

ROW, USER = str(uuid.uuid4()), str(uuid.uuid4())


async def _owner(_id: str) -> str | None:
    return USER


async def _per_call_us(verifier: Verifier, headers: dict[str, str], body: dict[str, object], n: int) -> float:
    await verifier.verify(headers, body)
    started = time.perf_counter()
    for _ in range(n):
        await verifier.verify(headers, body)
    return (time.perf_counter() - started) / n * 1e6


async def run(_admin_url: str, quick: bool) -> Result:
    n = 2000 if quick else 20000
    pem, jwk = ec_pair()
    verifier = Verifier("generate-website", Keys(secret_keys={"default": DEMO_SECRET_KEY}, jwt_secret=DEMO_JWT_SECRET,
                                                 jwks={"keys": [jwk]}), _owner)
    body = {"retryHistoryId": ROW, "retryAttempt": 1}
    hs = Minter(jwt_secret=DEMO_JWT_SECRET).mint(Delivery("generate-website", USER, ROW, 1))
    es = Minter(private_key_pem=pem, kid="ec-1").mint(Delivery("generate-website", USER, ROW, 1))
    figures = {
        "scoped token, HS256": await _per_call_us(verifier, {"Authorization": f"Bearer {hs}"}, body, n),
        "scoped token, ES256": await _per_call_us(verifier, {"Authorization": f"Bearer {es}"}, body, n // 4),
        "secret key (apikey)": await _per_call_us(verifier, {"apikey": DEMO_SECRET_KEY}, body, n),
    }
    started = time.perf_counter()
    for _ in range(n):
        jwt.decode(hs, DEMO_JWT_SECRET, algorithms=["HS256"], options={"verify_aud": False})
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
    result.data = {"us": figures, "bare_hs256_us": bare_hs, "bare_es256_us": bare_es}
    return result


if __name__ == "__main__":
    print(asyncio.run(run("", True)).rows)

"""Seeded mutations of valid credentials, expected as processor.authority decides them."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from tokens import (
    GEN, NOW, PROCESSOR_SECRET, ROW, SECRET, platform_ec, scoped, scoped_claims, token, user, user_claims,
)

from processor.authority import AuthorityError, Keys, Verifier


def mutations(cases: list[dict[str, Any]], context: dict[str, Any], count: int = 120) -> None:
    """Seeded mutations of valid credentials, expected as processor.authority decides them: a differential
    test, since the TypeScript kit must then decide every one of them the same way."""
    async def owner_of(retry_id: str) -> str | None:
        if retry_id in context["failing_rows"]:
            raise ConnectionError("down")
        owner: str | None = context["owners"].get(retry_id)
        return owner

    def decide(headers: dict[str, str]) -> dict[str, Any]:
        verifier = Verifier(GEN, Keys(**context["keys"]), owner_of, clock=lambda: float(NOW))
        try:
            p = asyncio.run(verifier.verify(headers, ROW))
        except AuthorityError as err:
            return {"status": err.status, "code": err.code}
        return {"status": 200, "authority": p.authority, "user_id": p.user_id,
                "retry_history_id": p.retry_history_id, "attempt": p.attempt, "credential": p.credential}

    rng = random.Random(20261204)
    valid = [scoped(), token(scoped_claims(), key=PROCESSOR_SECRET), user(),
             token(user_claims(), alg="ES256", key=platform_ec, kid="platform-ec"), SECRET,
             token({"role": "service_role", "iat": NOW, "exp": NOW + 100})]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ "
    seen: set[str] = set()
    while len(seen) < count:
        base = rng.choice(valid)
        i = rng.randrange(len(base) - 1)  # not the last character: its spare base64 bits may not matter
        how = rng.choice(["flip", "drop", "insert", "truncate", "swap"])
        if how == "flip":
            mutated = base[:i] + rng.choice([c for c in alphabet if c != base[i]]) + base[i + 1:]
        elif how == "drop":
            mutated = base[:i] + base[i + 1:]
        elif how == "insert":
            mutated = base[:i] + rng.choice(alphabet) + base[i:]
        elif how == "truncate":
            mutated = base[:i]
        else:
            parts = base.split(".")
            mutated = ".".join([parts[-1], *parts[1:-1], parts[0]]) if len(parts) == 3 else base[::-1]
        if mutated in seen or mutated.strip(" \t") in valid:
            continue
        seen.add(mutated)
        headers = {rng.choice(["Authorization", "apikey"]): mutated}
        if "Authorization" in headers:
            headers["Authorization"] = "Bearer " + mutated
        cases.append({"name": f"mutation {len(seen)}: {how} at {i}", "headers": headers, "body": ROW,
                      "expect": decide(headers), "origin": "mutation; expected from processor.authority"})

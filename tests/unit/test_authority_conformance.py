"""conformance/authority_cases.json decided by processor.authority; the TypeScript kit runs the same file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from processor.authority import AuthorityError, Keys, Verifier
from processor.replay import MemoryReplayGuard, ReplayGuard

FILE = Path(__file__).resolve().parents[2] / "conformance" / "authority_cases.json"
DATA = json.loads(FILE.read_text())
CONTEXT: dict[str, Any] = DATA["context"]
CASES: list[dict[str, Any]] = DATA["cases"]


class DownReplayGuard:
    """A guard whose database is down (case `replay_down`)."""

    async def seen(self, jti: str) -> bool:
        raise ConnectionError("the database is down")

    async def use(self, jti: str, expires_at: float) -> bool:
        raise ConnectionError("the database is down")


def verifier_for(case: dict[str, Any]) -> Verifier:
    keys = {**CONTEXT["keys"], **case.get("keys", {})}
    owners, failing = CONTEXT["owners"], set(CONTEXT["failing_rows"])

    async def owner_of(retry_id: str) -> str | None:
        if retry_id in failing:
            raise ConnectionError("the REST API answered 503")
        owner: str | None = owners.get(retry_id)
        return owner

    now = float(CONTEXT["now"])
    replay: ReplayGuard = DownReplayGuard() if case.get("replay_down") else MemoryReplayGuard(clock=lambda: now)
    for jti in case.get("used_jtis", []):
        replay.use(jti, now + 3600)
    return Verifier(CONTEXT["generator"], Keys(**keys), owner_of, leeway_s=CONTEXT["leeway_s"], clock=lambda: now,
                    replay=replay)


def outcome(case: dict[str, Any]) -> dict[str, Any]:
    try:
        p = asyncio.run(verifier_for(case).verify(case["headers"], case["body"]))
    except AuthorityError as err:
        return {"status": err.status, "code": err.code}
    return {"status": 200, "authority": p.authority, "user_id": p.user_id, "retry_history_id": p.retry_history_id,
            "attempt": p.attempt, "credential": p.credential}


def expected(case: dict[str, Any]) -> dict[str, Any]:
    want = dict(case["expect"])
    if want["status"] == 200:
        want.setdefault("retry_history_id", None)
        want.setdefault("attempt", None)
    return want


def test_the_table_is_big_enough_and_covers_every_status() -> None:
    assert len(CASES) >= 100
    assert {c["expect"]["status"] for c in CASES} == {200, 400, 401, 403, 404, 409, 503}


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case(case: dict[str, Any]) -> None:
    assert outcome(case) == expected(case)


def test_a_scoped_token_passes_once() -> None:
    first = next(c for c in CASES if c["name"] == "scoped ES256 token")
    v = verifier_for(first)
    async def twice() -> list[int]:
        statuses = []
        for _ in range(2):
            try:
                await v.verify(first["headers"], first["body"])
                statuses.append(200)
            except AuthorityError as err:
                statuses.append(err.status)
        return statuses

    assert asyncio.run(twice()) == [200, 409]

"""A stored request that cannot be sent fails its row, saying so; a key that cannot sign stops the daemon.

Issue 10, class 1: the row's fault is permanent and nothing is sent; our fault burns no row.
"""

from __future__ import annotations

import asyncio
import dataclasses

import asyncpg
import pytest

from processor.daemon import Daemon
from processor.errors import ConfigError
from tests.support.factories import events, make_generation, row
from tests.support.http import StartDaemon, Stub, settings_for, wait_until

pytestmark = pytest.mark.hostile
STORED = {  # name: the request's jsonb text, and what the message says
    "nesting 5,000 deep": ('{"prompt": ' + "[" * 5000 + "]" * 5000 + "}", "nests deeper than 256 levels"),
    "9 MB": ('{"prompt": "' + "x" * (9 * 2**20) + '"}', "9.0 MB, over the 8 MB limit"),
    "an array": ('["a bakery site"]', "not a JSON object"),
    "a string": ('"a bakery site"', "not a JSON object"),
}


@pytest.mark.parametrize("name", list(STORED))
async def test_an_unsendable_request_fails_its_row_unsent(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                                         start_daemon: StartDaemon, name: str) -> None:
    text, says = STORED[name]
    row_id = await make_generation(conn, due=True)
    await conn.execute("UPDATE generation_history SET request = $2::jsonb WHERE id = $1", row_id, text)
    await start_daemon(settings_for(db_url, stub.url, PROCESSOR_TICK="0.2"))

    async def failed() -> bool:
        return bool((await row(conn, row_id))["status"] == "failed")

    await wait_until(failed)
    r = await row(conn, row_id)
    assert stub.seen == []
    assert (r["retry_count"], r["dispatch_failures"]) == (0, 0)
    assert r["error_message"].startswith("retry not sent to generate-website: the stored request ")
    assert says in r["error_message"]
    assert "released" not in await events(conn, row_id)
    assert "not_sent" in await events(conn, row_id)


async def test_our_keys_win_over_the_stored_ones(db_url: str, conn: asyncpg.Connection, stub: Stub,
                                                 start_daemon: StartDaemon) -> None:
    row_id = await make_generation(conn, due=True, request={"prompt": "p", "retryHistoryId": "forged",
                                                            "retryAttempt": 99, "nested": {"a": [1, {"b": None}]}})
    await start_daemon(settings_for(db_url, stub.url))
    await stub.wait_for(1)
    body = stub.seen[0].body
    assert body == {"prompt": "p", "nested": {"a": [1, {"b": None}]}, "retryHistoryId": str(row_id),
                    "retryAttempt": 1}


async def test_a_key_that_cannot_sign_stops_the_daemon_and_burns_no_row(db_url: str, conn: asyncpg.Connection,
                                                                        stub: Stub) -> None:
    row_id = await make_generation(conn, due=True)
    # passes the configuration check (a PEM private key) but is no key at all: replace() skips the check
    settings = dataclasses.replace(
        settings_for(db_url, stub.url, PROCESSOR_TICK="0.2"),
        jwt_private_key="-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    daemon = Daemon(settings)
    with pytest.raises(ConfigError) as stopped:
        await asyncio.wait_for(daemon.run(signals=False), 20)
    assert stopped.value.problems[0].startswith("PROCESSOR_JWT_PRIVATE_KEY: ")
    assert stopped.value.exit_code == 2
    r = await row(conn, row_id)
    assert stub.seen == []
    assert (r["status"], r["retry_count"], r["dispatch_failures"], r["lease_id"]) == ("generating", 0, 0, None)

"""A generator stub for benchmarks, run as its own process: answers 202 and records arrival times.

python -m bench.stub_server PORT  ->  prints "ready" once listening.
GET /_stats returns {"count", "arrivals": [[idempotency_key, retryHistoryId, unix_time], ...]}; POST /_reset.
"""

from __future__ import annotations

import json
import sys
import time

from aiohttp import web

arrivals: list[tuple[str, str, float]] = []


async def generator(request: web.Request) -> web.Response:
    now = time.time()
    raw = await request.read()
    try:
        retry_id = json.loads(raw).get("retryHistoryId", "")
    except (ValueError, AttributeError):
        retry_id = ""
    arrivals.append((request.headers.get("Idempotency-Key", ""), retry_id, now))
    return web.Response(status=202, body=b'{"accepted":true}', content_type="application/json")


async def stats(_request: web.Request) -> web.Response:
    return web.json_response({"count": len(arrivals), "arrivals": arrivals})


async def reset(_request: web.Request) -> web.Response:
    arrivals.clear()
    return web.json_response({"ok": True})


def main() -> None:
    app = web.Application(client_max_size=4 << 20)
    app.router.add_get("/_stats", stats)
    app.router.add_post("/_reset", reset)
    app.router.add_post("/{generator}", generator)

    async def ready(_app: web.Application) -> None:
        print("ready", flush=True)

    app.on_startup.append(ready)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()

"""The reference generator: how a generator function verifies a request and plays a generation.

A plain ASGI app (served by uvicorn). POST /{generator}:
  1. read and parse the JSON body (400 on bad JSON, 413 when too large);
  2. verify the request with processor.authority (owner look-up in the database): the decision table of
     SPEC section 6, errors as JSON {"error": code, "message": ...} with their status;
  3. a repeated Idempotency-Key answers 409 and starts nothing;
  4. answer 202 at once and work in the background: mark the attempt started, heartbeat while working
     (genretry.heartbeat, which says when a newer attempt replaced this one), then report the result
     with genretry.finish, fenced on the attempt.
Misbehaviour on purpose, for the demo and the tests: fail_rate answers 500; hang_rate accepts and then
does nothing (a dead worker). A request may also carry "_reference": {"hang_attempts": [1]} to hang on
chosen attempts; a real generator has no such knob.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Generator, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from processor import db
from processor.authority import AuthorityError, Keys, Principal, Verifier
from processor.logs import get_logger
from processor.minting import public_jwks_of
from processor.replay import SqlReplayGuard

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

MAX_BODY_BYTES = 1 << 20
SEEN_KEYS = 100_000
log = get_logger("reference_generator")


@dataclass(frozen=True)
class Behaviour:
    work_s: float = 2.0
    fail_rate: float = 0.0
    hang_rate: float = 0.0


class ReferenceGenerator:
    """ASGI app serving POST /{generator} for each configured generator name."""

    def __init__(self, pool: asyncpg.Pool, generators: Iterable[str], keys: Keys,
                 behaviour: Behaviour = Behaviour(), rng: random.Random | None = None) -> None:
        self.pool, self.behaviour, self.rng = pool, behaviour, rng or random.Random()
        # one replay guard for every instance, in the database (a guard in memory is per process)
        replay = SqlReplayGuard(pool)
        self.verifiers = {g: Verifier(g, keys, self._owner_of, replay=replay) for g in generators}
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.tasks: set[asyncio.Task[None]] = set()
        self.accepted = 0

    async def _owner_of(self, retry_history_id: str) -> str | None:
        owner: str | None = await self.pool.fetchval(
            "SELECT user_id::text FROM generation_history WHERE id = $1::uuid", retry_history_id)
        return owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        status, payload = await self._handle(scope, receive)
        body = json.dumps(payload).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
        generator = scope["path"].strip("/")
        if scope["method"] == "GET" and generator == "healthz":
            return 200, {"ok": True, "accepted": self.accepted}
        if generator not in self.verifiers:
            return 404, {"error": "unknown_generator", "message": f"no generator at {scope['path'][:100]!r}"}
        if scope["method"] != "POST":
            return 405, {"error": "method_not_allowed", "message": "POST only"}
        raw = await _read_body(receive)
        if raw is None:
            return 413, {"error": "body_too_large", "message": f"body over {MAX_BODY_BYTES} bytes"}
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, RecursionError):  # RecursionError: a body nesting thousands deep
            return 400, {"error": "bad_json", "message": "body is not JSON (or nests too deep)"}
        if not isinstance(body, dict):
            return 400, {"error": "bad_body", "message": "body must be a JSON object"}
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            principal = await self.verifiers[generator].verify(headers, body)
        except AuthorityError as err:
            log.info("request_refused", generator=generator, status=err.status, code=err.code)
            return err.status, err.as_json()
        key = headers.get("idempotency-key", "")
        if key and key in self.seen:
            return 409, {"error": "duplicate", "message": "this delivery was already accepted"}
        if self.behaviour.fail_rate and self.rng.random() < self.behaviour.fail_rate:
            return 500, {"error": "simulated_failure", "message": "the reference generator failed on purpose"}
        if key:
            self.seen[key] = None
            if len(self.seen) > SEEN_KEYS:
                self.seen.popitem(last=False)
        self.accepted += 1
        task = asyncio.create_task(self._play(generator, principal, body))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        log.info("request_accepted", generator=generator, authority=principal.authority,
                 via=principal.credential, generation_id=principal.retry_history_id,
                 attempt=principal.attempt)
        return 202, {"accepted": True, "user_id": principal.user_id, "authority": principal.authority}

    async def _play(self, generator: str, principal: Principal, body: dict[str, Any]) -> None:
        """The generation itself: start, heartbeat, finish; each step fenced on the attempt."""
        try:
            attempt = principal.attempt if principal.attempt is not None else 0
            if principal.retry_history_id is None:  # a user starting a new generation
                gen_id = await self.pool.fetchval(
                    """INSERT INTO generation_history (user_id, status, generator, request)
                       VALUES ($1::uuid, 'generating', $2, $3::jsonb) RETURNING id::text""",
                    principal.user_id, generator, json.dumps(body))
            else:
                gen_id = principal.retry_history_id
            knobs = body.get("_reference")
            knobs = knobs if isinstance(knobs, dict) else {}
            if attempt in (knobs.get("hang_attempts") or []) or (
                    self.behaviour.hang_rate and self.rng.random() < self.behaviour.hang_rate):
                log.info("generation_hangs", generation_id=gen_id, attempt=attempt)
                return
            started = await self.pool.execute(
                """UPDATE generation_history SET status = 'generating', heartbeat_at = now()
                   WHERE id = $1::uuid AND attempt = $2 AND status IN ('pending', 'generating')""", gen_id, attempt)
            if started == "UPDATE 0":
                log.info("generation_superseded", generation_id=gen_id, attempt=attempt)
                return
            steps = 4
            for _ in range(steps):
                await asyncio.sleep(self.behaviour.work_s / steps)
                if not await self.pool.fetchval("SELECT genretry.heartbeat($1::uuid, $2)", gen_id, attempt):
                    log.info("generation_superseded", generation_id=gen_id, attempt=attempt)
                    return
            done = await self.pool.fetchval(
                "SELECT genretry.finish($1::uuid, $2, 'completed', NULL)", gen_id, attempt)
            log.info("generation_finished", generation_id=gen_id, attempt=attempt, recorded=done)
        except db.TRANSIENT_ERRORS as exc:
            log.warning("generation_error", error=str(exc)[:200])

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in list(self.tasks):
                    task.cancel()
                await asyncio.gather(*self.tasks, return_exceptions=True)
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def keys_from(settings: Any) -> Keys:
    """The verification keys a generator is configured with (processor.config.Settings).

    The processor's public JWKS is PROCESSOR_JWKS, or the public half of PROCESSOR_JWT_PRIVATE_KEY when
    the reference generator runs beside the daemon with the same settings.
    """
    processor_jwks = settings.processor_jwks
    if processor_jwks is None and settings.jwt_private_key and settings.jwt_kid:
        processor_jwks = public_jwks_of(settings.jwt_private_key, settings.jwt_kid)
    return Keys(secret_keys=settings.secret_keys, service_role_key=settings.service_role_key,
                jwt_secret=settings.jwt_secret, jwks=settings.jwks, processor_jwks=processor_jwks,
                processor_secret=settings.processor_jwt_secret)


class Served:
    """A running reference generator: its base URL, its app, and how to stop it."""

    def __init__(self, app: ReferenceGenerator, server: Any, task: asyncio.Task[None], url: str) -> None:
        self.app, self.server, self.task, self.url = app, server, task, url

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


def _server_class() -> Any:
    import uvicorn

    class OwnSignals(uvicorn.Server):
        """uvicorn's server without its signal capture: the caller owns SIGTERM (uvicorn re-raises a signal
        it captured once it has shut down, which ends the process with 143 instead of a clean 0)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield

    return OwnSignals


async def start(pool: asyncpg.Pool, generators: Iterable[str], keys: Keys, *, host: str = "127.0.0.1",
                port: int = 0, behaviour: Behaviour = Behaviour()) -> Served:
    """Serve the reference generator with uvicorn in this event loop; port 0 picks a free port."""
    import uvicorn

    app = ReferenceGenerator(pool, generators, keys, behaviour)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on", access_log=False,
                            log_config=None)
    server = _server_class()(config)  # made on first use: uvicorn is an extra
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task  # raises what stopped it
            raise OSError(f"reference generator could not listen on {host}:{port}")
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()
    return Served(app, server, task, f"http://{host}:{bound[1]}")
